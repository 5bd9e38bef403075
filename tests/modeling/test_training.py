"""Training runs: config checks before any load, checkpoints, resume after a SIGKILL, histories."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hle_reasoning.config import ModelConfig, TrainingConfig, parse
from hle_reasoning.modeling import completions, training_data
from hle_reasoning.modeling.training import (
    TrainingConfigError,
    config_problems,
    latest_checkpoint,
    metrics_history,
    resolve_resume,
    train_grpo,
)


def with_changes(params: dict, **changes) -> dict:
    """A copy of ``params`` with dotted keys changed: with_changes(p, **{"grpo.beta": 0})."""
    params = copy.deepcopy(params)
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        section = params
        for part in path:
            section = section[part]
        section[key] = value
    return params


def every_problem(training_params: dict, model_params: dict) -> list[str]:
    """The two blocks' problems as the preflight finds them: the parse's, then the run's."""
    training_config, problems = parse(TrainingConfig, training_params, "training")
    model_config, found = parse(ModelConfig, model_params, "model")
    problems += found
    if training_config is not None and model_config is not None:
        problems += config_problems(training_config, model_config)
    return problems


def test_the_default_configuration_is_valid(training_params, model_params):
    assert every_problem(training_params, model_params) == []


def test_one_generation_is_rejected_with_what_to_change(training_params, model_params):
    bad = with_changes(training_params, **{"grpo.num_generations": 1})
    with pytest.raises(TrainingConfigError, match="num_generations is 1.*at least 2"):
        TrainingConfig.from_params(bad)


def test_a_batch_the_generations_do_not_divide_is_rejected(training_params, model_params):
    bad = with_changes(
        training_params, **{"grpo.batch_size_unit": "completions", "grpo.batch_size": 3}
    )
    (problem,) = every_problem(bad, model_params)
    assert "batch_size 3 (completions) gives 3 completions per step" in problem
    assert "num_generations 2 does not divide" in problem
    # Counted in prompts, any batch size works: 3 prompts x 2 = 6 completions.
    good = with_changes(bad, **{"grpo.batch_size_unit": "prompts"})
    assert every_problem(good, model_params) == []


def test_a_gated_hub_model_without_a_token_is_rejected(training_params, model_params, fake_hub):
    fake_hub.go_online({"meta-llama/Llama-3.2-11B-Vision-Instruct": "manual"})
    hub = dict(model_params, name_or_path="meta-llama/Llama-3.2-11B-Vision-Instruct")
    (problem,) = every_problem(training_params, hub)
    assert "HF_TOKEN is not set" in problem


def test_every_problem_is_listed_at_once(training_params, model_params):
    bad = with_changes(
        training_params,
        **{
            "grpo.num_generations": 1,
            "grpo.loss_type": "ppo",
            "prompt.truncation_side": "middle",
            "rewards": {"cosine": 0.0},
            "lora.dropout": 1.5,
        },
    )
    with pytest.raises(TrainingConfigError) as error:
        TrainingConfig.from_params(bad)
    message = str(error.value)
    for fragment in (
        "num_generations is 1",
        "loss_type is 'ppo'",
        "truncation_side is 'middle'",
        "no reward a non-zero weight",
        "lora.dropout is 1.5",
    ):
        assert fragment in message
    assert "nothing was loaded or trained" in message


def test_train_grpo_checks_the_config_before_loading(
    training_params, model_params, tmp_path, monkeypatch
):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    hub = dict(model_params, name_or_path="meta-llama/Llama-3.2-11B-Vision-Instruct")
    # The base model path does not even exist: the config check must fail first.
    with pytest.raises(TrainingConfigError):
        train_grpo(
            str(tmp_path / "missing"),
            None,
            ModelConfig.from_params(hub),
            TrainingConfig.from_params(training_params),
        )


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    for step, state in ((2, "{}"), (4, "{}"), (6, None), (8, "{truncated")):
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        if state is not None:
            (path / "trainer_state.json").write_text(state)
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_resume_needs_the_same_configuration(tmp_path):
    directory = tmp_path / "ckpt"
    assert resolve_resume(directory, "abc", "auto") is None  # nothing yet: afresh
    (directory / "checkpoint-5").mkdir()
    (directory / "checkpoint-5" / "trainer_state.json").write_text("{}")
    assert resolve_resume(directory, "abc", "auto") == directory / "checkpoint-5"
    assert resolve_resume(directory, "abc", True) == directory / "checkpoint-5"
    # Another configuration's checkpoints are cleared, never resumed.
    assert resolve_resume(directory, "other", "auto") is None
    assert not (directory / "checkpoint-5").exists()
    with pytest.raises(TrainingConfigError, match="resume is true but"):
        resolve_resume(directory, "other", True)


