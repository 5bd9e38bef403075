"""The whole default study on 2 worker processes: one Kedro session, one MLflow run, gloo."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_project_copy
from tests.kedro_cli import kedro_run, kedro_run_in_process

pytestmark = pytest.mark.slow


def test_kedro_run_on_two_processes_answers_each_question_once_per_variant(tmp_path):
    project = make_project_copy(tmp_path / "project")
    started = time.monotonic()
    # Short answers (the tiny model never stops before its budget): the test is about who
    # answers which question, not how long the answers are. A quarter of an epoch: the number of
    # steps still comes from the length of the 2 processes' data loader (13 steps an epoch, as on
    # one process: ceil(0.25 x 13) = 4; a loader not split by the global batch gives 2 or 7).
    # max_steps null: conf/base's cap of 8 steps would otherwise decide the count.
    result = kedro_run(
        project,
        "--params",
        "distributed.num_processes=2,evaluation.generation.max_new_tokens=16,"
        "training.grpo.num_train_epochs=0.25,training.max_steps=null",
        timeout=1800,
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    print(f"\n`kedro run --params distributed.num_processes=2`: {seconds:.0f} s")
    # One launch for training, one per variant.
    assert output.count("Starting 2 worker process(es)") == 3
    summary = json.loads((project / "data/08_reporting/training_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["completions_per_step"] == 4
    assert summary["completions_per_process"] == 2 and summary["steps"] == 4
    assert (project / "data/06_models/lora_adapter/adapter_config.json").exists()
    assert not (project / "data/06_models/grpo_checkpoints").exists()

    with sqlite3.connect(project / "mlflow.db") as db:
        runs = pd.read_sql("select run_uuid, name, status from runs", db)
        parents = pd.read_sql(
            "select run_uuid, value from tags where key = 'mlflow.parentRunId'", db
        )
        rewards = pd.read_sql(
            "select run_uuid, step from metrics where key = 'training.reward'", db
        )
    assert len(runs) == 3 and (runs["status"] == "FINISHED").all()
    top = set(runs["run_uuid"]) - set(parents["run_uuid"])
    assert len(top) == 1  # one parent run: the session was not replicated
    # Rank 0 logged each step live into the parent run, once.
    assert set(rewards["run_uuid"]) == top
    assert sorted(rewards["step"]) == list(range(1, 5))
    assert set(parents["value"]) == top
    assert sorted(runs.loc[runs["run_uuid"].isin(parents["run_uuid"]), "name"]) == [
        "evaluation.baseline",
        "evaluation.finetuned",
    ]

    test_ids = pd.read_parquet(project / "data/05_model_input/focus_test.parquet")["id"]
    for variant in ("baseline", "finetuned"):
        folder = project / "data/07_model_output" / variant
        responses = pd.read_json(folder / "responses.jsonl", lines=True, dtype={"id": str})
        assert responses["id"].tolist() == test_ids.astype(str).tolist()  # once, in order
        assert not (folder / "response_shards").exists()
        predictions = pd.read_csv(folder / "predictions.csv")
        assert len(predictions) == len(test_ids) and predictions["judged"].all()
    # The paired comparison covers every test question, as on one process.
    comparison = pd.read_csv(project / "data/08_reporting/comparison.csv")
    assert comparison.loc[0, "category"] == "All" and comparison.loc[0, "n"] == len(test_ids)


def test_a_distributed_block_that_cannot_work_stops_the_run_before_any_node(tmp_path):
    project = make_project_copy(tmp_path / "project")
    # Refused before any process starts: Kedro's command line in this process will do.
    result = kedro_run_in_process(
        project, "--params", "distributed.num_processes=3,distributed.num_machines=2"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "PreflightError" in output and "no node was run" in output
    assert "distributed.num_processes 3" in output
    assert "needs distributed.main_process_ip" in output
    # 3 processes cannot share the proposal's 4 completions per step.
    assert "cannot share training's global batch of 4 completions" in output
    assert not (project / "data/03_primary").exists()


def test_two_machines_on_localhost_one_kedro_run_each(tmp_path):
    """machine_rank 0 and 1 as two `kedro run` processes on one host (gloo, shared storage):
    machine 1 only runs workers; machine 0 owns the session, MLflow and the outputs."""
    project = make_project_copy(tmp_path / "project")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    params = (
        "distributed.num_processes=2,distributed.num_machines=2,"
        f"distributed.main_process_ip=127.0.0.1,distributed.main_process_port={port},"
        "distributed.timeout_s=600,training.max_steps=2,evaluation.generation.max_new_tokens=16"
    )
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    kedro = Path(sys.executable).with_name("kedro")
    worker_machine = subprocess.Popen(
        [str(kedro), "run", "--params", f"{params},distributed.machine_rank=1"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        main = kedro_run(project, "--params", f"{params},distributed.machine_rank=0", timeout=1800)
        worker_output, _ = worker_machine.communicate(timeout=300)
    finally:
        if worker_machine.poll() is None:
            worker_machine.kill()
    output = main.stdout + main.stderr
    assert main.returncode == 0, output[-3000:] + "\n--- machine 1:\n" + worker_output[-3000:]
    assert worker_machine.returncode == 0, worker_output[-5000:]
    # Training and both variants: three nodes spread over both machines.
    assert "this machine served 3 node(s)" in worker_output
    # Machine 1 went through Kedro's session to its hook and ran no pipeline of its own (the
    # console shows the project's lines only; the MLflow runs below are machine 0's alone).
    assert "no pipeline, MLflow run or output here" in worker_output
    assert "Running node" not in worker_output

    with sqlite3.connect(project / "mlflow.db") as db:
        names = sorted(pd.read_sql("select name from runs", db)["name"])
        losses = pd.read_sql(
            "select m.step from metrics m join runs r on m.run_uuid = r.run_uuid "
            "where r.name = '__default__' and m.key = 'training.loss'",
            db,
        )
    assert names == ["__default__", "evaluation.baseline", "evaluation.finetuned"]
    # Global rank 0 (on machine 0) logged each step into machine 0's run, once.
    assert sorted(losses["step"]) == [1, 2]
    summary = json.loads((project / "data/08_reporting/training_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    test_ids = pd.read_parquet(project / "data/05_model_input/focus_test.parquet")["id"]
    for variant in ("baseline", "finetuned"):
        folder = project / "data/07_model_output" / variant
        responses = pd.read_json(folder / "responses.jsonl", lines=True, dtype={"id": str})
        assert responses["id"].tolist() == test_ids.astype(str).tolist()
