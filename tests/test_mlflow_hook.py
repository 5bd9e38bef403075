"""The project's kedro-mlflow hook and metrics dataset log what kedro-mlflow's own log, in one MLflow
call per node (parameters) and per save (metrics), instead of one call (and one SQLite commit)
per value."""

from __future__ import annotations

import math

import pytest

from hle_reasoning.datasets import MlflowMetricsHistoryDataset
from hle_reasoning.hooks import KedroMlflowHook
from hle_reasoning.mlflow_hook import BatchedParamsMlflowHook

# A node's inputs as Kedro passes them: parameters (nested, as the project's blocks are), a
# long value (over MLflow's 6,000 characters) and a dataset that is no parameter.
INPUTS = {
    "params:evaluation": {
        "generation": {"max_new_tokens": 2048, "temperature": 0.0, "do_sample": False},
        "metrics": {"beta": 100, "p": "2"},
        "judge": {"backend": "rules", "model": None},
    },
    "params:seed": 42,
    "params:prompt": "x" * 7000,
    "test_questions": object(),
}


@pytest.fixture
def calls(monkeypatch):
    """How many times MLflow's client logged one parameter, one metric, or a batch."""
    from mlflow.tracking import MlflowClient

    counted = {"log_param": 0, "log_metric": 0, "log_batch": 0}
    for name in counted:
        original = getattr(MlflowClient, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            counted[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, name, counting)
    return counted


def _configured(hook):
    """The settings kedro-mlflow's ``after_context_created`` reads from conf/base/mlflow.yml."""
    hook.flatten, hook.recursive, hook.sep = True, True, "."
    hook.long_params_strategy = "tag"
    return hook


def _logged(mlflow, inputs, hook) -> tuple[dict, dict]:
    """Params and tags of a fresh run after ``hook.before_node_run(inputs)``."""
    with mlflow.start_run() as run:
        if isinstance(hook, BatchedParamsMlflowHook):  # as before_pipeline_run sets it for a
            hook.run_id = run.info.run_id  # tracked pipeline (kedro-mlflow's own hook would
            # then reopen the run, which needs the whole mlflow.yml config)
        hook.before_node_run(node=None, catalog=None, inputs=inputs, is_async=False)
    data = mlflow.MlflowClient().get_run(run.info.run_id).data
    tags = {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}
    return data.params, tags


def test_a_nodes_parameters_are_kedro_mlflows_logged_in_one_call(mlflow_store, calls):
    from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

    expected = _logged(mlflow_store, INPUTS, _configured(MlflowHook()))
    one_each = calls["log_param"]
    assert one_each == len(expected[0]) > 5  # kedro-mlflow: one call per parameter

    calls.update(log_param=0, log_batch=0)
    assert _logged(mlflow_store, INPUTS, _configured(BatchedParamsMlflowHook())) == expected
    assert calls["log_param"] == 0
    assert calls["log_batch"] == 1
    params, tags = expected
    assert params["evaluation.generation.max_new_tokens"] == "2048"
    assert params["evaluation.judge.model"] == "None"
    assert tags == {"prompt": "x" * 7000}  # long_params_strategy: tag, as kedro-mlflow does


def test_a_block_kedro_built_is_logged_key_by_key_as_its_yaml_would_be(mlflow_store):
    """kedro-mlflow logs a pydantic parameter as one string, its repr; here every key of the
    block is its own parameter, with the value the YAML mapping gives it."""
    from hle_reasoning.config import DataProcessingConfig, EvaluationConfig
    from tests.test_config import parameters

    raw = parameters()
    typed = {
        "params:evaluation": EvaluationConfig.model_validate(raw["evaluation"]),
        "params:data_processing": DataProcessingConfig.model_validate(raw["data_processing"]),
        "params:data_processing.focus_categories": ("Math",),  # a typed block's field
    }
    as_yaml = {
        "params:evaluation": raw["evaluation"],
        "params:data_processing": raw["data_processing"],
        "params:data_processing.focus_categories": ["Math"],
    }
    hook = _configured(BatchedParamsMlflowHook())
    logged, _ = _logged(mlflow_store, typed, hook)
    assert logged == _logged(mlflow_store, as_yaml, _configured(BatchedParamsMlflowHook()))[0]
    assert logged["evaluation.judge.rules.rel_tol"] == "0.0001"
    assert logged["data_processing.focus_categories"] == "['Math']"
    assert not any("Config(" in value for value in logged.values())  # no repr


def test_parameters_already_in_the_run_are_not_sent_again_and_a_changed_one_still_fails(
    mlflow_store, calls
):
    from mlflow.exceptions import MlflowException

    hook = _configured(BatchedParamsMlflowHook())
    with mlflow_store.start_run() as run:
        hook.run_id = run.info.run_id
        hook.before_node_run(node=None, catalog=None, inputs=INPUTS, is_async=False)
        hook.before_node_run(node=None, catalog=None, inputs=INPUTS, is_async=False)
        assert calls["log_batch"] == 1
        changed = {**INPUTS, "params:seed": 7}
        with pytest.raises(MlflowException, match="seed"):
            hook.before_node_run(node=None, catalog=None, inputs=changed, is_async=False)
    params = mlflow_store.MlflowClient().get_run(run.info.run_id).data.params
    assert params["seed"] == "42"
    # A new run gets every parameter again.
    with mlflow_store.start_run() as second:
        hook.run_id = second.info.run_id
        hook.before_node_run(node=None, catalog=None, inputs=INPUTS, is_async=False)
    again = mlflow_store.MlflowClient().get_run(second.info.run_id).data.params
    assert again == params


def test_a_pipeline_mlflow_yml_does_not_track_logs_no_parameter(mlflow_store, calls):
    """kedro-mlflow starts no run for a pipeline in ``disable_tracking.pipelines`` (its run_id
    stays None): the node's parameters go nowhere, not into a run of their own."""
    hook = _configured(BatchedParamsMlflowHook())
    assert hook.run_id is None
    hook.before_node_run(node=None, catalog=None, inputs=INPUTS, is_async=False)
    assert mlflow_store.active_run() is None
    assert calls["log_batch"] == calls["log_param"] == 0


def test_the_settings_hook_is_kedro_mlflows_and_imports_it_only_when_called():
    from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

    from hle_reasoning import settings

    registered = [h for h in settings.HOOKS if isinstance(h, KedroMlflowHook)]
    assert registered == [settings.HOOKS[-1]]  # last: called first, where a plugin's would be
    assert {"kedro-mlflow", "kedro_mlflow"} <= set(settings.DISABLE_HOOKS_FOR_PLUGINS)
    fresh = KedroMlflowHook()
    assert fresh._hook is None
    assert isinstance(fresh.hook, MlflowHook)

    # Every hook kedro-mlflow implements is delegated.
    def hooks(cls) -> set[str]:
        return {n for n in dir(cls) if hasattr(getattr(cls, n), "kedro_impl")}

    assert len(hooks(MlflowHook)) == 6
    assert hooks(KedroMlflowHook) == hooks(MlflowHook)


METRICS = {
    "accuracy": {"value": 12.5, "step": 0},
    "calibration_error": {"value": math.nan, "step": 0},
    "reward": [{"value": 0.1 * k, "step": k} for k in range(40)],
}


def _metric_rows(mlflow, run_id: str) -> list[tuple]:
    client = mlflow.MlflowClient()
    keys = client.get_run(run_id).data.metrics
    rows = []
    for key in keys:
        for m in client.get_metric_history(run_id, key):
            value = "nan" if math.isnan(m.value) else m.value
            rows.append((m.key, value, m.step))
    return sorted(rows)


def test_metrics_are_kedro_mlflows_logged_in_one_call(mlflow_store, calls):
    from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset as KedroMlflows

    runs = []
    for dataset_class in (KedroMlflows, MlflowMetricsHistoryDataset):
        with mlflow_store.start_run() as run:
            dataset_class(prefix="evaluation").save(METRICS)
        runs.append(run.info.run_id)
        if dataset_class is KedroMlflows:
            assert calls["log_metric"] == 42 and calls["log_batch"] == 0
            calls.update(log_metric=0)
    assert calls["log_metric"] == 0 and calls["log_batch"] == 1
    expected = _metric_rows(mlflow_store, runs[0])
    assert len(expected) == 42
    assert ("evaluation.reward", 3.9000000000000004, 39) in expected
    assert _metric_rows(mlflow_store, runs[1]) == expected
    # It reads back like kedro-mlflow's.
    loaded = MlflowMetricsHistoryDataset(prefix="evaluation", run_id=runs[1]).load()
    assert loaded["evaluation.accuracy"] == {"step": 0, "value": 12.5}
    assert len(loaded["evaluation.reward"]) == 40


def test_the_run_is_reopened_only_in_a_thread_where_it_is_not_active(mlflow_store, monkeypatch):
    import threading
    from types import SimpleNamespace

    hook = _configured(BatchedParamsMlflowHook())
    hook.mlflow_config = SimpleNamespace(tracking=SimpleNamespace(run=SimpleNamespace(nested=True)))
    starts = []
    start_run = mlflow_store.start_run
    monkeypatch.setattr(mlflow_store, "start_run", lambda **k: starts.append(k) or start_run(**k))
    with start_run() as run:
        hook.run_id = run.info.run_id
        for _ in range(3):  # the sequential runner: the run is this thread's active run
            hook.before_node_run(node=None, catalog=None, inputs=INPUTS, is_async=False)
        assert starts == []

        seen = []

        def node_in_a_thread():  # the thread runner: each thread reopens it once
            hook.before_node_run(node=None, catalog=None, inputs=INPUTS, is_async=False)
            seen.append(mlflow_store.active_run().info.run_id)
            hook.before_node_run(node=None, catalog=None, inputs=INPUTS, is_async=False)
            mlflow_store.end_run()

        worker = threading.Thread(target=node_in_a_thread)
        worker.start()
        worker.join()
        assert seen == [run.info.run_id]
        assert starts == [{"run_id": run.info.run_id, "nested": True}]
    params = mlflow_store.MlflowClient().get_run(run.info.run_id).data.params
    assert params["seed"] == "42"
