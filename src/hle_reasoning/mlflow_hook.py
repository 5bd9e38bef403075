"""kedro-mlflow's tracking hook as the project registers it: a node's parameters in one MLflow call.

kedro-mlflow logs each parameter of a node with its own ``mlflow.log_param``: one request, and
with the SQLite store one commit, per parameter (457 of them in a cached evaluation rerun,
about a second and a half on two cores). This subclass gathers the parameters of a node and logs
them with one ``mlflow.log_params`` (MLflow's ``log_batch``, which splits them into MLflow's own
batch limit), skipping those already logged with the same value in the same run. What is
logged is kedro-mlflow's choice as before: the same names (flattened and sanitised by its
``mlflow.yml`` settings), the same values, and the same ``long_params_strategy`` for a value
over MLflow's length limit. A parameter logged again with another value still fails as
MLflow makes it fail.

This module imports MLflow and kedro-mlflow; ``hle_reasoning.hooks.KedroMlflowHook`` imports it
when a session first calls a hook, so that importing the settings stays light.
"""

from __future__ import annotations

from typing import Any

import mlflow
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH


class BatchedParamsMlflowHook(MlflowHook):
    """kedro-mlflow's ``MlflowHook``, logging each node's parameters in one batch."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[str, Any] | None = None
        self._logged: dict[str, str] = {}  # name -> value already in the run ``_logged_run``
        self._logged_run: str | None = None

    def before_node_run(self, node: Any, catalog: Any, inputs: dict, is_async: bool) -> None:
        self._pending = {}
        try:
            super().before_node_run(node, catalog, inputs, is_async)
            pending = self._pending
        finally:
            self._pending = None
        if not pending:
            return
        run = mlflow.active_run()
        run_id = run.info.run_id if run is not None else None
        if run_id != self._logged_run:
            self._logged, self._logged_run = {}, run_id
        new = {k: v for k, v in pending.items() if self._logged.get(k) != str(v)}
        if new:
            mlflow.log_params(new)
            self._logged.update({k: str(v) for k, v in new.items()})

    def _log_param(self, name: str, value: Any) -> None:
        if self._pending is not None and len(str(value)) <= MAX_PARAM_VAL_LENGTH:
            self._pending[name] = value
            return None
        return super()._log_param(name, value)
