"""A real SIGKILL of `kedro run --pipelines evaluation` while it answers, then the same command
again: nothing stored is asked again, and every question is answered exactly once."""

from __future__ import annotations

import re
import signal

import pandas as pd
import pytest

from tests.kedro_cli import kedro_run, kill_kedro_run_when, stored_responses

pytestmark = pytest.mark.slow

# Small batches, so that the kill lands between the first stored batch and the last; short
# answers (the tiny model never stops before its budget), so that the rerun is quick.
EVALUATION = [
    "--pipelines",
    "evaluation",
    "--params",
    "evaluation.generation.batch_size=2,evaluation.generation.max_new_tokens=16",
]
VARIANTS = ("baseline", "finetuned")


def test_a_killed_evaluation_resumes_without_asking_a_stored_question_again(trained_project_copy):
    questions = pd.read_parquet(
        trained_project_copy / "data" / "05_model_input" / "focus_test.parquet"
    )
    ids = sorted(questions["id"].astype(str))

    returncode = kill_kedro_run_when(
        trained_project_copy,
        EVALUATION,
        lambda: any(stored_responses(trained_project_copy, v) for v in VARIANTS),
        "it stored an answer",
    )
    assert returncode == -signal.SIGKILL

    before = {v: stored_responses(trained_project_copy, v) for v in VARIANTS}
    first = next(v for v in VARIANTS if before[v])
    assert 0 < len(before[first]) < len(ids)  # killed while the first variant was answering
    assert not any(before[v] for v in VARIANTS if v != first)  # the other had not started

    rerun = kedro_run(trained_project_copy, *EVALUATION)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-3000:]
    for variant in VARIANTS:
        done = len(before[variant])
        # The node says what it reuses and what it asks: only the questions without an answer.
        message = re.search(
            rf"{variant}: (\d+) stored response\(s\) reused, (\d+) question\(s\) to answer",
            output,
        )
        assert message, output[-3000:]
        assert (int(message[1]), int(message[2])) == (done, len(ids) - done)
        after = stored_responses(trained_project_copy, variant)
        assert sorted(row["id"] for row in after) == ids  # every question exactly once
        # The answers stored before the kill are kept as they were (their timing included),
        # not generated again.
        by_id = {row["id"]: row for row in after}
        assert all(by_id[row["id"]] == row for row in before[variant])
    predictions = pd.read_csv(
        trained_project_copy / "data" / "07_model_output" / first / "predictions.csv"
    )
    assert sorted(predictions["id"].astype(str)) == ids
