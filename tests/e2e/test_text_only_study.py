"""A text-only model through the whole study (`kedro run`): trained on the train split's text
questions, evaluated and compared on the test split's, and every record says so with counts."""

import json
import sqlite3

import pandas as pd
import pytest

from hle_reasoning.hle.data.schema import has_image
from tests.kedro_cli import kedro_run
from tests.modeling.tiny_families import save_tiny_causal_lm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def text_only_study(tmp_path_factory):
    from tests.conftest import make_project_copy

    project = make_project_copy(tmp_path_factory.mktemp("text_only") / "project")
    model = save_tiny_causal_lm(project / "tiny_causal_lm")
    result = kedro_run(
        project,
        "--params",
        f"model.name_or_path={model},training.max_steps=2,evaluation.generation.max_new_tokens=8",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return project, output


def test_the_text_only_subset_is_said_everywhere_with_its_counts(text_only_study):
    project, output = text_only_study
    test = pd.read_parquet(project / "data" / "05_model_input" / "focus_test.parquet")
    train = pd.read_parquet(project / "data" / "05_model_input" / "focus_train.parquet")
    n_test, n_text = len(test), int((~test["image"].map(has_image)).sum())
    n_train_text = int((~train["image"].map(has_image)).sum())
    assert 0 < n_text < n_test  # the sample has image questions to leave out
    note = f"{n_text} of {n_test} test questions: text-only subset"
    reporting = project / "data" / "08_reporting"

    summary = json.loads((reporting / "training_summary.json").read_text())
    assert summary["family"] == "text"
    assert summary["questions"] == n_train_text
    assert summary["subset"] == f"{n_train_text} of {len(train)} train questions: text-only subset"

    report = (reporting / "evaluation_report.md").read_text()
    assert f"{note[0].upper()}{note[1:]}" in report
    table = pd.read_csv(reporting / "table_1.csv")
    measured = table[table["source"] == "measured"]
    assert list(measured["note"]) == [note, note]
    assert list(measured["answered"]) == [n_text, n_text]
    # The paired comparison pairs the same subset.
    comparison = pd.read_csv(reporting / "comparison.csv")
    assert int(comparison.iloc[0]["n"]) == n_text

    with sqlite3.connect(project / "mlflow.db") as db:
        tags = pd.read_sql("select key, value from tags where key = 'subset'", db)
        params = pd.read_sql("select key, value from params where key = 'subset'", db)
    assert list(tags["value"]) == [note, note]
    assert list(params["value"]) == ["text-only", "text-only"]
    # The closing summary says it for both variants.
    flat = " ".join(output.split())
    assert f"baseline: {note}" in flat and f"finetuned: {note}" in flat
