"""`kedro run --pipelines evaluation` with the baseline answered by a real `transformers serve`
(the project's saved tiny model, on 127.0.0.1, CPU) and the fine-tuned variant answered
in-process: the stored answers, a resume after a killed run, and the paired comparison of the
served variant against the local one; then `kedro run --pipelines serving` writes the merged
fine-tuned checkpoint."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.servers import free_port, server
from tests.kedro_cli import kedro_run, kill_kedro_run_when, stored_responses

pytestmark = pytest.mark.slow

TRANSFORMERS = Path(sys.executable).with_name("transformers")


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
    # 12 of the 73 test questions, two with an image: storing, resuming and comparing need a
    # few answers on each side of the kill, not a CPU server answering 73 questions one at a time.
    focus_test = trained_project_copy / "data" / "05_model_input" / "focus_test.parquet"
    questions = pd.read_parquet(focus_test)
    with_image = questions["image"] != ""
    pd.concat([questions[~with_image].head(10), questions[with_image].head(2)]).reset_index(
        drop=True
    ).to_parquet(focus_test)
    ids = sorted(pd.read_parquet(focus_test)["id"].astype(str).tolist())
    assert len(ids) == 12
    port = free_port()
    command = [str(TRANSFORMERS), "serve", model, "--device", "cpu", "--host", "127.0.0.1"]
    with server(
        [*command, "--port", str(port)], trained_project_copy, port, "/health", timeout=180
    ):
        base_url = f"http://127.0.0.1:{port}/v1"
        args = served_evaluation(base_url, model)

        # A run killed while the served baseline answers keeps every stored answer.
        kill_kedro_run_when(
            trained_project_copy,
            args,
            lambda: len(stored_responses(trained_project_copy, "baseline")) >= 3,
            "it stored 3 answers",
        )
        before = stored_responses(trained_project_copy, "baseline")
        assert 3 <= len(before) < len(ids)

        rerun = kedro_run(trained_project_copy, *args, timeout=900)
        output = rerun.stdout + rerun.stderr
        assert rerun.returncode == 0, output[-3000:]
    message = re.search(
        r"baseline: (\d+) stored response\(s\) reused, (\d+) question\(s\) to answer", output
    )
    assert message, output[-3000:]
    assert (int(message[1]), int(message[2])) == (len(before), len(ids) - len(before))
    after = stored_responses(trained_project_copy, "baseline")
    assert sorted(row["id"] for row in after) == ids  # every question exactly once
    by_id = {row["id"]: row for row in after}
    assert all(by_id[row["id"]] == row for row in before)  # not asked again
    assert {row["answered_by"] for row in after} == {f"openai:{model}"}
    assert all(row["response_tokens"] == 16 and not row["finished"] for row in after)
    assert all(row["response"] for row in after)
    local = stored_responses(trained_project_copy, "finetuned")
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
