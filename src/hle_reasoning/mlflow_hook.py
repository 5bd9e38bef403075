"""kedro-mlflow's tracking hook as the project registers it: a node's parameters in one MLflow call.

Before each node kedro-mlflow's ``MlflowHook`` reopens the pipeline's run (for threaded runners,
where each thread has its own active run; with ``nested: true`` in ``mlflow.yml`` each reopening
stacks another copy of the run) and logs each parameter of the node with its own
``mlflow.log_param``: one request, and with the SQLite store one commit, per parameter (457 of
them in a cached evaluation rerun, about a second and a half on two cores). This subclass
reopens the run only in a thread where it is not the active run already, and logs a node's
parameters with one ``mlflow.log_params`` (MLflow's ``log_batch``, which splits them into MLflow's
own batch limit), leaving out those already logged with the same value in the same run. What is
logged is kedro-mlflow's choice as before: the same parameters (``params:`` inputs and
``parameters``; a block Kedro built as a pydantic model is logged as its mapping, each key its
own parameter, where kedro-mlflow would log its repr as one string), flattened and sanitised by its ``mlflow.yml`` settings, the same values, and its
``long_params_strategy`` for a value over MLflow's length limit. A parameter logged again with
another value still fails as MLflow makes it fail.

Only kedro-mlflow's public surface is used: the ``MlflowHook`` class, its hook method
``before_node_run``, and the attributes it sets from ``mlflow.yml`` (``run_id``, ``flatten``,
``recursive``, ``sep``, ``long_params_strategy``, ``mlflow_config``, ``sanitize_param_name``).
Flattening and the long-value strategy are the few lines below, as kedro-mlflow documents them.

This module imports MLflow and kedro-mlflow; ``hle_reasoning.hooks.KedroMlflowHook`` imports it
when a session first calls a hook, so that importing the settings stays light.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import mlflow
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from pydantic import BaseModel

logger = logging.getLogger(__name__)


def flatten(params: dict, recursive: bool = True, sep: str = ".") -> dict:
    """kedro-mlflow's ``dict_params.flatten``: nested keys joined by ``sep`` (one level unless
    ``recursive``)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            inner = flatten(value, recursive, sep) if recursive else value
            out.update({f"{key}{sep}{k}": v for k, v in inner.items()})
        else:
            out[key] = value
    return out


def as_written(value: Any) -> Any:
    """A parameter as the YAML writes it: a block Kedro built for a node (a pydantic model) as
    its mapping of plain values (lists, not tuples), so that every key is still its own MLflow
    parameter (kedro-mlflow would log the model's repr as one string); other values as given."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: as_written(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [as_written(v) for v in value]
    return value


class BatchedParamsMlflowHook(MlflowHook):
    """kedro-mlflow's ``MlflowHook``, logging each node's parameters in one batch."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._logged: dict[str, dict[str, str]] = {}  # run id -> parameter -> value logged

    def before_node_run(self, node: Any, catalog: Any, inputs: dict, is_async: bool) -> None:
        # kedro-mlflow starts no run for a pipeline whose tracking mlflow.yml disables: run_id
        # stays None (its own comment in MlflowHook.before_node_run).
        if self.run_id is None:
            return
        active = mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:
            mlflow.start_run(run_id=self.run_id, nested=self.mlflow_config.tracking.run.nested)
        params = {
            (name[len("params:") :] if name.startswith("params:") else name): as_written(value)
            for name, value in inputs.items()
            if name.startswith("params:") or name == "parameters"
        }
        if self.flatten:
            params = flatten(params, recursive=self.recursive, sep=self.sep)
        params = {self.sanitize_param_name(k): v for k, v in params.items()}
        batch = {}
        for name, value in params.items():
            if len(str(value)) <= MAX_PARAM_VAL_LENGTH:
                batch[name] = value
            else:
                self._log_long_param(name, value)
        run_id = mlflow.active_run().info.run_id
        with self._lock:
            logged = self._logged.setdefault(run_id, {})
            new = {k: v for k, v in batch.items() if logged.get(k) != str(v)}
        if new:
            mlflow.log_params(new)
            with self._lock:
                logged.update({k: str(v) for k, v in new.items()})

    def _log_long_param(self, name: str, value: Any) -> None:
        """A value over MLflow's length limit, by mlflow.yml's ``long_params_strategy``."""
        text = str(value)
        if self.long_params_strategy == "tag":
            logger.warning("Parameter '%s' (value length %d) is set as a tag.", name, len(text))
            mlflow.set_tag(name, value)
        elif self.long_params_strategy == "truncate":
            logger.warning(
                "Parameter '%s' (value length %d) is truncated to its %d first characters.",
                name,
                len(text),
                MAX_PARAM_VAL_LENGTH,
            )
            mlflow.log_param(name, text[:MAX_PARAM_VAL_LENGTH])
        else:  # fail, kedro-mlflow's default
            raise ValueError(
                f"Parameter '{name}' length is {len(text)}, while mlflow forces it to be lower "
                f"than '{MAX_PARAM_VAL_LENGTH}'. If you want to bypass it, try to change "
                "'long_params_strategy' to 'tag' or 'truncate' in the 'mlflow.yml'configuration file."
            )
