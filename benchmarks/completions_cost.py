"""What the completions table costs: bytes per step, and seconds per step with and without it.

The default study's training (the tiny Mllama in 4-bit, conf/base/parameters_training.yml: 2
prompts x 2 completions of 32 tokens a step, the cosine reward) runs through
``hle_reasoning.modeling.training.train_grpo`` inside an MLflow run (a SQLite store in a
temporary folder, as ``kedro run`` tracks), once with the completions table and once without it
(the reward functions unwrapped and the table's callback left out: the code before the table),
alternating (with, without, with, without, ...) so that load from other work on the machine
hits both alike::

    python benchmarks/completions_cost.py              # 3 rounds of 12 steps
    python benchmarks/completions_cost.py --rounds 5 --steps 20

A step's time is the run's training wall time divided by its steps (the table is written after
each step, outside TRL's own ``step_time``), the first run of each kind included; the sizes are
those of the MLflow artifact ``training/completions.json`` and of the JSON-lines table the node
saves, per step.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def without_table():
    """``train_grpo`` as before the table: reward functions unwrapped, no table callback."""
    from transformers import TrainerCallback

    from hle_reasoning.modeling import completions, training

    class Nothing(TrainerCallback):
        def __init__(self, *args, **kwargs):
            self.end_token_ids = []
            self.rows = []

        def frame(self):
            return completions.table_frame([])

    saved = (completions.recording, training.CompletionsCallback)
    completions.recording = lambda funcs, *_: (list(funcs), completions.CompletionRecorder([]))
    training.CompletionsCallback = Nothing
    try:
        yield
    finally:
        completions.recording, training.CompletionsCallback = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each kind, alternating")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import mlflow
    import pandas as pd

    from hle_reasoning.config import ModelConfig, TinyConfig, TrainingConfig
    from hle_reasoning.datasets import JSONLinesStore
    from hle_reasoning.datasets.stores import replacing
    from hle_reasoning.hle.data.schema import read_export, validate_hle
    from hle_reasoning.modeling import completions
    from hle_reasoning.modeling.models import build_tiny_mllama
    from hle_reasoning.modeling.training import train_grpo

    model_params = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["model"]
    model_params["name_or_path"] = "tiny"
    training_params = yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())
    sample = ROOT / "data/01_raw/hle_sample.jsonl"
    questions = validate_hle(read_export(sample), str(sample))
    questions = questions[questions["category"] == "Math"].reset_index(drop=True)

    work = Path(tempfile.mkdtemp(prefix="completions-cost-"))
    os.chdir(work)  # MLflow's artifacts (mlruns/) go here
    base = work / "tiny"
    model, processor = build_tiny_mllama(TinyConfig.from_params(model_params["tiny"]), seed=0)
    model.save_pretrained(base)
    processor.save_pretrained(base)
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    model_config = ModelConfig.from_params(model_params)

    results: dict[str, list[float]] = {"with": [], "without": []}
    sizes: list[tuple[float, float, float]] = []
    # A warm-up run first (not counted: the embedding model and the libraries load), then the
    # kinds alternate, in turn first (with, without, without, with, ...).
    order = [("warm-up", "with")] + [
        (round_, kind)
        for round_ in range(options.rounds)
        for kind in (("with", "without") if round_ % 2 == 0 else ("without", "with"))
    ]
    for round_, kind in order:
        params = copy.deepcopy(training_params["training"])
        params["max_steps"] = options.steps
        params["checkpoints"] = {"dir": str(work / f"ck-{kind}-{round_}"), "resume": False}
        config = TrainingConfig.from_params(params)
        guard = without_table() if kind == "without" else contextlib.nullcontext()
        with guard, mlflow.start_run() as run:
            result = train_grpo(str(base), questions, model_config, config)
        per_step = result.summary["train_seconds"] / result.summary["steps"]
        if round_ == "warm-up":
            print(f"warm-up: {per_step:.3f} s/step", flush=True)
            continue
        results[kind].append(per_step)
        if kind == "with":
            artifact = Path(
                mlflow.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://")
            )
            table = artifact / completions.ARTIFACT_FILE
            jsonl = work / "table.jsonl"  # written as the training node's catalog entry writes it
            frame: pd.DataFrame = result.completions
            JSONLinesStore(filepath=str(jsonl)).save(replacing(frame))
            steps = result.summary["steps"]
            sizes.append(
                (table.stat().st_size / steps, jsonl.stat().st_size / steps, len(frame) / steps)
            )
        print(f"round {round_ + 1} {kind:>7}: {per_step:.3f} s/step", flush=True)

    rows_per_step = statistics.median(s[2] for s in sizes)
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}; {options.rounds} rounds x {options.steps} steps")  # fmt: skip
    print("| | median s/step | best s/step | runs |")
    print("|---|---:|---:|---|")
    for kind, values in results.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(
            f"| {kind} the table | {statistics.median(values):.3f} | {min(values):.3f} | {shown} |"
        )
    mlflow_bytes = statistics.median(s[0] for s in sizes)
    jsonl_bytes = statistics.median(s[1] for s in sizes)
    print(
        f"\ntable per step ({rows_per_step:.0f} rows): {mlflow_bytes:,.0f} bytes in MLflow "
        f"({completions.ARTIFACT_FILE}), {jsonl_bytes:,.0f} bytes in training_completions.jsonl"
    )
    ratio = statistics.median(results["with"]) / statistics.median(results["without"])
    print(f"median step with / without: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
