"""What a GRPO run reports while it runs: the progress bar, live MLflow metrics, the history.

TRL logs a dict per optimizer step (``loss``, ``reward``, ``rewards/cosine/mean``, ``kl``, ...);
``step_metrics`` renames one to the project's metric names (MLflow: ``training.<name>``), used
alike by the live MLflow callback and by ``metrics_history`` (the CSV table and the curves), so
one step has one name everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from hle_reasoning import tracking

# The MLflow prefix of training metrics (also the catalog's `training_metrics` prefix).
METRIC_PREFIX = "training"

# TRL's log keys -> this project's metric names.
HISTORY_KEYS = {
    "loss": "loss",
    "reward": "reward",
    "reward_std": "reward_std",
    "kl": "kl",
    "completions/mean_length": "completion_length",
    "learning_rate": "learning_rate",
    "entropy": "entropy",
    "grad_norm": "grad_norm",
    "step_time": "step_time",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "completions/clipped_ratio": "completion_clipped_ratio",
    "clip_ratio/region_mean": "clip_ratio",
}
_PER_REWARD = re.compile(r"^rewards/(?P<name>[^/]+)/(?P<stat>mean|std)$")


def step_metrics(entry: Mapping[str, Any]) -> dict[str, float]:
    """One of TRL's per-step logs under the project's names ({} for the closing summary)."""
    if entry.get("step") is None or "train_runtime" in entry:
        return {}
    out = {}
    for key, value in entry.items():
        name = HISTORY_KEYS.get(key)
        if name is None and (match := _PER_REWARD.match(key)):
            stat = "reward" if match["stat"] == "mean" else "reward_std"
            name = f"{stat}.{match['name']}"
        if name is not None and isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def metrics_history(log_history: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """TRL's per-step logs as ``{metric: [{"step", "value"}, ...]}`` (steps without a value,
    which TRL logs as NaN, are left out of the table)."""
    history: dict[str, list[dict[str, float]]] = {}
    for entry in log_history:
        for name, value in step_metrics(entry).items():
            if not math.isnan(value):
                history.setdefault(name, []).append({"step": int(entry["step"]), "value": value})
    return history


class LiveMetricsCallback(TrainerCallback):
    """Each optimizer step's metrics into the active MLflow run as the step ends.

    The run is the one kedro-mlflow opened for the ``kedro run``: the active run, or ``run``
    (a distributed worker has none: rank 0 is given the parent's run by id). Only the world's
    process 0 logs. Steps are TRL's global steps, so a resumed run continues the numbering, and
    the steps restored from the checkpoint are logged first so that the run shows the whole curve.
    """

    def __init__(self, prefix: str = METRIC_PREFIX, run: tracking.RunRef | None = None) -> None:
        self.prefix = prefix
        self._log = run.log_metrics if run is not None else tracking.log_metrics
        self._logged = 0  # entries of state.log_history already logged

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        for entry in state.log_history[self._logged :]:
            metrics = step_metrics(entry)
            if metrics:
                self._log(
                    {f"{self.prefix}.{k}": v for k, v in metrics.items()}, step=int(entry["step"])
                )
        self._logged = len(state.log_history)


class GRPOProgressCallback(ProgressCallback):
    """A tqdm bar of optimizer steps showing reward, loss and KL, not a dict per step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs:
            shown = {k: f"{logs[k]:.3g}" for k in ("reward", "loss", "kl") if k in logs}
            self.training_bar.set_postfix(shown, refresh=False)
