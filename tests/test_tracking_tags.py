"""What the MLflow UI reads from the store: the experiment's kind and saved view (from
conf/base/mlflow.yml, applied to an existing experiment too), the variant runs' tags and the
order of their metrics, and the address the summary prints."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from hle_reasoning import tracking
from hle_reasoning.datasets import MlflowChildRunDataset
from hle_reasoning.datasets.evaluation import leading_first
from hle_reasoning.hle.scoring.metrics import SCORE_COLUMNS
from hle_reasoning.hooks import experiment_tags, runs_table_url, with_metric_columns
from tests.conftest import PROJECT_ROOT


def _conf_tags() -> dict[str, str]:
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig

    config = KedroMlflowConfig.model_validate(
        yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "mlflow.yml").read_text())
    )
    return experiment_tags(SimpleNamespace(mlflow=config))


def test_mlflow_yml_names_a_classic_experiment_and_a_view_of_logged_metrics():
    tags = _conf_tags()
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    key = tracking.saved_view_key(tags)
    assert key == "hle_reasoning"
    view = json.loads(tags[tracking.SAVED_VIEW_TAG_PREFIX + key])
    columns = view["selectedColumns"]
    # Metric names the study logs: the variant runs' and the training run's.
    assert {
        "metrics.`accuracy`",
        "metrics.`calibration_error`",
        "metrics.`training.reward`",
    } <= set(columns)
    assert all(c.startswith("metrics.`") and c.endswith("`") for c in columns)


def test_the_view_shows_the_metric_registrys_scores_first_then_its_own_columns():
    tag = _conf_tags()[tracking.SAVED_VIEW_TAG_PREFIX + "hle_reasoning"]
    view = json.loads(tag)
    first = [f"metrics.`{name}`" for name in SCORE_COLUMNS]
    assert first[:3] == [
        "metrics.`accuracy`",
        "metrics.`accuracy_ci`",
        "metrics.`calibration_error`",
    ]
    for key in ("selectedColumns", "columnOrder"):
        assert view[key] == [
            *first,
            "metrics.`judged`",
            "metrics.`training.reward`",
            "metrics.`training.kl`",
        ]
    # A view that lists a registered column already shows it once, in the registry's place.
    assert with_metric_columns(tag) == tag
    again = json.loads(
        with_metric_columns(json.dumps({"selectedColumns": ["metrics.`x`", first[1]]}))
    )
    assert again["selectedColumns"] == [*first, "metrics.`x`"]
    assert again["columnOrder"] == first


def test_an_existing_experiment_gets_the_tags_it_lacks(mlflow_store):
    mlflow = mlflow_store
    experiment = mlflow.create_experiment("made_before", tags={"mlflow.experimentKind": "genai"})
    tags = _conf_tags()
    with mlflow.start_run(experiment_id=experiment):
        now = tracking.set_experiment_tags(tags)
    stored = mlflow.MlflowClient().get_experiment(experiment).tags
    assert stored["mlflow.experimentKind"] == "custom_model_development"
    assert (
        stored["mlflow.sharedViewState.hle_reasoning"]
        == tags["mlflow.sharedViewState.hle_reasoning"]
    )
    assert now == stored
    assert tracking.set_experiment_tags(tags) == {}  # no active run: nothing written


def test_variant_runs_are_evaluation_runs_logging_accuracy_first(mlflow_store):
    mlflow = mlflow_store
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog_evaluation.yml").read_text())
    entry = dict(catalog["evaluation_runs"])
    del entry["type"]
    entry["run_name"] = "evaluation.baseline"
    entry["tags"] = {k: v.replace("{variant}", "baseline") for k, v in entry["tags"].items()}
    dataset = MlflowChildRunDataset(**entry)
    metrics = {"n": 73, "judged": 73, "accuracy": 4.1, "accuracy_ci": 4.5, "calibration_error": 9}
    with mlflow.start_run(run_name="__default__"):
        dataset.save({"metrics": metrics})
    run = mlflow.MlflowClient().get_run(dataset.last_run_id)
    assert run.data.tags["mlflow.runType"] == "evaluation"
    assert run.data.tags["mlflow.parentRunId"]
    # The order the UI receives them in (the compare view plots the first shared one).
    assert list(run.data.metrics)[:2] == ["accuracy", "calibration_error"]
    assert run.data.metrics == pytest.approx({k: float(v) for k, v in metrics.items()})


def test_leading_first_keeps_every_metric_once():
    metrics = {"n": 1, "accuracy": 2, "x": 3}
    assert list(leading_first(metrics, ["accuracy", "missing"])) == ["accuracy", "n", "x"]
    assert leading_first(metrics, []) == metrics


def test_the_printed_address_opens_the_runs_table_with_the_view():
    assert runs_table_url("7", "hle_reasoning") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
        "&viewStateShareKey=hle_reasoning"
    )
    assert runs_table_url("7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    assert runs_table_url(None) == "http://127.0.0.1:5000"


def test_one_dataset_logs_a_child_run_per_variant_named_after_it(mlflow_store):
    from hle_reasoning.summaries import VariantRun

    mlflow = mlflow_store
    catalog = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog_evaluation.yml").read_text())
    entry = dict(catalog["evaluation_runs"])
    del entry["type"]
    dataset = MlflowChildRunDataset(**entry)
    with mlflow.start_run(run_name="__default__") as parent:
        dataset.save([VariantRun(variant=v, metrics={"accuracy": 1.0}) for v in ("baseline", "R1")])
    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list"
    )
    named = {run.info.run_name: run.data.tags["variant"] for run in children}
    assert named == {"evaluation.baseline": "baseline", "evaluation.R1": "R1"}
