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
from collections.abc import Iterable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from hle_reasoning import tracking
from hle_reasoning.modeling import completions
from hle_reasoning.modeling.completions import CHECKPOINT_FILE, CUT, NO_SIGNAL

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
    # Added to each step's entry by CompletionsCallback, from every completion.
    NO_SIGNAL: NO_SIGNAL,
    CUT: CUT,
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


class CompletionsCallback(TrainerCallback):
    """The completions table and the learning-signal figures of a GRPO run
    (``hle_reasoning.modeling.completions``).

    ``recorder``: the reward functions' recorder (``recording``); ``weights``,
    ``num_generations``, ``scale_rewards``: the trainer's, to compute rewards and advantages as
    it does; ``end_token_ids``: the tokens that end a completion (TRL's ``eos_token_ids`` and the
    pad token; settable once the trainer exists); ``rows_per_step``: rows kept per step (None:
    all); ``warn_share`` / ``warn_after_steps``: the no-signal warning's threshold;
    ``restore_from``: the checkpoint a resumed run starts from; ``run``: the MLflow run to log
    the table into (default: the active run); ``max_completion_length``: the limit the warning
    names.
    """

    def __init__(
        self,
        recorder: completions.CompletionRecorder,
        *,
        weights: Sequence[float],
        num_generations: int,
        scale_rewards: str,
        end_token_ids: Sequence[int] = (),
        rows_per_step: int | None = None,
        warn_share: float = 0.5,
        warn_after_steps: int = 2,
        restore_from: str | Path | None = None,
        run: tracking.RunRef | None = None,
        max_completion_length: int | None = None,
    ) -> None:
        self.recorder = recorder
        self.weights = list(weights)
        self.num_generations = num_generations
        self.scale_rewards = scale_rewards
        self.end_token_ids = [int(t) for t in end_token_ids if t is not None]
        self.rows_per_step = rows_per_step
        self.warn_share = warn_share
        self.warn_after_steps = warn_after_steps
        self.max_completion_length = max_completion_length
        self._run = run
        self.rows: list[dict[str, Any]] = []
        self._logged = 0  # rows already in the MLflow table
        self._table_failed = False
        self._writer: ThreadPoolExecutor | None = None
        self._pending: futures.Future | None = None
        self.warned = False
        self._signal_free: list[dict[str, Any]] = []  # the rows of signal-free steps (rank 0)
        if restore_from is not None:
            self._restore(Path(restore_from))

    # ------------------------------------------------------------------ resuming
    def _restore(self, checkpoint: Path) -> None:
        path = checkpoint / CHECKPOINT_FILE
        step = int(checkpoint.name.rsplit("-", 1)[-1]) if "-" in checkpoint.name else None
        if not path.is_file():
            logger.warning(
                "%s has no %s: the completions table of this run starts after step %s",
                checkpoint,
                CHECKPOINT_FILE,
                step,
            )
            return
        rows = completions.read_rows(path)
        self.rows = [r for r in rows if step is None or int(r["step"]) <= step]

    # ------------------------------------------------------------------ hooks
    def on_log(self, args, state, control, logs=None, **kwargs):
        calls = self.recorder.take()
        calls = _gathered(calls)  # every rank reaches this collective once per log
        if not calls or logs is None or "train_runtime" in logs:
            return
        rows = completions.score_rows(
            calls,
            reward_names=self.recorder.reward_names,
            weights=self.weights,
            num_generations=self.num_generations,
            scale_rewards=self.scale_rewards,
            end_token_ids=self.end_token_ids,
            step=int(state.global_step),
        )
        figures = completions.step_figures(rows)
        entry = state.log_history[-1] if state.log_history else None
        if entry is not None and entry.get("step") == state.global_step:
            entry.update(figures)  # the live metrics, the history and the checkpoints read it
        if not state.is_world_process_zero:
            return
        kept = rows if self.rows_per_step is None else rows[: self.rows_per_step]
        self.rows.extend(kept)
        if figures.get(NO_SIGNAL) == 1.0:
            self._signal_free.extend(rows)
        self._log_table()
        self._maybe_warn(state)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            completions.write_rows(folder / CHECKPOINT_FILE, self.rows)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._log_table(final=True)  # the rows a refused or slow write left behind
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    # ------------------------------------------------------------------ MLflow
    def _log_table(self, final: bool = False) -> None:
        """The rows not yet in the MLflow table, written by one background thread: a step
        waits ``LiveMetricsCallback.WAIT_S`` at most for its rows (not at all behind a write
        still running: its rows go with the next one), so a locked ``mlflow.db`` never holds
        training for long; the end of training waits for the last write."""
        pending = self._pending
        if pending is not None and not pending.done():
            if not final:
                return
            futures.wait([pending])
        if self._run is None:
            self._run = tracking.active_run_ref()  # the writer thread has no active run
        if self._run is None or self._logged >= len(self.rows):
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="completions-table")
        upto = len(self.rows)
        self._pending = self._writer.submit(self._write_table, self.rows[:upto], upto)
        futures.wait([self._pending], timeout=None if final else LiveMetricsCallback.WAIT_S)

    def _write_table(self, rows: list[dict[str, Any]], upto: int) -> None:
        """The table's first rows through ``mlflow.log_table`` (which marks the artifact as a
        table), then the whole table each time: MLflow's own append reads the table back
        first, three times slower."""
        try:
            frame = completions.table_frame(rows, self.recorder.reward_names)
            if self._logged == 0:
                self._run.log_table(frame, completions.ARTIFACT_FILE)
            else:
                self._run.replace_table(frame, completions.ARTIFACT_FILE)
        except Exception as error:  # the table never stops training; the node's output keeps it
            if not self._table_failed:
                logger.warning(
                    "MLflow refused the completions table (%s); training goes on, the rows are "
                    "tried again at the next step, and data/08_reporting/"
                    "training_completions.jsonl keeps every row",
                    str(error).splitlines()[0] if str(error) else type(error).__name__,
                )
            self._table_failed = True
            return
        self._table_failed = False
        self._logged = upto

    # ------------------------------------------------------------------ the warning
    def _maybe_warn(self, state) -> None:
        if self.warned:
            return
        steps = [e for e in state.log_history if NO_SIGNAL in e]
        free = sum(1 for e in steps if e[NO_SIGNAL] == 1.0)
        if len(steps) < self.warn_after_steps or free <= self.warn_share * len(steps):
            return
        self.warned = True
        logger.warning(
            "GRPO is learning nothing: %d of the %d steps so far had no signal (every prompt's "
            "completions got equal rewards, so every advantage is 0). %s",
            free,
            len(steps),
            self.cause(),
        )

    def cause(self) -> str:
        """The likely cause of the signal-free steps, and the parameter to change."""
        rows = self._signal_free
        causes = []
        limit = f" ({self.max_completion_length} tokens)" if self.max_completion_length else ""
        if rows and all(r["cut"] for r in rows):
            causes.append(
                f"Every completion was cut at the length limit{limit}: raise "
                "training.grpo.max_completion_length."
            )
        rewards = [r["reward"] for r in rows if not math.isnan(r["reward"])]
        if rewards and all(r == 0 for r in rewards):
            causes.append(
                "Every reward was 0 (no completion earned one): give a weight to a reward that "
                "varies (training.rewards.cosine), or raise training.grpo.max_completion_length "
                "so that completions can reach the answer format."
            )
        if not causes:
            causes.append(
                "The rewards did not vary within a prompt's completions: raise "
                "training.grpo.num_generations or training.grpo.temperature, or use a reward "
                "that varies (training.rewards)."
            )
        return " ".join(causes)

    # ------------------------------------------------------------------ the result
    def frame(self) -> Any:
        """Every kept row, as the table the training node saves."""
        return completions.table_frame(self.rows, self.recorder.reward_names)


def _gathered(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each reward call's rows gathered over the processes, in rank order (as TRL gathers)."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return calls
    world = torch.distributed.get_world_size()
    if world == 1:
        return calls
    every: list[Any] = [None] * world
    torch.distributed.all_gather_object(every, calls)
    return completions.merge_calls(every)
