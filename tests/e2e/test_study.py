"""A clone, the README's install, `kedro run`: the whole default study finishes, with its reports
and MLflow runs; a second run keeps the first run's record."""

import re
import shutil
import sqlite3

import pandas as pd
import pytest

from tests.kedro_cli import kedro_run

pytestmark = pytest.mark.slow

REPORTS = [
    "hle_statistics.md",
    "hle_statistics.csv",
    "split_sizes.csv",
    "split_leaks.csv",
    "figure_1_questions_per_category.png",
    "training_summary.json",
    "training_completions.jsonl",
    "table_1.csv",
    "evaluation_report.md",
    "metrics_by_category.csv",
    "baseline_reliability_diagram.png",
    "finetuned_reliability_diagram.png",
    "comparison.csv",
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
    # GRPO's completions: each step's 4, and a few of the first and last step in the report.
    completions = pd.read_json(reporting / "training_completions.jsonl", lines=True)
    assert list(completions["step"]) == [s for s in range(1, 9) for _ in range(4)]  # max_steps 8
    report = (reporting / "evaluation_report.md").read_text()
    assert "## Training: what GRPO generated" in report and "| 8 | synth" in report
    assert (
        finished_study.path / "data" / "06_models" / "lora_adapter" / "adapter_config.json"
    ).exists()
    # The closing summary tells where the reports are and how to look at the runs.
    assert "Headline (MLflow run" in finished_study.output
    # ... and the paired comparison: no question answered differently by the random tiny model.
    assert (
        "finetuned - baseline: +0.00 pp [-5.00, +5.00] (95%, 73 paired), McNemar p = 1.000"
        in finished_study.output
    )
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in finished_study.output
    assert "kedro viz run" in finished_study.output
    # A quiet console: no third-party message the user cannot act on, no traceback.
    flat = " ".join(finished_study.output.split())  # the console wraps long messages
    for noise in (
        "Add type hints to the `predict` method",
        "dataset names contain '.'",
        "Failed to load CPU gemm_4bit_forward",
        "Timeout during comparison",
        "Timeout is disabled",
        "Traceback",
    ):
        assert noise not in flat, noise
    # The project's own warnings stay (73 answers are fewer than beta = 100).
    assert "73 answers < beta = 100" in finished_study.output
    assert "judged / answered" in finished_study.output


def test_default_study_console_is_progress_warnings_and_summary(finished_study):
    output = finished_study.output
    # One line per message (about 760 when Kedro's INFO lines were shown), the bars apart.
    messages = [line for line in re.split(r"[\r\n]", output) if line.strip() and "%|" not in line]
    assert len(messages) <= 60, "\n".join(messages)
    for noise in (
        "Loading data from",  # Kedro's INFO lines: in the log file only
        "Running node",
        "Loading weights",  # transformers' loading and saving bars
        "Writing model shards",
        "is_gradient_checkpointing",
        "Creating initial MLflow database tables",
    ):
        assert noise not in output, noise
    assert re.search(
        r"^\d\d:\d\d:\d\d WARNING baseline: 73 answers < beta = 100: the official calibration "
        r"error is undefined",
        output,
        re.M,
    )
    # The training bar says what it counts, and its last reward is the summary's.
    final_bar = [s for s in re.split(r"[\r\n]", output) if s.startswith("GRPO training")][-1]
    assert "8/8" in final_bar, final_bar  # training.max_steps: 8 (conf/base)
    summary = re.search(r"final reward (\d\.\d+)", output)[1]
    assert f"reward={float(summary):.3g}" in final_bar, (final_bar, summary)
    log = (finished_study.path / "hle_reasoning.log").read_text()
    assert "Loading data from" in log and "Trained 8 steps" in log


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
    assert {"training.no_signal_group_share", "training.cut_share"} <= parent_keys
    assert any(k.startswith("data_processing.") for k in parent_keys)
    assert {
        "comparison.accuracy_diff",
        "comparison.accuracy_diff_ci_low",
        "comparison.accuracy_diff_ci_high",
        "comparison.mcnemar_p",
        "comparison.baseline_only",
        "comparison.finetuned_only",
        "comparison.calibration_error_diff",
        "comparison.calibration_error_all_bins_diff",
        "comparison.math.accuracy_diff",
    } <= parent_keys


def test_a_second_run_keeps_the_first_runs_record(finished_study, tmp_path):
    project = tmp_path / "again"
    shutil.copytree(finished_study.path, project)
    before = runs(finished_study)
    with sqlite3.connect(project / "mlflow.db") as db:
        first_metrics = pd.read_sql("select run_uuid, key, value from latest_metrics", db)

    # The evaluation again (every answer stored: seconds), in a run of its own.
    result = kedro_run(project, "--pipelines", "evaluation", timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "0 question(s) to answer" in result.stdout + result.stderr

    table = runs(type(finished_study)(project, 0.0, ""))
    parents = table[table["mlflow.parentRunId"].isna()]
    assert len(parents) == 2 and (table["status"] == "FINISHED").all()
    for parent in parents["run_uuid"]:
        children = table[table["mlflow.parentRunId"] == parent]
        assert sorted(children["variant"]) == ["baseline", "finetuned"]
    # The first run's record is untouched by the second.
    with sqlite3.connect(project / "mlflow.db") as db:
        metrics = pd.read_sql("select run_uuid, key, value from latest_metrics", db)
    old = metrics[metrics["run_uuid"].isin(before["run_uuid"])].sort_values(["run_uuid", "key"])
    pd.testing.assert_frame_equal(
        old.reset_index(drop=True),
        first_metrics.sort_values(["run_uuid", "key"]).reset_index(drop=True),
    )
