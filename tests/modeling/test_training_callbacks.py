"""Live training metrics in MLflow: another process locking mlflow.db never stops training,
and holds it a few seconds at most."""

from __future__ import annotations

import sqlite3
import threading
import time

import mlflow
from transformers import TrainerControl, TrainerState, TrainingArguments

from hle_reasoning.modeling.training_callbacks import LiveMetricsCallback


def test_a_locked_mlflow_db_drops_the_live_point_with_one_warning(tmp_path, caplog):
    db = tmp_path / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    callback = LiveMetricsCallback()
    callback.ATTEMPTS = 1  # MLflow itself waits 20 s for the lock on each try
    state, control = TrainerState(), TrainerControl()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[])

    def step(n: int) -> float:
        state.global_step = n
        state.log_history.append({"loss": 1.0 / n, "reward": 0.1 * n, "step": n})
        started = time.monotonic()
        callback.on_log(args, state, control)
        return time.monotonic() - started

    with mlflow.start_run() as run:
        step(1)
        client, deadline = mlflow.MlflowClient(), time.monotonic() + 60
        while not client.get_metric_history(run.info.run_id, "training.loss"):
            assert time.monotonic() < deadline, "step 1 never reached MLflow"
            time.sleep(0.1)  # step 1 written before the lock
        # Another process (an `mlflow ui`, a second run) holds the database's write lock for
        # longer than MLflow waits.
        holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(22.0, holder.execute, ["COMMIT"])
        release.start()
        with caplog.at_level("WARNING", logger="hle_reasoning.modeling.training_callbacks"):
            assert step(2) < callback.WAIT_S + 1  # training waits briefly, then goes on
            assert step(3) < 1.0  # and not at all while MLflow refuses points
            release.join()
            step(4)
            callback.on_train_end(args, state, control)
        holder.close()
    losses = mlflow.MlflowClient().get_metric_history(run.info.run_id, "training.loss")
    assert callback.dropped == [2]
    assert [m.step for m in losses] == [1, 3, 4]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "refused the live metrics of step 2" in messages[0]
    assert "database is locked" in messages[0]
