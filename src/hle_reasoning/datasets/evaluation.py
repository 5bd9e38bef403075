"""Datasets of the evaluation pipeline: resumable JSON-lines stores, the judge endpoint, MLflow runs.

* ``JSONLinesStore``: records appended chunk by chunk (or a table replaced whole), so a killed
  run keeps every finished batch; ``stores.VariantStore`` keeps one per variant.
* ``JudgeEndpointDataset``: where the ``llm`` judge sends its requests; the API key comes from
  Kedro credentials or the environment and never appears in a repr, a log line or MLflow.
* ``MlflowChildRunDataset``: saving a payload of tags, params, metrics and artifacts creates a
  nested MLflow run under the ``kedro run``'s run, one per evaluated variant, so the MLflow UI
  compares variants on the same metric names.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from hle_reasoning.summaries import VariantRun

logger = logging.getLogger(__name__)


class JSONLinesStore(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A JSON-lines file that each save extends with a chunk of records (``mode: a``, the
    default), or replaces whole, atomically (``mode: w``: a table saved at once).

    :meth:`append` and :meth:`replace` do either whatever the mode (``VariantStore`` uses both).
    Loading returns every complete
    record (a line cut short by a kill is skipped with a warning) and an empty frame with
    ``columns`` when the file does not exist yet.

    YAML::

        training_completions:
          type: hle_reasoning.datasets.JSONLinesStore
          filepath: data/08_reporting/training_completions.jsonl
          columns: [step, id, completion]
          mode: w

    Python::

        store = JSONLinesStore(filepath="responses.jsonl")
        store.save(pd.DataFrame({"id": ["a"], "response": ["Answer: 4"]}))
        store.load()
    """

    def __init__(
        self,
        *,
        filepath: str,
        columns: list[str] | str | None = None,
        mode: str = "a",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ("a", "w"):
            raise DatasetError(
                f"JSONLinesStore {filepath} mode must be 'a' (append) or 'w' (replace), not {mode!r}"
            )
        self._filepath = Path(filepath)
        self._columns = column_list(columns)
        self._mode = mode
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        if not self._filepath.exists():
            return pd.DataFrame(columns=self._columns)
        records, broken = [], 0
        with self._filepath.open("rb") as handle:
            for raw in handle:
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                    record = None
                if isinstance(record, dict):
                    records.append(record)
                else:  # cut by a kill, or damaged: not a record of this store
                    broken += 1
        if broken:
            logger.warning(
                "%s: skipped %d incomplete or damaged line(s) (a run stopped while writing, "
                "or the file was changed); their questions are asked again",
                self._filepath,
                broken,
            )
        frame = pd.DataFrame.from_records(records)
        for column in self._columns:
            if column not in frame.columns:
                frame[column] = pd.Series(dtype=object)
        return frame

    def save(self, data: pd.DataFrame) -> None:
        if self._mode == "w":
            self.replace(data)
        else:
            self.append(data)

    def _lines(self, data: pd.DataFrame) -> str:
        if not isinstance(data, pd.DataFrame):
            raise DatasetError(
                f"JSONLinesStore {self._filepath} saves DataFrames (got {type(data).__name__})"
            )
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        return "".join(
            json.dumps(_jsonable(record), ensure_ascii=False) + "\n"
            for record in data.to_dict(orient="records")
        )

    def replace(self, data: pd.DataFrame) -> None:
        """The file holds ``data`` alone afterwards, or is left as it was (atomic rename)."""
        lines = self._lines(data)
        tmp = self._filepath.with_name(f".{self._filepath.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(lines, encoding="utf-8")
            os.replace(tmp, self._filepath)
        finally:
            tmp.unlink(missing_ok=True)

    def append(self, data: pd.DataFrame) -> None:
        """``data`` appended and flushed to disk (a kill loses at most the line being written)."""
        lines = self._lines(data)
        if not lines:
            self._filepath.touch()
            return
        with self._filepath.open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


def column_list(columns: list[str] | str | None) -> list[str]:
    """A column list, or the dotted name of the code's constant that holds it
    (``hle_reasoning.hle.judge.table.VERDICT_COLUMNS``), so the list has one home."""
    if not isinstance(columns, str):
        return list(columns or [])
    import importlib

    module, _, name = columns.rpartition(".")
    try:
        return list(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError, ValueError) as error:
        raise DatasetError(
            f"JSONLinesStore columns {columns!r} names no column list ({error}); give a list or "
            "the dotted name of a tuple of column names"
        ) from None


@dataclass(frozen=True)
class JSONLinesShards:
    """A folder of JSON-lines shards, one per distributed worker (``rank-00000.jsonl``, ...).

    Each worker appends its records to its own shard (:meth:`store`), so workers never write the
    same file and a killed worker keeps every finished batch; the parent reads them all
    (:meth:`load`) and, once they are merged into the main store, removes them (:meth:`clear`).
    Picklable: it travels to the workers as an argument.
    """

    path: str
    columns: tuple[str, ...] = ()

    def store(self, rank: int) -> JSONLinesStore:
        return JSONLinesStore(
            filepath=str(Path(self.path) / f"rank-{int(rank):05d}.jsonl"),
            columns=list(self.columns),
        )

    def files(self) -> list[Path]:
        folder = Path(self.path)
        return sorted(folder.glob("rank-*.jsonl")) if folder.is_dir() else []

    def load(self) -> pd.DataFrame:
        """Every complete record of every shard, shard by shard (an empty frame when none)."""
        frames = [
            JSONLinesStore(filepath=str(f), columns=list(self.columns)).load() for f in self.files()
        ]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=list(self.columns))
        return pd.concat(frames, ignore_index=True)

    def clear(self) -> None:
        for file in self.files():
            file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(self.path).rmdir()


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, raw in record.items():
        value = raw.item() if hasattr(raw, "item") else raw  # numpy scalars
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out


@dataclass(frozen=True)
class JudgeEndpoint:
    """An OpenAI-compatible endpoint for the ``llm`` judge. The key is kept out of its repr."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    api_key_source: str = "none"

    def __repr__(self) -> str:
        return (
            f"JudgeEndpoint(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key={'***' if self.api_key else None}, api_key_source={self.api_key_source!r})"
        )

    __str__ = __repr__


class JudgeEndpointDataset(AbstractDataset[None, JudgeEndpoint]):
    """Load-only: where the ``llm`` judge sends requests, and with which key.

    Each of ``base_url``, ``api_key`` and ``model`` comes from ``credentials`` (a Kedro
    credentials entry, e.g. in conf/local/credentials.yml) if it has it, else from the first
    set environment variable of ``env``. Loading never fails: the judge itself says what is
    missing when it is used.

    YAML::

        judge_endpoint:
          type: hle_reasoning.datasets.JudgeEndpointDataset
          credentials: hle_judge   # optional: {api_key: ..., base_url: ..., model: ...}
    """

    DEFAULT_ENV = {
        "api_key": ["HLE_JUDGE_API_KEY", "OPENAI_API_KEY"],
        "base_url": ["HLE_JUDGE_BASE_URL", "OPENAI_BASE_URL"],
        "model": ["HLE_JUDGE_MODEL"],
    }

    def __init__(
        self,
        *,
        credentials: dict[str, Any] | None = None,
        env: dict[str, list[str]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._credentials = dict(credentials or {})
        unknown = sorted(set(self._credentials) - set(self.DEFAULT_ENV))
        if unknown:
            raise DatasetError(
                f"judge credentials have unknown key(s) {unknown}; use api_key, base_url, model"
            )
        self._env = {**self.DEFAULT_ENV, **(env or {})}
        self.metadata = metadata

    def _lookup(self, name: str) -> tuple[str | None, str]:
        if self._credentials.get(name):
            return str(self._credentials[name]), "credentials"
        for variable in self._env.get(name, []):
            if os.environ.get(variable):
                return os.environ[variable], f"env {variable}"
        return None, "none"

    def load(self) -> JudgeEndpoint:
        api_key, source = self._lookup("api_key")
        return JudgeEndpoint(
            base_url=self._lookup("base_url")[0],
            api_key=api_key,
            model=self._lookup("model")[0],
            api_key_source=source,
        )

    def save(self, data: Any) -> None:
        raise DatasetError("JudgeEndpointDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        # Never the key, not even masked: Kedro may log this description.
        return {"credentials": sorted(self._credentials), "env": self._env}


class MlflowChildRunDataset(AbstractDataset[VariantRun | dict, None]):
    """Save-only: one nested MLflow run under the active (``kedro run``) run per save.

    The payload is a ``hle_reasoning.summaries.VariantRun`` (a list of them: one child run
    each, ``{variant}`` in ``run_name`` and ``tags`` standing for its variant) or a dict with any of ``tags``, ``params``, ``metrics`` (name -> number; an
    undefined one is logged as NaN, ``hle_reasoning.tracking``'s rule) and ``artifacts`` (file
    name -> DataFrame (.csv), dict or list (.json), str (text) or a matplotlib figure (.png)),
    all logged through ``hle_reasoning.tracking``. The child run gets ``run_name`` and ``tags`` and inherits the parent's git tags.
    Without an active run (tracking disabled, or a plain ``SequentialRunner``) it logs nothing.

    YAML::

        evaluation_runs:
          type: hle_reasoning.datasets.MlflowChildRunDataset
          run_name: "evaluation.{variant}"
          tags: {variant: "{variant}"}
          leading_metrics: [accuracy]

    ``leading_metrics`` are logged first, the rest in the payload's order: MLflow keeps the
    order, and its compare view plots the first metric the compared runs share.
    """

    INHERITED_TAGS = ("mlflow.source.git.commit", "git_commit", "git_dirty")

    def __init__(
        self,
        *,
        run_name: str,
        tags: dict[str, str] | None = None,
        artifact_path: str | None = None,
        leading_metrics: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._run_name = run_name
        self._leading_metrics = list(leading_metrics or [])
        self._tags = dict(tags or {})
        self._artifact_path = artifact_path
        self.metadata = metadata
        self.last_run_id: str | None = None

    def load(self) -> None:
        raise DatasetError(
            f"MlflowChildRunDataset {self._run_name!r} is save-only; read runs with the MLflow API."
        )

    def save(self, data: VariantRun | dict[str, Any] | list[VariantRun]) -> None:
        if isinstance(data, list | tuple):
            for run in data:
                self._save_one(run)
        else:
            self._save_one(data)

    def _save_one(self, data: VariantRun | dict[str, Any]) -> None:
        import mlflow

        from hle_reasoning import tracking

        run_name, own_tags = self._run_name, dict(self._tags)
        if isinstance(data, VariantRun):
            # A run per variant: ``{variant}`` in run_name and tags is its name.
            run_name = run_name.replace("{variant}", data.variant)
            own_tags = {k: str(v).replace("{variant}", data.variant) for k, v in own_tags.items()}
            data = {
                "tags": data.tags,
                "params": data.params,
                "metrics": data.metrics,
                "artifacts": data.artifacts,
            }
        parent = mlflow.active_run()
        if parent is None:
            logger.info("No active MLflow run: the %r child run is not logged", run_name)
            return
        client = mlflow.tracking.MlflowClient()
        parent_tags = client.get_run(parent.info.run_id).data.tags
        tags = {k: parent_tags[k] for k in self.INHERITED_TAGS if k in parent_tags}
        tags.update(own_tags)
        tags.update({k: str(v) for k, v in (data.get("tags") or {}).items()})
        with mlflow.start_run(run_name=run_name, nested=True, tags=tags) as run:
            tracking.log_params(data.get("params") or {})
            tracking.log_metrics(leading_first(data.get("metrics") or {}, self._leading_metrics))
            tracking.log_artifacts(data.get("artifacts") or {}, self._artifact_path)
            self.last_run_id = run.info.run_id
        logger.info(
            "Logged MLflow child run %r (%s) under %s",
            run_name,
            self.last_run_id,
            parent.info.run_id,
        )

    def _describe(self) -> dict[str, Any]:
        return {"run_name": self._run_name, "tags": self._tags}


def leading_first(metrics: dict[str, Any], leading: list[str]) -> dict[str, Any]:
    """``metrics`` with the names in ``leading`` first (those it holds), in that order."""
    first = {name: metrics[name] for name in leading if name in metrics}
    return first | {k: v for k, v in metrics.items() if k not in first}
