"""`kedro run --pipelines evaluation` with the baseline answered by a serving engine the run
starts and stops itself (`backend: engine`, `engine: transformers`, the project's saved tiny
model, CPU): Ctrl-C of the run stops its engine; an engine killed mid-run ends the run with its log's tail and keeps the stored
answers; the rerun asks only the missing questions; the answers equal the `openai` backend's
against a hand-started `transformers serve`; no engine process is left; the variant's MLflow run
names the engine."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from hle_reasoning.config import AnsweringConfig, GenerationConfig
from hle_reasoning.datasets import BaseModelDataset
from hle_reasoning.hle.data.prompts import DEFAULT_CHAT_TEMPLATE_DATE
from hle_reasoning.modeling.openai_backend import Endpoint, EndpointAnswerer
from tests.e2e.servers import free_port, server
from tests.kedro_cli import ENV, KEDRO, kedro_run, stored_responses
from tests.pipelines.test_evaluation_served import TRANSFORMERS

pytestmark = pytest.mark.slow

ARGS = [
    "--pipelines",
    "evaluation",
    "--params",
    ",".join(
        [
            "evaluation.generation.max_new_tokens=8",
            "evaluation.answering.baseline.backend=engine",
            "evaluation.answering.baseline.engine=transformers",
            "evaluation.answering.baseline.concurrency=4",
            "evaluation.answering.baseline.max_retries=0",
        ]
    ),
]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def engine_info(project: Path) -> dict:
    path = project / "data" / "07_model_output" / "engine_logs" / "baseline.engine.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def start_run(project: Path, log: Path) -> subprocess.Popen:
    """``kedro run ARGS`` in the background, its output in ``log``, Ctrl-C not ignored."""
    with log.open("w") as out:
        return subprocess.Popen(
            [str(KEDRO), "run", *ARGS],
            cwd=project,
            env={**os.environ, **ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
        )


def wait_for_answers(project: Path, run: subprocess.Popen, log: Path, count: int) -> None:
    deadline = time.monotonic() + 300
    while len(stored_responses(project, "baseline")) < count:
        assert run.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {count} answers in 300 s"
        time.sleep(0.05)


def stop(run: subprocess.Popen) -> None:
    if run.poll() is None:
        run.kill()
        run.wait()


def test_a_managed_engine_stops_with_the_run_resumes_after_its_death_and_matches_a_server(
    trained_project_copy,
):
    project = trained_project_copy
    ids = sorted(
        pd.read_parquet(project / "data" / "05_model_input" / "focus_test.parquet")["id"]
        .astype(str)
        .tolist()
    )

    # Ctrl-C while the engine answers: the run stops soon, its engine with it, answers kept.
    log = project / "interrupted-run.log"
    run = start_run(project, log)
    try:
        wait_for_answers(project, run, log, 3)
        interrupted = int(engine_info(project)["pid"])
        run.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert run.wait(timeout=120) != 0
        stopped_s = time.monotonic() - started
    finally:
        stop(run)
    assert not _alive(interrupted), log.read_text()[-3000:]
    assert stopped_s < 60, f"{stopped_s:.0f} s from Ctrl-C to the end of the run"
    first = len(stored_responses(project, "baseline"))
    assert 3 <= first < len(ids)

    # The engine dies while the run answers: the run ends with its log's tail, answers kept.
    log = project / "killed-run.log"
    run = start_run(project, log)
    try:
        wait_for_answers(project, run, log, first + 3)
        killed = int(engine_info(project)["pid"])
        assert killed != interrupted
        os.kill(killed, signal.SIGKILL)
        assert run.wait(timeout=120) != 0
    finally:
        stop(run)
    output = log.read_text()
    assert "the transformers engine serving" in output and "while answering" in output, output[
        -3000:
    ]
    assert "engine_logs/baseline-transformers-" in output
    before = stored_responses(project, "baseline")
    assert 3 <= len(before) < len(ids)

    # The rerun starts a new engine and asks only the missing questions; no engine is left.
    rerun = kedro_run(project, *ARGS, timeout=900)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-3000:]
    message = re.search(
        r"baseline: (\d+) stored response\(s\) reused, (\d+) question\(s\) to answer", output
    )
    assert message and (int(message[1]), int(message[2])) == (len(before), len(ids) - len(before))
    info = engine_info(project)
    assert int(info["pid"]) not in (killed, interrupted) and not _alive(int(info["pid"]))
    after = stored_responses(project, "baseline")
    assert sorted(row["id"] for row in after) == ids
    by_id = {row["id"]: row for row in after}
    assert all(by_id[row["id"]] == row for row in before)  # not asked again
    # The model the run loads (model_ref.json's path in this project, not the one it was copied from).
    model = str(
        Path(BaseModelDataset(path=str(project / "data/06_models/base_model")).load()).resolve()
    )
    assert {row["answered_by"] for row in after} == {f"engine:transformers:{model}"}
    assert all(row["response_tokens"] == 8 for row in after)

    # The variant's MLflow run names the engine.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.variant = 'baseline'",
    )
    params = runs[0].data.params
    assert params["engine.name"] == "transformers"
    assert params["engine.precision"] == "float32"
    assert params["engine.command"].split()[1:3] == ["serve", model]
    assert params["engine.version"] == info["version"]

    # The same answers from the openai backend against a hand-started server.
    questions = pd.read_parquet(project / "data" / "05_model_input" / "focus_test.parquet")
    port = free_port()
    command = [
        str(TRANSFORMERS),
        "serve",
        model,
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--dtype",
        "float32",
        "--port",
        str(port),
    ]
    with server(command, project, port, "/health", timeout=180):
        answerer = EndpointAnswerer(
            Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model=model),
            GenerationConfig(max_new_tokens=8),
            AnsweringConfig(backend="openai", concurrency=4),
            image_first=True,  # as the engine asks the Llama 3.2 Vision it serves
            chat_template_date=DEFAULT_CHAT_TEMPLATE_DATE,  # as the engine sends it
        )
        by_hand = pd.concat(list(answerer.answer_all(questions, progress=False)))
    assert dict(zip(by_hand["id"], by_hand["response"], strict=True)) == {
        row["id"]: row["response"] for row in after
    }
