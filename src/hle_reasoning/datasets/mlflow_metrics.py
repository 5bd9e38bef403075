"""kedro-mlflow's metrics dataset, saving all of a node's metrics in one MLflow call.

kedro-mlflow's ``MlflowMetricsHistoryDataset`` logs each value with its own ``log_metric``: one
request, and with the SQLite store one commit, per value. This namesake logs the same metrics
(the same names, prefixes, values and steps) with one ``log_batch``, which MLflow splits into its
own batch limits. Use it exactly like kedro-mlflow's::

    hle_statistics_metrics:
      type: hle_reasoning.datasets.MlflowMetricsHistoryDataset
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset as _MlflowMetricsHistoryDataset
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis


class MlflowMetricsHistoryDataset(_MlflowMetricsHistoryDataset):
    """Saves a ``{name: value-or-history}`` dict into the run as one batch of metrics."""

    def _save(self, data: dict[str, Any]) -> None:
        run_id = self.run_id
        if run_id is None:  # no run to log into: kedro-mlflow's own path (it starts one)
            super()._save(data)
            return
        if not self._logging_activated:
            return
        now = get_current_time_millis()
        metrics = [
            Metric(key, float(value), now, int(step or 0))
            for key, value, step in chain.from_iterable(
                self._build_args_list_from_metric_item(k, v) for k, v in data.items()
            )
        ]
        if metrics:
            MlflowClient().log_batch(run_id, metrics=metrics)
