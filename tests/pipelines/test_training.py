"""The training pipeline: a real `kedro run` after data_processing, and bad config stopping it."""

from __future__ import annotations

import json
import re
import sqlite3

import pandas as pd
import pytest
import yaml

from hle_reasoning.datasets import BaseModelDataset
from hle_reasoning.pipelines.training import create_pipeline
from hle_reasoning.preflight import preflight_problems
from tests.conftest import PROJECT_ROOT
from tests.kedro_cli import kedro_run

TERMS = ("adapter_gb", "training_overhead_gb", "dataset_gb")  # eq. (6)'s terms beside the model


def base_params(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / "conf" / "base" / name).read_text())


def test_bad_config_stops_the_pipeline_before_any_model_is_built():
    from kedro.validation.exceptions import ParameterValidationError
    from kedro.validation.parameter_validator import ParameterValidator

    training = base_params("parameters_training.yml")["training"]
    training["grpo"]["num_generations"] = 1
    model = base_params("parameters.yml")["model"]
    model["name_or_path"] = "tiny"
    params = {
        "model": model,
        "training": training,
        "distributed": base_params("parameters.yml")["distributed"],
    }
    # Kedro builds the blocks the nodes are annotated with before it builds the catalog (as
    # KedroContext does): the pipeline never starts.
    with pytest.raises(ParameterValidationError, match="num_generations"):
        ParameterValidator({"training": create_pipeline()}).validate_raw_params(params)
    # The run's message (cli.py) names the key, its value and what to change.
    problems = preflight_problems(params, None, uses_model=False, uses_device=False)
    assert any("training.grpo.num_generations is 1" in p for p in problems), problems


def mlflow_run(project) -> dict:
    """Params, metric histories and artifacts of the project's latest MLflow run."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    (run,) = mlflow.search_runs(
        experiment_names=["hle_reasoning"],
        max_results=1,
        output_format="list",
        order_by=["start_time DESC"],
    )
    steps = {
        key: [m.step for m in client.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics
    }
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "training")]
    return {
        "params": run.data.params,
        "metrics": run.data.metrics,
        "steps": steps,
        "artifacts": artifacts,
        "status": run.info.status,
    }


@pytest.mark.slow
@pytest.mark.slow
def test_a_failed_worker_ends_kedro_run_with_its_rank_and_error(project_copy):
    """2 worker processes that cannot load the cosine reward's embedding model: the command ends
    with the workers' ranks and error in one message, without a traceback of the Kedro run, and
    writes no training output."""
    result = kedro_run(
        project_copy,
        "--pipeline",
        "training",
        "--params",
        "distributed.num_processes=2,training.max_steps=1,training.embedding_model=/no/such/model",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Error: WorkerFailedError: " in output
    assert re.search(
        r"rank ([01]) \(local rank \1\): exit code 1: \w*Error: Path /no/such/model not found",
        output,
    ), output[-3000:]
    assert "run the same command again to resume" in output
    assert "╭" not in output  # no (rich) traceback of the Kedro process
    assert not (project_copy / "data/08_reporting/training_summary.json").exists()
    assert mlflow_run(project_copy)["status"] == "FAILED"


def test_kedro_run_trains_on_image_questions_and_tracks_everything(project_copy):
    """The card's command on a fresh copy (no split yet): `kedro run --pipeline training` offline
    runs the split it needs first, then 3 steps of the default setup (tiny Mllama in 4-bit,
    image questions in the training set)."""
    assert not (project_copy / "data/05_model_input").exists()
    result = kedro_run(project_copy, "--pipeline", "training", "--params", "training.max_steps=3")
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "DatasetError" not in output
    assert (
        "hle-reasoning: focus_train not found; running first the 2 node(s) of the study that "
        "make them (" in output
    )
    assert "hle-reasoning: training finished in" in output
    assert (project_copy / "data/05_model_input/focus_train.parquet").exists()
    assert not (project_copy / "data/08_reporting/hle_statistics.md").exists()  # only what it needs

    summary = json.loads((project_copy / "data/08_reporting/training_summary.json").read_text())
    assert summary["steps"] == 3 and summary["quantized"] and summary["image_questions"] >= 2
    assert summary["completions_per_step"] == 4  # 2 prompts x 2 generations
    assert summary["memory"]["eq6"]["training_overhead_gb"] == 1.5
    assert summary["memory"]["measured"]["peak_rss_gb"] > 0
    # The resident weights as loaded (4-bit linears, lm_head and embeddings in bf16, absmax).
    resident = summary["memory"]["resident_weights"]
    assert resident["skipped_modules"] == ["lm_head"] and resident["absmax_bytes"] > 0
    assert resident["parameters"] == summary["memory"]["eq6"]["parameters"]
    assert summary["memory"]["resident_estimate"]["total_gb"] == pytest.approx(
        resident["total_gb"] + sum(summary["memory"]["eq6"][k] for k in TERMS)
    )
    assert not (project_copy / "data/06_models/grpo_checkpoints").exists()

    run = mlflow_run(project_copy)
    assert run["status"] == "FINISHED"
    params = run["params"]
    # The configuration as written, and the trainer's resolved settings beyond it: a setting of
    # the YAML is logged once, under its YAML name.
    assert params["training.grpo.beta"] == "0.1"
    assert params["training.grpo.loss_type"] == "grpo"
    assert params["training.lora.r"] == "4"
    assert "trl.beta" not in params and "trl.loss_type" not in params
    assert params["trl.per_device_train_batch_size"] == "4"
    assert params["trl.max_prompt_tokens"] == "32"
    assert "peft.r" not in params and "peft.lora_alpha" not in params
    assert params["peft.bias"] == "none"
    # One process, no launcher: accelerate's plain setup, in the proposal's bf16.
    assert params["accelerate.distributed_type"] == "NO" == summary["distributed_type"]
    assert params["accelerate.mixed_precision"] == "bf16" == summary["mixed_precision"]
    for key in (
        "loss",
        "reward",
        "reward.cosine",
        "reward_std",
        "kl",
        "completion_length",
        "learning_rate",
    ):
        assert run["steps"][f"training.{key}"] == [1, 2, 3], key
    for key in (
        "memory.eq6_total_gb",
        "memory.resident_total_gb",
        "memory.resident_absmax_gb",
        "memory.peak_rss_gb",
        "mean_step_time_s",
    ):
        assert f"training.{key}" in run["metrics"]
    assert "training/lora_adapter" in run["artifacts"]
    assert "training/training_summary.json" in run["artifacts"]
    assert "training/training_curves.png" in run["artifacts"]
    history = pd.read_csv(project_copy / "data/08_reporting/training_history.csv")
    assert history["step"].tolist() == [1, 2, 3]
    assert history["reward"].notna().all()
    with sqlite3.connect(project_copy / "mlflow.db") as db:
        (count,) = db.execute("select count(*) from runs").fetchone()
    assert count == 1

    # The evaluation's contract: the base model plus the adapter directory load with PEFT.
    from peft import PeftModel

    from hle_reasoning.datasets import LoraAdapterDataset
    from hle_reasoning.modeling.models import load_model

    base = BaseModelDataset(path=str(project_copy / "data/06_models/base_model")).load()
    adapter = LoraAdapterDataset(path=str(project_copy / "data/06_models/lora_adapter")).load()
    assert isinstance(adapter, str)
    model = PeftModel.from_pretrained(load_model(base, device="cpu"), adapter)
    assert any("lora_B" in name for name, _ in model.named_parameters())