def test_resume_false_starts_afresh(tmp_path):
    directory = tmp_path / "ckpt"
    resolve_resume(directory, "abc", "auto")
    (directory / "checkpoint-5").mkdir()
    (directory / "checkpoint-5" / "trainer_state.json").write_text("{}")
    assert resolve_resume(directory, "abc", False) is None
    assert not (directory / "checkpoint-5").exists()


def write_checkpoint(path) -> None:
    """A checkpoint folder as the trainer writes one: adapter, optimizer, state."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    save_file(
        {"lora_A": torch.randn(64, 4), "lora_B": torch.randn(4, 64)},
        path / "adapter_model.safetensors",
    )
    torch.save({"state": {0: {"exp_avg": torch.randn(64, 4)}}}, path / "optimizer.pt")
    (path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (path / "trainer_state.json").write_text(json.dumps({"global_step": int(path.name[11:])}))


def cut_in_half(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_checkpoint_falls_back_to_the_newest_valid_one(tmp_path, caplog):
    directory = tmp_path / "ckpt"
    resolve_resume(directory, "abc", "auto")
    for step in (5, 10):
        write_checkpoint(directory / f"checkpoint-{step}")
    cut_in_half(directory / "checkpoint-10" / "adapter_model.safetensors")  # killed mid-write
    with caplog.at_level("WARNING", logger="hle_reasoning.modeling.checkpoints"):
        assert resolve_resume(directory, "abc", "auto") == directory / "checkpoint-5"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "checkpoint-10/adapter_model.safetensors: Error while deserializing header" in warning

    # No checkpoint loads: the run says so, and how to start afresh; nothing is removed.
    cut_in_half(directory / "checkpoint-5" / "optimizer.pt")
    for resume in ("auto", True):
        with pytest.raises(TrainingConfigError, match="no checkpoint in") as refused:
            resolve_resume(directory, "abc", resume)
        assert "checkpoint-5/optimizer.pt" in str(refused.value)
        assert "checkpoint-10/adapter_model.safetensors" in str(refused.value)
        assert "--params training.checkpoints.resume=false" in str(refused.value)
    assert (directory / "checkpoint-5").exists()
    assert resolve_resume(directory, "abc", False) is None  # the way out it names
    assert not (directory / "checkpoint-5").exists()


def test_a_train_split_smaller_than_one_step_is_refused_before_loading(
    training_params, model_params, math_questions, tmp_path
):
    # The base model path does not even exist: the size check must fail first.
    with pytest.raises(
        TrainingConfigError,
        match=r"focus_train holds 1 question\(s\), fewer than one optimizer step's 2",
    ):
        train_grpo(
            str(tmp_path / "missing"),
            math_questions.head(1),
            ModelConfig.from_params(model_params),
            TrainingConfig.from_params(training_params),
        )


def test_metrics_history_names_and_steps():
    log_history = [
        {
            "loss": 0.1,
            "reward": 0.5,
            "rewards/cosine/mean": 0.5,
            "rewards/cosine/std": 0.1,
            "kl": 0.0,
            "completions/mean_length": 32.0,
            "learning_rate": 1e-4,
            "step": 1,
        },
        {"loss": 0.2, "reward": 0.6, "rewards/cosine/mean": 0.6, "kl": float("nan"), "step": 2},
        {"train_runtime": 3.0, "train_loss": 0.15, "step": 2},
    ]
    history = metrics_history(log_history)
    assert history["reward"] == [{"step": 1, "value": 0.5}, {"step": 2, "value": 0.6}]
    assert history["reward.cosine"][1] == {"step": 2, "value": 0.6}
    assert history["reward_std.cosine"] == [{"step": 1, "value": 0.1}]
    assert history["kl"] == [{"step": 1, "value": 0.0}]  # NaN dropped
    assert history["completion_length"][0]["value"] == 32.0
    assert "train_loss" not in history and "train_runtime" not in history


RUNNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import pandas as pd
    from transformers import TrainerCallback

    from hle_reasoning.config import ModelConfig, TrainingConfig
    from hle_reasoning.modeling.training import train_grpo

    config = json.loads(Path(sys.argv[1]).read_text())

    class HoldAfterSaving(TrainerCallback):
        # After the checkpoint of step 3, signal the test and wait to be killed.
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 3:
                Path(config["flag"]).write_text("saved")
                time.sleep(600)

    train_grpo(config["base"], pd.read_parquet(config["questions"]),
               ModelConfig.from_params(config["model"]),
               TrainingConfig.from_params(config["training"]), callbacks=[HoldAfterSaving()])
    """
)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(
    tiny_dir, math_questions, model_params, training_params, tmp_path, monkeypatch
):
    checkpoints = tmp_path / "checkpoints"
    params = with_changes(
        training_params,
        **{
            "checkpoints.dir": str(checkpoints),
            "checkpoints.save_steps": 1,
            "max_steps": 5,
            "grpo.max_completion_length": 8,
        },
    )
    questions = math_questions.iloc[[0, 1, len(math_questions) - 1, len(math_questions) - 2]]
    questions.to_parquet(tmp_path / "questions.parquet")
    config = {
        "base": str(tiny_dir),
        "questions": str(tmp_path / "questions.parquet"),
        "model": model_params,
        "training": params,
        "flag": str(tmp_path / "saved"),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "config.json")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "saved").exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run never saved its step-3 checkpoint"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-3"
    # A kill while writing the next checkpoint leaves it incomplete; it must be ignored.
    (checkpoints / "checkpoint-4").mkdir()
    (checkpoints / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"partial")
    saved_rows = completions.read_rows(checkpoints / "checkpoint-3" / completions.CHECKPOINT_FILE)
    assert [r["step"] for r in saved_rows] == [1] * 4 + [2] * 4 + [3] * 4

    import mlflow

    monkeypatch.chdir(tmp_path)  # the run's artifacts (the completions table) under tmp_path
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        result = train_grpo(
            str(tiny_dir),
            questions,
            ModelConfig.from_params(model_params),
            TrainingConfig.from_params(params),
        )

    assert result.summary["resumed_from_step"] == 3
    # The resumed run's MLflow curve: the restored steps, then the new ones, numbered as trained.
    losses = mlflow.MlflowClient().get_metric_history(run.info.run_id, "training.loss")
    assert [m.step for m in losses] == [1, 2, 3, 4, 5]
    assert result.summary["steps"] == 5
    # The history restored from the checkpoint and the steps run after resuming: 1..5, once each.
    assert [p["step"] for p in result.history["loss"]] == [1, 2, 3, 4, 5]
    # The completions table: the checkpoint's rows, then the resumed steps' (step 4 once).
    table = result.completions
    assert list(table["step"]) == [s for s in range(1, 6) for _ in range(4)]
    assert table.iloc[:12]["completion"].tolist() == [r["completion"] for r in saved_rows]
    logged = mlflow.load_table(completions.ARTIFACT_FILE, run_ids=[run.info.run_id])
    assert list(logged["step"]) == list(table["step"])
    assert not checkpoints.exists()  # removed once the run completed
    assert hasattr(result.model, "save_pretrained")


