"""One whole `kedro run` of the default pipeline in this process: Kedro validates every parameter
block once, the nodes receive the blocks (pydantic models), and MLflow still records every key of
the parameters as its own MLflow parameter. The run is
cut short (one GRPO step, 16-token answers), as `kedro run --params` would: what is parsed, passed
and logged does not depend on how long the nodes work."""

from __future__ import annotations

import collections
import os
import sqlite3

import pandas as pd
import pytest
from pydantic import BaseModel

from hle_reasoning.config import BLOCKS
from hle_reasoning.config.evaluation import AnsweringConfig
from hle_reasoning.config.parsing import Block
from tests.conftest import make_project_copy

pytestmark = pytest.mark.slow


def test_a_default_run_parses_each_block_once_and_mlflow_logs_the_raw_parameters(
    tmp_path, monkeypatch
):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = make_project_copy(tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    parses: collections.Counter[str] = collections.Counter()
    received: dict[str, object] = {}

    def counting(cls, data, **kwargs):
        parses[cls.PATH] += 1  # every validation of a block from its mapping, by its key path
        return BaseModel.model_validate.__func__(cls, data, **kwargs)

    # Kedro builds a typed parameter with `model_validate`; a block nested in another is
    # validated with it (no call of its own).
    monkeypatch.setattr(Block, "model_validate", classmethod(counting))
    import mlflow

    previous_uri = mlflow.get_tracking_uri()
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    bootstrap_project(project)
    # The default pipeline, every block, shortened: one training step and short answers.
    short = {"training": {"max_steps": 1}, "evaluation": {"generation": {"max_new_tokens": 16}}}
    with KedroSession.create(project_path=project, runtime_params=short) as session:
        hooks = session._hook_manager

        class Received:
            from kedro.framework.hooks import hook_impl

            @hook_impl
            def after_node_run(self, node, catalog, inputs, outputs):
                for name, value in inputs.items():
                    if name.startswith("params:"):
                        received[name] = value

        hooks.register(Received())
        try:
            session.run()
            # kedro-mlflow reopens its run before every node; the project takes the copies off
            # MLflow's stack once the run has ended (a notebook's next run gets a run of its own).
            left_active = mlflow.active_run()
        finally:
            from mlflow.tracking import fluent

            # The in-process session leaves its tracking URI and experiment set in this process;
            # later in-process tests would log into them.
            while mlflow.active_run() is not None:
                mlflow.end_run()
            fluent._active_experiment_id = None
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
            mlflow.set_tracking_uri(previous_uri)

    assert left_active is None, f"run {left_active.info.run_id} still active after the session"
    with sqlite3.connect(project / "mlflow.db") as db:
        statuses = pd.read_sql("select name, status from runs", db)
    assert set(statuses["status"]) == {"FINISHED"}, statuses

    tops = {path for path in parses if "." not in path}
    assert tops == set(BLOCKS)  # the default study reads every block
    twice = {path: n for path, n in parses.items() if n != 1}
    assert not twice, f"parsed more than once in one run: {twice}"
    # The nodes got the parsed blocks (or their fields), never the raw mappings.
    assert type(received["params:evaluation"]).__name__ == "EvaluationConfig"
    assert type(received["params:evaluation"].judge).__name__ == "JudgeConfig"
    assert type(received["params:training"]).__name__ == "TrainingConfig"
    assert type(received["params:distributed"]).__name__ == "DistributedConfig"
    assert type(received["params:data_processing"]).__name__ == "DataProcessingConfig"
    assert type(received["params:data_processing.focus_categories"]) is tuple
    # A mapping a node receives is one of parsed blocks (evaluation.answering: one per variant).
    raw = [
        name
        for name, value in received.items()
        if isinstance(value, dict) and not all(isinstance(v, Block) for v in value.values())
    ]
    assert not raw, f"raw mappings handed to nodes: {raw}"
    assert all(
        isinstance(v, AnsweringConfig) for v in received["params:evaluation"].answering.values()
    )

    # kedro-mlflow logged the parameters as the YAML holds them (a list stays a list).
    with sqlite3.connect(project / "mlflow.db") as db:
        params = pd.read_sql("select key, value from params", db)
    logged = dict(zip(params["key"], params["value"], strict=False))
    assert logged["data_processing.focus_categories"] == "['Math']"
    assert logged["model.tiny.text.cross_attention_layers"] == "[1]"
    assert logged["training.grpo.beta"] == "0.1"
    assert logged["evaluation.judge.rules.rel_tol"] == "0.0001"
    assert logged["distributed.num_processes"] == "1"
