"""What a GRPO run reports while it runs: the progress bar, live MLflow metrics, the history.

TRL logs a dict per optimizer step (``loss``, ``reward``, ``rewards/cosine/mean``, ``kl``, ...);
``step_metrics`` renames one to the project's metric names (MLflow: ``training.<name>``), used
alike by the live MLflow callback and by ``metrics_history`` (the CSV table and the curves), so
one step has one name everywhere.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from hle_reasoning import tracking

logger = logging.getLogger(__name__)

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

    Live metrics never stop training, nor hold it long: they are written by one background
    thread, each step waiting ``WAIT_S`` at most for its point, and a point MLflow refuses (``mlflow.db`` locked by another process for longer than MLflow's 20 s
    busy timeout, a server gone) is tried again once, then dropped with one warning; the
    training history (``training_history``) keeps every step. ``on_train_end`` waits for the
    points still being written.
    """

    # Tries of one point while MLflow accepts points; after a drop, one try until one succeeds.
    ATTEMPTS = 2
    RETRY_DELAY_S = 1.0
    # How long a step waits for its point (none while MLflow refuses them): normally the point is
    # in MLflow before the next step starts; a locked database holds training this long at most.
    WAIT_S = 5.0

    def __init__(self, prefix: str = METRIC_PREFIX, run: tracking.RunRef | None = None) -> None:
        self.prefix = prefix
        self._run = run
        self._logged = 0  # entries of state.log_history already logged
        self._writer: ThreadPoolExecutor | None = None
        self._last: futures.Future | None = None  # the latest point handed to the writer
        self._failing = False
        self.dropped: list[int] = []  # steps whose live point MLflow refused

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self._run is None:
            self._run = tracking.active_run_ref()  # the writer thread has no active run
        for entry in state.log_history[self._logged :]:
            metrics = step_metrics(entry)
            if metrics and self._run is not None:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="live-metrics")
                named = {f"{self.prefix}.{k}": v for k, v in metrics.items()}
                # Normally the step is in MLflow before the next one starts; behind a point still
                # waiting for MLflow, or while MLflow refuses points, training does not wait.
                keeping_up = self._last is None or self._last.done()
                self._last = self._writer.submit(self._write, named, int(entry["step"]))
                if keeping_up and not self._failing:
                    futures.wait([self._last], timeout=self.WAIT_S)
        self._logged = len(state.log_history)

    def _write(self, metrics: dict[str, float], step: int) -> None:
        attempts = 1 if self._failing else self.ATTEMPTS
        for attempt in range(attempts):
            try:
                self._run.log_metrics(metrics, step=step)
                self._failing = False
                return
            except Exception as error:  # live metrics never stop training
                if attempt + 1 < attempts:
                    time.sleep(self.RETRY_DELAY_S)
                    continue
                self._failing = True
                self.dropped.append(step)
                if len(self.dropped) == 1:
                    logger.warning(
                        "MLflow refused the live metrics of step %d (%s); training goes on, and "
                        "the training history (training_history.csv, and the run's artifact) "
                        "still has every step",
                        step,
                        str(error).splitlines()[0] if str(error) else type(error).__name__,
                    )

    def on_train_end(self, args, state, control, **kwargs):
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if len(self.dropped) > 1:
            logger.warning(
                "%d steps' live metrics could not be logged to MLflow (steps %s); the "
                "training history has them",
                len(self.dropped),
                ", ".join(map(str, self.dropped[:10])),
            )


class GRPOProgressCallback(ProgressCallback):
    """A labelled tqdm bar of optimizer steps showing the step's reward, loss and KL.

    TRL logs a step after the bar has moved to it, so the figures are shown at once (the bar
    would otherwise show the previous step's until it next moves); the closing summary log,
    which has no reward, leaves the last step's figures on the bar.
    """

    DESCRIPTION = "GRPO training"

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.DESCRIPTION, refresh=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "reward" in logs:
            shown = {k: f"{logs[k]:.3g}" for k in ("reward", "loss", "kl") if k in logs}
            self.training_bar.set_postfix(shown, refresh=True)
