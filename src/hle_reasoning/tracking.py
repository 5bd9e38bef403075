"""The one way the project writes to MLflow from code, and its one rule for undefined values.

Datasets in the catalog (kedro-mlflow's ``MlflowMetricsHistoryDataset`` and
``MlflowArtifactDataset``) log what the nodes return; what cannot travel as a node output (the
trainer's per-step metrics while it runs, its resolved settings, a variant's nested run) goes
through these functions. The rule, everywhere: **an undefined figure (None or NaN) is logged as
NaN**, so every run carries the same metric names. Nothing is logged without an active run.
Artifacts go through MLflow's own calls (``log_dict``, ``log_text``, ``log_figure``).
"""

from __future__ import annotations

import io
import json
import math
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# MLflow's limit on a parameter value.
MAX_PARAM_LENGTH = 6000
# The tag that says why a run that did not finish ended (an interrupt, or the error's first line).
ENDED_BY_TAG = "hle_reasoning.ended_by"
# MLflow's experiment tags that hold a saved runs-table view (columns, sorting); the UI opens one
# with ``?viewStateShareKey=<the rest of the tag's name>``.
SAVED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."


def metric_value(value: Any) -> float:
    """A figure as MLflow stores it: a float, NaN when undefined."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mlflow():
    """MLflow, imported on first use (the library runs without it, e.g. the GPU benchmark)."""
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow


def active() -> bool:
    mlflow = _mlflow()
    return mlflow is not None and mlflow.active_run() is not None


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """``metrics`` into the active run at ``step`` (undefined values as NaN)."""
    if metrics and active():
        _mlflow().log_metrics({k: metric_value(v) for k, v in metrics.items()}, step=step)


@dataclass(frozen=True)
class RunRef:
    """An MLflow run that another process logs into: its tracking URI and run id.

    A distributed training worker is a fresh interpreter with no active run; rank 0 logs each
    step's metrics into the parent's run through this (MLflow's client, by run id), without
    starting or ending the run, so its status stays the parent's to set.
    """

    tracking_uri: str
    run_id: str

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """``metrics`` into this run at ``step`` (undefined values as NaN)."""
        if not metrics:
            return
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        MlflowClient(tracking_uri=self.tracking_uri).log_batch(
            self.run_id,
            metrics=[Metric(k, metric_value(v), now, step or 0) for k, v in metrics.items()],
        )

    def log_table(self, data: Any, artifact_file: str) -> None:
        """``data`` (a DataFrame) appended to this run's MLflow table ``artifact_file`` (a
        ``.json`` the UI's artifact view shows as a table; created by the first call).

        MLflow appends by downloading the table so far, which would draw a progress bar on the
        console at every step: the bar is off for the call."""
        import os

        from mlflow import MlflowClient

        key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
        before = os.environ.get(key)
        os.environ[key] = "false"
        try:
            MlflowClient(tracking_uri=self.tracking_uri).log_table(self.run_id, data, artifact_file)
        finally:
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before

    def replace_table(self, data: Any, artifact_file: str) -> None:
        """This run's MLflow table ``artifact_file`` replaced by ``data``, written as
        ``log_table`` writes it (JSON, ``split`` orientation), without reading the old one
        back: for a table that ``log_table`` created (and marked as a table) and that grows."""
        import posixpath
        import tempfile
        from pathlib import Path

        from mlflow import MlflowClient

        folder, name = posixpath.split(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            data.to_json(path, orient="split", index=False, date_format="iso")
            MlflowClient(tracking_uri=self.tracking_uri).log_artifact(
                self.run_id, str(path), artifact_path=folder or None
            )


def active_run_ref() -> RunRef | None:
    """The active run as a :class:`RunRef` for another process (None without an active run)."""
    if not active():
        return None
    mlflow = _mlflow()
    return RunRef(mlflow.get_tracking_uri(), mlflow.active_run().info.run_id)


def log_params(params: Mapping[str, Any]) -> None:
    """``params`` into the active run as text (cut to MLflow's length limit)."""
    if params and active():
        _mlflow().log_params({k: str(v)[:MAX_PARAM_LENGTH] for k, v in params.items()})


def set_tags(tags: Mapping[str, Any]) -> None:
    """``tags`` on the active run, as text."""
    if tags and active():
        _mlflow().set_tags({k: str(v) for k, v in tags.items()})


def set_experiment_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """``tags`` on the active run's experiment (only those it lacks or holds with another value);
    the experiment's tags afterwards ({} without an active run)."""
    if not active():
        return {}
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    experiment_id = mlflow.active_run().info.experiment_id
    current = dict(client.get_experiment(experiment_id).tags)
    for key, value in tags.items():
        if current.get(key) != str(value):
            client.set_experiment_tag(experiment_id, key, str(value))
            current[key] = str(value)
    return current


def saved_view_key(experiment_tags: Mapping[str, str]) -> str | None:
    """The first saved runs-table view among ``experiment_tags`` (its ``viewStateShareKey``)."""
    keys = sorted(k for k in experiment_tags if k.startswith(SAVED_VIEW_TAG_PREFIX))
    return keys[0].removeprefix(SAVED_VIEW_TAG_PREFIX) if keys else None


def log_artifact(name: str, content: Any, artifact_path: str | None = None) -> None:
    """One artifact into the active run: a DataFrame (.csv), a dict or list (.json), text, or a
    matplotlib figure."""
    if not active():
        return
    mlflow = _mlflow()
    path = f"{artifact_path}/{name}" if artifact_path else name
    if hasattr(content, "to_csv"):
        mlflow.log_text(content.to_csv(index=False), path)
    elif isinstance(content, dict | list):
        # Through JSON once so that numpy numbers and timestamps serialise as log_dict needs.
        mlflow.log_dict(json.loads(json.dumps(content, default=str)), path)
    elif isinstance(content, str):
        mlflow.log_text(content, path)
    elif hasattr(content, "savefig"):
        _log_figure(mlflow, content, path)
    else:
        raise TypeError(f"cannot log artifact {name} of type {type(content).__name__}")


# How a figure is saved, here and in the catalog's report files (``save_args``): the same call,
# so that ``rendered`` renders it once for both.
FIGURE_SAVE_ARGS = {"dpi": 120, "bbox_inches": "tight"}
# The last rendering of each figure, with its savefig arguments, while the figure lives.
_RENDERED: weakref.WeakKeyDictionary[Any, tuple[str, bytes]] = weakref.WeakKeyDictionary()


def rendered(figure: Any, **savefig_args: Any) -> bytes:
    """``figure.savefig(buffer, **savefig_args)``'s bytes, rendered once per figure and arguments.

    A node's figure is saved twice, as a report file (``datasets.MatplotlibDataset``) and into
    its MLflow run (``log_artifact``); rendering is most of the cost of either (a third of a
    second for a reliability diagram on two cores), and both get the same bytes. A node returns
    its figures finished: nothing draws on them after they are saved.
    """
    key = repr(sorted(savefig_args.items()))
    cached = _RENDERED.get(figure)
    if cached is not None and cached[0] == key:
        return cached[1]
    buffer = io.BytesIO()
    figure.savefig(buffer, **savefig_args)
    image = buffer.getvalue()
    _RENDERED[figure] = (key, image)
    return image


def _log_figure(mlflow: Any, figure: Any, path: str) -> None:
    """``figure`` as the PNG ``path`` of the active run (what ``mlflow.log_figure`` logs)."""
    import tempfile
    from pathlib import Path, PurePosixPath

    image = rendered(figure, **FIGURE_SAVE_ARGS)
    where = PurePosixPath(path)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / where.name
        local.write_bytes(image)
        parent = str(where.parent)
        mlflow.log_artifact(str(local), None if parent == "." else parent)


def log_artifacts(artifacts: Mapping[str, Any], artifact_path: str | None = None) -> None:
    for name, content in artifacts.items():
        log_artifact(name, content, artifact_path)


def release_ended_runs() -> int:
    """Take off this process's stack of active runs every run the store already records as ended;
    how many were taken off.

    kedro-mlflow reopens the pipeline's run before each node (``nested`` in mlflow.yml, for
    threaded runners), so its one ``end_run`` at the end of the pipeline leaves copies of the
    finished run active in the process. In a notebook the next metric, and the next
    ``session.run()`` (kedro-mlflow adopts an active run and never closes it), would log into
    the finished run. A run still RUNNING in the store (one the user opened before the session)
    stays active.
    """
    import sys

    if "mlflow" not in sys.modules:  # nothing was ever started in this process
        return 0
    mlflow = sys.modules["mlflow"]
    released = 0
    while (run := mlflow.active_run()) is not None:
        try:
            status = mlflow.MlflowClient().get_run(run.info.run_id).info.status
        except Exception:
            break
        if status == "RUNNING":
            break
        mlflow.end_run(status)  # pops it; the store keeps the status it has
        released += 1
    return released


def end_active_runs(status: str, reason: str | None = None) -> list[str]:
    """End every active run (nested ones first) with ``status`` (KILLED, FAILED), ``reason`` as
    ``ENDED_BY_TAG``; the ids ended. A store that refuses the write leaves the
    rest as they are: the run's own error is the one to report."""
    mlflow = _mlflow()
    ended: list[str] = []
    while mlflow is not None and mlflow.active_run() is not None:
        run_id = mlflow.active_run().info.run_id
        try:
            if reason:
                mlflow.set_tag(ENDED_BY_TAG, reason[:MAX_PARAM_LENGTH])
            mlflow.end_run(status)
        except Exception:
            break
        ended.append(run_id)
    return ended
