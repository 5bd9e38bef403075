"""Fixed cost of a ``kedro run``: wall time against the pipeline time the run itself reports.

Each command runs in a scratch copy of the project (its ``conf/``, ``pyproject.toml`` and the
bundled sample; ``src`` from the project named): the project's own data and MLflow store are not
touched. The pipeline time is the one in the run's closing summary ("... finished in 1.9 s")::

    python benchmarks/startup.py                              # this checkout, 3 rounds
    python benchmarks/startup.py --project before=/path/to/other/checkout --project after=.

Commands: ``data_processing`` on the 192-question sample, the same on 10,000 questions (the
sample repeated under new ids), a rerun of ``evaluation`` with every answer cached, and the
default study (``kedro run``). With several projects the runs alternate (one of each command per
project per round), so load from other work on the machine falls on all of them alike; the
table shows the best and the median of the rounds, and the CPU time (user + system) of each
run, which other work on the machine changes less than the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path("data/01_raw/hle_sample.jsonl")
COMMANDS = {
    "data_processing (sample)": ["--pipelines", "data_processing"],
    "data_processing (10,000)": [
        "--pipelines",
        "data_processing",
        "--params",
        "hle_source=big.jsonl",
    ],
    "evaluation (cached rerun)": ["--pipelines", "evaluation"],
    "default study": [],
}
FINISHED = re.compile(r"finished in (?:(\d+) min (\d+) s|([\d.]+) s)")


def write_questions(source: Path, target: Path, n: int) -> None:
    """``n`` questions: the sample repeated, each copy under new ids and question texts."""
    records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    with target.open("w", encoding="utf-8") as fh:
        for k in range(n):
            record = dict(records[k % len(records)])
            copy = k // len(records)
            if copy:
                record["id"] = f"{record['id']}c{copy}"
                record["question"] = f"{record['question']} (variant {copy})"
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def scratch(project: Path, into: Path, questions: int) -> Path:
    """A copy of ``project`` to run in: conf, pyproject, src, the sample, empty data layers."""
    into.mkdir(parents=True)
    shutil.copytree(project / "conf", into / "conf", ignore=shutil.ignore_patterns("local"))
    (into / "conf" / "local").mkdir()
    shutil.copy(project / "pyproject.toml", into / "pyproject.toml")
    shutil.copytree(project / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for layer in (project / "data").iterdir():
        if layer.is_dir():
            (into / "data" / layer.name).mkdir(parents=True)
    shutil.copy(project / SAMPLE, into / SAMPLE)
    write_questions(project / SAMPLE, into / "big.jsonl", questions)
    (into / ".telemetry").write_text("consent: false\n")
    return into


def kedro_run(folder: Path, args: list[str]) -> tuple[float, float, float]:
    """Wall time of ``kedro run ARGS`` in ``folder``, the pipeline time it reports, and the CPU
    time (user + system) the run took: less sensitive than wall time to other work on the
    machine."""
    env = {
        **os.environ,
        "PYTHONPATH": str(folder / "src"),
        "KEDRO_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
    }
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    found = FINISHED.findall(done.stdout + done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"kedro run {' '.join(args)} failed in {folder}:\n{done.stderr[-3000:]}")
    minutes, seconds, plain = found[-1]
    return wall, float(plain) if plain else 60 * int(minutes) + int(seconds), cpu


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project", action="append", default=[], help="LABEL=PATH of a checkout (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=10_000)
    args = parser.parse_args()
    projects = dict(p.split("=", 1) for p in args.project) or {"this checkout": str(ROOT)}
    projects = {label: Path(path).resolve() for label, path in projects.items()}
    print(f"{load()}; python {sys.version.split()[0]}; {args.rounds} rounds")
    times: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="hle-startup-") as tmp:
        # The 10,000 questions get a folder of their own: the sample's split and answers stay.
        folders = {
            (label, big): scratch(path, Path(tmp) / f"{i}{'big' if big else ''}", args.questions)
            for i, (label, path) in enumerate(projects.items())
            for big in (False, True)
        }
        for label in projects:  # the study's outputs, so that evaluation is cached
            kedro_run(folders[label, False], [])
        for round_ in range(args.rounds):
            for command, extra in COMMANDS.items():
                for label in projects:
                    folder = folders[label, "hle_source=big.jsonl" in extra]
                    wall, pipe, cpu = kedro_run(folder, extra)
                    times.setdefault((command, label), []).append((wall, pipe, cpu))
                    print(
                        f"  {command:<27} {label:<14} wall {wall:6.2f}  pipeline {pipe:6.2f}"
                        f"  cpu {cpu:6.2f}",
                        flush=True,
                    )
            print(f"round {round_ + 1}: {load()}", flush=True)
    print()
    print(
        f"{'command':<27} {'project':<14} {'wall min':>8} {'wall med':>8} "
        f"{'pipe med':>8} {'overhead':>8} {'ratio':>6} {'cpu min':>8} {'cpu med':>8}"
    )
    for (command, label), runs in times.items():
        walls = [w for w, _, _ in runs]
        pipes = [p for _, p, _ in runs]
        cpus = [c for _, _, c in runs]
        wall, pipe = statistics.median(walls), statistics.median(pipes)
        print(
            f"{command:<27} {label:<14} {min(walls):8.2f} {wall:8.2f} {pipe:8.2f} "
            f"{wall - pipe:8.2f} {wall / pipe:6.1f} {min(cpus):8.2f} {statistics.median(cpus):8.2f}"
        )
    print(f"\n{load()}")


if __name__ == "__main__":
    main()
