"""Nodes of the training pipeline: thin adapters from config to hle_reasoning.modeling."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import pandas as pd

from hle_reasoning.modeling import models, training
from hle_reasoning.modeling.models import BuiltModel

logger = logging.getLogger(__name__)


def prepare_base_model(model: dict[str, Any], training_params: dict[str, Any]) -> BuiltModel | str:
    """Check the training configuration, then build the tiny base model or check access to it.

    The check comes first, so a bad configuration fails before any model is built or loaded.
    """
    training.check_config(training_params, model)
    return models.prepare_base_model(model)


def train_grpo(
    base_model: str,
    focus_train: pd.DataFrame,
    model: dict[str, Any],
    training_params: dict[str, Any],
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """QLoRA + GRPO on the training questions: the adapter, the metric histories, a summary."""
    result = training.train_grpo(base_model, focus_train, model, training_params)
    if mlflow.active_run() is not None:
        # The trainer's resolved settings; kedro-mlflow logs the `training.*` parameters themselves.
        mlflow.log_params(result.params)
    summary = result.summary
    logger.info(
        "Trained %d steps in %.1f s (%.2f s/step); final reward %.3f; memory: eq. (6) %.3f GB, "
        "measured %s",
        summary["steps"],
        summary["train_seconds"],
        summary["mean_step_time_s"] or float("nan"),
        summary.get("final_reward", float("nan")),
        summary["memory"]["eq6"]["total_gb"],
        ", ".join(f"{k} {v:.3f}" for k, v in summary["memory"]["measured"].items()),
    )
    return result.model, {**result.history, **training.summary_metrics(summary)}, summary
