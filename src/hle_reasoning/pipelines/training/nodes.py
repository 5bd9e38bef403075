"""Nodes of the training pipeline: thin adapters from config to hle_reasoning.modeling."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from hle_reasoning import tracking
from hle_reasoning.config import DistributedConfig, ModelConfig, TrainingConfig
from hle_reasoning.config.training import TrainingConfigError
from hle_reasoning.modeling import curves, models
from hle_reasoning.modeling.models import BuiltModel
from hle_reasoning.pipelines.training import workers
from hle_reasoning.summaries import TrainingSummary

logger = logging.getLogger(__name__)


def prepare_base_model(
    model_config: ModelConfig, training_config: TrainingConfig
) -> BuiltModel | str:
    """Check the training configuration, then build the tiny base model or check access to it.

    The check comes first, so a bad configuration fails before any model is built or loaded.
    """
    from hle_reasoning.modeling import training  # torch, transformers, trl: when it trains

    problems = training.config_problems(training_config, model_config)
    if problems:
        raise TrainingConfigError(problems)
    return models.prepare_base_model(model_config)


def train_grpo(
    base_model: str,
    focus_train: pd.DataFrame,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    distributed_config: DistributedConfig,
) -> tuple[Any, dict[str, Any], dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """QLoRA + GRPO on the training questions: adapter, summary metrics, summary, history table,
    completions table (replacing the stored one whole: a resumed run's rows restored from its
    checkpoint come first).

    Each step's metrics reach MLflow while the run trains (``training_callbacks``); the
    trainer's resolved settings are logged as params (kedro-mlflow logs the ``training.*``
    parameters themselves). With ``distributed.num_processes`` > 1 the run is data-parallel on
    worker processes (DDP) and the node records rank 0's result; rank 0's worker logs each
    step's metrics live into this run (given by id), under the same names, and only it.
    """
    from hle_reasoning.modeling import training

    if distributed_config.enabled:
        result = workers.train_distributed(
            distributed_config,
            base_model,
            focus_train,
            model_config,
            training_config,
            live_run=tracking.active_run_ref(),
        )
    else:
        result = training.train_grpo(base_model, focus_train, model_config, training_config)
    tracking.log_params(result.params)
    summary = result.summary
    logger.info(
        "Trained %d steps in %.1f s (%.2f s/step); final reward %.3f; memory: eq. (6) %.3f GB, "
        "with the resident weights %.3f GB, measured %s",
        summary["steps"],
        summary["train_seconds"],
        summary["mean_step_time_s"] or float("nan"),
        summary.get("final_reward", float("nan")),
        summary["memory"]["eq6"]["total_gb"],
        summary["memory"]["resident_estimate"]["total_gb"],
        ", ".join(f"{k} {v:.3f}" for k, v in summary["memory"]["measured"].items()),
    )
    history = curves.history_frame(result.history)
    return (
        result.model,
        training.summary_metrics(summary),
        TrainingSummary(summary),
        history,
        result.completions,
    )


def plot_training_curves(training_history: pd.DataFrame, training_summary: dict[str, Any]) -> Any:
    """The per-step reward, loss, KL, completion length and learning rate, as one figure."""
    title = (
        f"GRPO on {training_summary['questions']} questions "
        f"({training_summary['image_questions']} with images): {training_summary['steps']} steps"
    )
    return curves.training_curves_figure(training_history, title)
