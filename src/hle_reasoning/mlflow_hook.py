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
``parameters``), flattened and sanitised by its ``mlflow.yml`` settings, the same values, and its
``long_params_strategy`` for a value over MLflow's length limit. A parameter logged again with
another value still fails as MLflow makes it fail.

This module imports MLflow and kedro-mlflow; ``hle_reasoning.hooks.KedroMlflowHook`` imports it
when a session first calls a hook, so that importing the settings stays light.
"""

from __future__ import annotations

import threading
from typing import Any

import mlflow
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from kedro_mlflow.framework.hooks.utils import _flatten_dict
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH


class BatchedParamsMlflowHook(MlflowHook):
    """kedro-mlflow's ``MlflowHook``, logging each node's parameters in one batch."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._logged: dict[str, dict[str, str]] = {}  # run id -> parameter -> value logged

    def before_node_run(self, node: Any, catalog: Any, inputs: dict, is_async: bool) -> None:
        active = mlflow.active_run()
        if self.run_id is not None and (active is None or active.info.run_id != self.run_id):
            mlflow.start_run(run_id=self.run_id, nested=self.mlflow_config.tracking.run.nested)
        if not self._is_mlflow_enabled:
            return
        params = {
            (name[len("params:") :] if name.startswith("params:") else name): value
            for name, value in inputs.items()
            if name.startswith("params:") or name == "parameters"
        }
        if self.flatten:
            params = _flatten_dict(d=params, recursive=self.recursive, sep=self.sep)
        params = {self.sanitize_param_name(k): v for k, v in params.items()}
        batch = {}
        for name, value in params.items():
            if len(str(value)) <= MAX_PARAM_VAL_LENGTH:
                batch[name] = value
            else:  # kedro-mlflow's long_params_strategy: fail, tag or truncate
                self._log_param(name, value)
        current = mlflow.active_run()  # None: log_params starts a run, as log_param would
        run_id = current.info.run_id if current is not None else ""
        with self._lock:
            logged = self._logged.setdefault(run_id, {})
            new = {k: v for k, v in batch.items() if logged.get(k) != str(v)}
        if new:
            mlflow.log_params(new)
            with self._lock:
                logged.update({k: str(v) for k, v in new.items()})
