"""`kedro run --pipelines evaluation` with the baseline answered by a real `transformers serve`
(the project's saved tiny model, on 127.0.0.1, CPU) and the fine-tuned variant answered
in-process: the stored answers, a resume after a killed run, and the paired comparison of the
served variant against the local one; then `kedro run --pipelines serving` writes the merged
fine-tuned checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.servers import free_port, server
from tests.kedro_cli import kedro_run

pytestmark = pytest.mark.slow

TRANSFORMERS = Path(sys.executable).with_name("transformers")


def stored(project: Path, variant: str) -> list[dict]:
    path = project / "data" / "07_model_output" / variant / "responses.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def served_evaluation(base_url: str, model: str) -> list[str]:
    params = ",".join(
        [
            "evaluation.generation.max_new_tokens=16",
            "evaluation.answering.baseline.backend=openai",
            f"evaluation.answering.baseline.base_url={base_url}",
            f"evaluation.answering.baseline.model={model}",
            "evaluation.answering.baseline.concurrency=4",
        ]
    )
    return ["--pipelines", "evaluation", "--params", params]


def test_a_variant_answered_by_transformers_serve_is_stored_resumed_and_compared(
    trained_project_copy,
):
    model = str((trained_project_copy / "data" / "06_models" / "base_model").resolve())
    ids = sorted(
        pd.read_parquet(trained_project_copy / "data" / "05_model_input" / "focus_test.parquet")[
            "id"
        ]
        .astype(str)
        .tolist()
    )
    port = free_port()
    command = [str(TRANSFORMERS), "serve", model, "--device", "cpu", "--host", "127.0.0.1"]
    with server(
        [*command, "--port", str(port)], trained_project_copy, port, "/health", timeout=180
    ):
        base_url = f"http://127.0.0.1:{port}/v1"
        args = served_evaluation(base_url, model)

        # A run killed while the served baseline answers keeps every stored answer.
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
        kedro = Path(sys.executable).with_name("kedro")
        process = subprocess.Popen(
            [str(kedro), "run", *args],
            cwd=trained_project_copy,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 300
            while len(stored(trained_project_copy, "baseline")) < 3:
                assert process.poll() is None, "the run ended before it stored 3 answers"
                assert time.monotonic() < deadline, "no answers were stored within 300 s"
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        before = stored(trained_project_copy, "baseline")
        assert 3 <= len(before) < len(ids)

        rerun = kedro_run(trained_project_copy, *args, timeout=900)
        output = rerun.stdout + rerun.stderr
        assert rerun.returncode == 0, output[-3000:]
    message = re.search(
        r"baseline: (\d+) stored response\(s\) reused, (\d+) question\(s\) to answer", output
    )
    assert message, output[-3000:]
    assert (int(message[1]), int(message[2])) == (len(before), len(ids) - len(before))
    after = stored(trained_project_copy, "baseline")
    assert sorted(row["id"] for row in after) == ids  # every question exactly once
    by_id = {row["id"]: row for row in after}
    assert all(by_id[row["id"]] == row for row in before)  # not asked again
    assert {row["answered_by"] for row in after} == {f"openai:{model}"}
    assert all(row["response_tokens"] == 16 and not row["finished"] for row in after)
    assert all(row["response"] for row in after)
    local = stored(trained_project_copy, "finetuned")
    assert {row["answered_by"] for row in local} == {"local"}
    assert {row["generation_key"] for row in local}.isdisjoint({r["generation_key"] for r in after})

    # The paired comparison of the served baseline against the local fine-tuned model.
    comparison = pd.read_csv(trained_project_copy / "data" / "08_reporting" / "comparison.csv")
    overall = comparison.iloc[0]
    assert overall["category"] == "All"
    assert (int(overall["n"]), int(overall["unpaired"])) == (len(ids), 0)
    assert (
        "Baseline against fine-tuned"
        in (trained_project_copy / "data" / "08_reporting" / "evaluation_report.md").read_text()
    )
