"""`kedro run` on a bad day, as a user meets it: refused runs say why in one screen and leave
no MLflow run, interrupted runs are recorded KILLED, a second run in the same folder stops at
once, and a broken mlflow.db is named.

A run that ends with a message goes through Kedro's command line in this process (the console's
whole output, the exit status: ``kedro_run_in_process``); the interrupted runs are real processes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hle_reasoning.hle.data.sampling import stratified_split
from tests.kedro_cli import kedro_run_in_process

pytestmark = pytest.mark.slow


def runs(project: Path) -> list[tuple[str, str]]:
    db = project / "mlflow.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master")}
        if "runs" not in tables:
            return []
        return con.execute("select name, status from runs order by start_time").fetchall()


def one_screen(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "╭" not in output, output[-3000:]
    assert len(output.splitlines()) < 40, output
    return output


def test_a_focus_too_small_to_train_is_refused_before_anything_is_written(
    project_copy, sample_questions
):
    """The docs' example `--params data_processing.focus_categories=[Physics]`: the sample's 16
    Physics questions split 1 train / 15 test, not one step of 2."""
    primary = project_copy / "data" / "05_model_input"
    primary.mkdir(parents=True)
    train, test, _ = stratified_split(sample_questions)
    train[train["category"] == "Math"].to_parquet(primary / "focus_train.parquet")
    test[test["category"] == "Math"].to_parquet(primary / "focus_test.parquet")
    before = {p.name: hashlib.sha256(p.read_bytes()).digest() for p in primary.iterdir()}

    result = kedro_run_in_process(
        project_copy, "--params", "data_processing.focus_categories=[Physics]"
    )
    output = one_screen(result)
    assert "no node was run and no output written" in output
    assert "['Physics'] (16 question(s)) leaves 1 training question(s)" in output
    assert {p.name: hashlib.sha256(p.read_bytes()).digest() for p in primary.iterdir()} == before
    assert runs(project_copy) == []  # refused: no MLflow run at all


def test_a_missing_hle_source_and_broken_conf_files_are_one_message_each(project_copy):
    result = kedro_run_in_process(project_copy, "--params", "hle_source=/nonexistent.jsonl")
    output = one_screen(result)
    assert "hle_source is '/nonexistent.jsonl', which does not exist" in output
    assert runs(project_copy) == []

    local = project_copy / "conf" / "local"
    (local / "credentials.yml").write_text("- hle_judge\n- api_key: sk-test\n")
    (local / "parameters.yml").write_text("training:\n  grpo:\n    beta: [0.1\n")
    output = one_screen(kedro_run_in_process(project_copy))
    assert "the configuration cannot be read; nothing was run" in output
    assert "conf/local/credentials.yml holds a list" in output
    assert "conf/local/parameters.yml:4:1: not valid YAML" in output

    (local / "credentials.yml").unlink()
    (local / "parameters.yml").unlink()
    (project_copy / "mlflow.db").write_bytes(b"not a database " * 100)
    output = one_screen(kedro_run_in_process(project_copy, "--pipelines", "data_processing"))
    assert "The MLflow database" in output and "not a readable SQLite database" in output
    assert "mlflow.db.broken" in output


def start(project: Path) -> subprocess.Popen:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("kedro")), "run"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_running(project: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while ("__default__", "RUNNING") not in runs(project):
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the MLflow run never started"
        time.sleep(0.5)
    time.sleep(2)  # inside the first nodes


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_is_recorded_killed(project_copy, signum):
    process = start(project_copy)
    try:
        wait_running(project_copy, process)
        if signum == signal.SIGTERM:
            # Meanwhile a second run in the same folder stops at once, naming the first.
            second = kedro_run_in_process(project_copy, "--pipelines", "data_processing")
            output = one_screen(second)
            assert f"another `kedro run` (pid {process.pid}) is running in this project" in output
        process.send_signal(signum)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == (143 if signum == signal.SIGTERM else 1), output[-3000:]
    assert runs(project_copy) == [("__default__", "KILLED")]


def bomb_png(width: int, height: int) -> bytes:
    """A 1-pixel PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


def test_hostile_exports_and_a_damaged_intermediate_file_are_one_message_each(
    project_copy, sample_questions
):
    import base64
    import json

    sample = (project_copy / "data" / "01_raw" / "hle_sample.jsonl").read_bytes().splitlines()
    bomb = json.loads(sample[0])
    bomb["id"] = "bomb-1"
    bomb["image"] = "data:image/png;base64," + base64.b64encode(bomb_png(20_000, 20_000)).decode()
    latin1 = sample[5].replace(b'"question": "', b'"question": "\xe9', 1)
    exports = project_copy / "exports"
    exports.mkdir()
    export = exports / "hle.jsonl"
    export.write_bytes(b"\n".join([*sample[:5], latin1, *sample[6:], json.dumps(bomb).encode()]))

    output = one_screen(
        kedro_run_in_process(project_copy, "--params", "hle_source=exports/hle.jsonl")
    )
    assert "exports/hle.jsonl: 2 problem(s) in the HLE export" in output
    assert "line 6: not UTF-8 (byte 0xe9" in output
    assert "id 'bomb-1', column 'image': more pixels than max_image_pixels" in output
    assert runs(project_copy) == []  # refused before the run: no MLflow run

    # focus_train.parquet cut short (a crash or a full disk while it was written).
    primary = project_copy / "data" / "05_model_input"
    primary.mkdir(parents=True)
    train, test, _ = stratified_split(sample_questions)
    train[train["category"] == "Math"].to_parquet(primary / "focus_train.parquet")
    test[test["category"] == "Math"].to_parquet(primary / "focus_test.parquet")
    damaged = primary / "focus_train.parquet"
    damaged.write_bytes(damaged.read_bytes()[:500])
    before = {p: hashlib.sha256(p.read_bytes()).digest() for p in primary.iterdir()}
    output = one_screen(kedro_run_in_process(project_copy, "--pipelines", "training"))
    assert (
        "data/05_model_input/focus_train.parquet (dataset 'focus_train'), read by node "
        "'train_grpo_node', was written by this project's data_processing pipeline but no "
        "longer loads (ArrowInvalid:"
    ) in output
    assert "Rewrite it with `kedro run --pipelines data_processing`" in output
    assert {p: hashlib.sha256(p.read_bytes()).digest() for p in primary.iterdir()} == before
    assert runs(project_copy) == [("training", "FAILED")]
