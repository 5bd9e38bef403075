"""A clone, the README's install, `kedro run`: the whole default study finishes, with its reports
and MLflow runs; a second run keeps the first run's record."""

import sqlite3

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPORTS = [
    "hle_statistics.md",
    "hle_statistics.csv",
    "split_sizes.csv",
    "split_leaks.csv",
    "figure_1_questions_per_category.png",
    "training_summary.json",
    "table_1.csv",
    "evaluation_report.md",
    "metrics_by_category.csv",
    "baseline_reliability_diagram.png",
    "finetuned_reliability_diagram.png",
]


def runs(study) -> pd.DataFrame:
    with sqlite3.connect(study.path / "mlflow.db") as db:
        runs = pd.read_sql("select run_uuid, name, status from runs", db)
        tags = pd.read_sql("select run_uuid, key, value from tags", db)
    tags = tags.pivot(index="run_uuid", columns="key", values="value")
    return runs.join(tags, on="run_uuid")


def test_default_study_writes_every_report(finished_study):
    reporting = finished_study.path / "data" / "08_reporting"
    missing = [name for name in REPORTS if not (reporting / name).exists()]
    assert not missing
    table = pd.read_csv(reporting / "table_1.csv")
    assert len(table) == 10  # the HLE paper's 8 rows, then baseline and fine-tuned
    assert (
        finished_study.path / "data" / "06_models" / "lora_adapter" / "adapter_config.json"
    ).exists()
    # The closing summary tells where the reports are and how to look at the runs.
    assert "Headline metrics" in finished_study.output
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in finished_study.output
    assert "kedro viz run" in finished_study.output


def test_default_study_is_tracked_in_mlflow(finished_study):
    table = runs(finished_study)
    assert (table["status"] == "FINISHED").all()
    parents = table[table["mlflow.parentRunId"].isna()]
    children = table[table["mlflow.parentRunId"].notna()]
    assert len(parents) == 1
    assert sorted(children["variant"]) == ["baseline", "finetuned"]
    assert set(children["mlflow.parentRunId"]) == set(parents["run_uuid"])
    with sqlite3.connect(finished_study.path / "mlflow.db") as db:
        metrics = pd.read_sql("select run_uuid, key from latest_metrics", db)
    for run_id in children["run_uuid"]:
        keys = set(metrics.loc[metrics["run_uuid"] == run_id, "key"])
        assert {
            "accuracy",
            "accuracy_ci",
            "calibration_error",
            "calibration_error_all_bins",
        } <= keys
    parent_keys = set(metrics.loc[metrics["run_uuid"] == parents["run_uuid"].iloc[0], "key"])
    assert any(k.startswith("training.") for k in parent_keys)
    assert any(k.startswith("data_processing.") for k in parent_keys)