def test_training_dataset_rows(math_questions):
    rows = training_data.training_dataset(math_questions.iloc[[0, len(math_questions) - 1]])
    image_row, text_row = rows[0], rows[1]
    assert len(image_row["images"]) == 1 and text_row["images"] == []
    # Image questions put the HLE system prompt in a user turn (Llama 3.2 Vision refuses system + image).
    assert [m["role"] for m in image_row["prompt"]] == ["user", "user"]
    assert [m["role"] for m in text_row["prompt"]] == ["system", "user"]
    assert {"answer", "answer_type", "id"} <= set(rows.column_names)


def test_each_step_reaches_mlflow_while_training_runs(
    tiny_dir, math_questions, model_params, training_params, tmp_path, monkeypatch
):
    """The kedro run's MLflow run holds step N's metrics before step N + 1 starts."""
    import mlflow
    from transformers import TrainerCallback

    monkeypatch.chdir(tmp_path)  # the run's artifacts (the completions table) under tmp_path
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    seen: list[list[int]] = []
    tables: list[int] = []

    class WatchMlflow(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step:
                run_id = mlflow.active_run().info.run_id
                seen.append([m.step for m in client.get_metric_history(run_id, "training.loss")])
                table = mlflow.load_table(completions.ARTIFACT_FILE, run_ids=[run_id])
                tables.append(len(table))

    params = with_changes(
        training_params,
        **{
            "checkpoints.dir": str(tmp_path / "checkpoints"),
            "max_steps": 3,
            "grpo.max_completion_length": 4,
        },
    )
    fp32 = ModelConfig.from_params(dict(model_params, quantization={"enabled": False}))
    with mlflow.start_run() as run:
        train_grpo(
            str(tiny_dir),
            math_questions.iloc[:4],
            fp32,
            TrainingConfig.from_params(params),
            callbacks=[WatchMlflow()],
        )
    assert seen == [[1], [1, 2]]
    history = client.get_metric_history(run.info.run_id, "training.reward")
    assert [m.step for m in history] == [1, 2, 3]
    assert client.get_metric_history(run.info.run_id, "training.reward.cosine")
    # The completions table grew step by step in the run: 4 rows after step 1, 8 after step 2.
    assert tables == [4, 8]
