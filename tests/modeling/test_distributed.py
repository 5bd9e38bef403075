"""The ``distributed`` block and the worker launch (gloo, 2 processes on the CPU)."""

from __future__ import annotations

import copy
import os
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hle_reasoning.config import (
    ConfigError,
    DistributedConfig,
    ModelConfig,
    TrainingConfig,
    parse,
)
from hle_reasoning.modeling.distributed import WorkerFailedError, run_workers
from hle_reasoning.modeling.training import config_problems
from hle_reasoning.modeling.trl_mapping import grpo_config_kwargs
from tests.conftest import PROJECT_ROOT
from tests.modeling import distributed_workers
from tests.modeling.distributed_workers import cpu_fp32, one_step_training


def test_the_shipped_block_is_one_process_without_a_launcher():
    block = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters.yml").read_text())["distributed"]
    config = DistributedConfig.from_params(block)
    assert config == DistributedConfig()
    assert not config.enabled and config.processes_per_machine == 1
    assert DistributedConfig.from_params({"num_processes": 2}).enabled


def test_every_problem_is_listed_with_its_parameter():
    with pytest.raises(ConfigError) as error:
        DistributedConfig.from_params({"num_processes": 3, "num_machines": 2, "machine_rank": 2})
    message = str(error.value)
    for expected in (
        "num_processes 3",
        "machine_rank 2 must be below num_machines 2",
        "needs distributed.main_process_ip",
        "needs distributed.main_process_port",
    ):
        assert expected in message
    with pytest.raises(ConfigError, match=r"distributed.gpus: unknown key"):
        DistributedConfig.from_params({"gpus": 2})
    assert parse(DistributedConfig, {"num_processes": 0}, "distributed")[1] == [
        "distributed.num_processes is 0; set it to an integer >= 1."
    ]
    assert parse(DistributedConfig, {"num_processes": 2}, "distributed")[1] == []


def test_an_accelerate_config_file_must_agree_with_the_block(tmp_path):
    path = tmp_path / "accelerate.yaml"
    path.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_processes: 4\n"
        "num_machines: 1\nmachine_rank: 0\nmixed_precision: bf16\nuse_cpu: true\n"
    )
    with pytest.raises(ConfigError, match="sets num_processes: 4 but the distributed"):
        DistributedConfig(num_processes=2, config_file=str(path))
    assert DistributedConfig(num_processes=4, config_file=str(path)).num_processes == 4
    missing = parse(DistributedConfig, {"config_file": str(tmp_path / "none.yaml")}, "distributed")[
        1
    ]
    assert len(missing) == 1 and "does not exist" in missing[0]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["num_processes", "num_machines", "machine_rank", "main_process_port", "timeout_s"]
        ),
        st.one_of(st.integers(-3, 70000), st.none(), st.booleans(), st.text(max_size=3)),
    )
)
def test_any_block_is_accepted_or_rejected_with_a_message(params):
    try:
        config = DistributedConfig.from_params(params)
    except ConfigError as error:
        assert "distributed." in str(error)
    else:
        assert config.num_processes % config.num_machines == 0
        assert 0 <= config.machine_rank < config.num_machines


@pytest.mark.slow
def test_two_gloo_workers_split_the_work_and_return_to_the_parent():
    # The configured threads, never accelerate's own choice (physical cores / local processes,
    # which it sets when OMP_NUM_THREADS is unset): ask for one more than that.
    threads = psutil.cpu_count(logical=False) // 2 + 1
    results = run_workers(
        DistributedConfig(num_processes=2), distributed_workers.report, list(range(5)), threads
    )
    assert sorted(results) == [0, 1]
    assert [results[r]["rank"] for r in (0, 1)] == [0, 1]
    assert {results[r]["world_size"] for r in (0, 1)} == {2}
    assert {results[r]["backend"] for r in (0, 1)} == {"gloo"}
    assert {results[r]["threads"] for r in (0, 1)} == {threads}
    assert results[0]["share"] + results[1]["share"] == list(range(5))  # each item once


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "said"),
    [("raise", "ValueError: question q7 could not be answered"), ("die", "exit code 3")],
)
def test_a_failed_worker_stops_the_launch_naming_its_rank(mode, said):
    started = time.monotonic()
    with pytest.raises(WorkerFailedError) as error:
        run_workers(
            DistributedConfig(num_processes=2, timeout_s=30), distributed_workers.fail, mode
        )
    assert time.monotonic() - started < 45  # rank 0's minute of waiting was cut short
    message = str(error.value)
    assert "rank 1 (local rank 1)" in message and said in message
    assert "rank 0" not in message
    assert "run the same command again to resume" in message


@pytest.mark.slow
def test_two_ddp_processes_all_reduce_the_single_process_gradient(
    tmp_path, tiny_dir, math_questions, training_params, model_params
):
    """One image and one text question: the single process scores a mixed batch, each of the two
    DDP processes one of them (the case that deadlocked before)."""
    questions = pd.concat(
        [
            math_questions[math_questions["image"] != ""].head(1),
            math_questions[math_questions["image"] == ""].head(1),
        ]
    ).reset_index(drop=True)
    fp32 = cpu_fp32(model_params)
    single = distributed_workers.one_step_gradients(
        str(tiny_dir),
        questions,
        fp32,
        TrainingConfig.from_params(one_step_training(training_params, tmp_path / "one")),
    )
    started = time.monotonic()
    results = run_workers(
        DistributedConfig(num_processes=2, timeout_s=120),
        distributed_workers.one_step_gradients,
        str(tiny_dir),
        questions,
        fp32,
        TrainingConfig.from_params(one_step_training(training_params, tmp_path / "two")),
    )
    print(f"\n2-process DDP step: {time.monotonic() - started:.1f} s")
    reduced = results[0]
    assert results[1] is None
    assert sorted(reduced) == sorted(single)
    cross = [n for n in single if "cross_attn" in n and "lora_B" in n]
    assert cross and any(np.abs(single[n]).max() > 0 for n in cross)  # the image row counts
    assert max(np.abs(single[n]).max() for n in single) > 1e-4  # a real gradient
    for name in single:
        np.testing.assert_allclose(reduced[name], single[name], rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_rank_0_logs_each_step_live_into_the_nodes_mlflow_run_once(
    tmp_path, tiny_dir, math_questions, training_params, model_params, monkeypatch
):
    """The training node on 2 DDP processes inside an MLflow run (as kedro-mlflow opens it):
    each step's metrics are in that run, under the single-process names, once each."""
    import mlflow

    from hle_reasoning.pipelines.training import nodes

    questions = math_questions.head(2)
    fp32 = cpu_fp32(model_params)
    training = one_step_training(training_params, tmp_path / "checkpoints")
    training["max_steps"] = 2
    monkeypatch.chdir(tmp_path)  # the run's artifacts (the completions table) under tmp_path
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        started = time.monotonic()
        adapter, _, summary, history, completions = nodes.train_grpo(
            str(tiny_dir),
            questions,
            fp32,
            TrainingConfig.from_params(training),
            DistributedConfig(num_processes=2, timeout_s=120),
        )
        print(f"\n2-process training node, 2 steps: {time.monotonic() - started:.1f} s")
        # The workers attached by id: the run is still the parent's, running.
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
    assert summary["world_size"] == 2 and summary["steps"] == 2
    # Rank 0 saved the adapter after its last step, before the workers were done.
    saved_ms = (adapter.path / "adapter_model.safetensors").stat().st_mtime * 1000
    names = set(history.columns) - {"step"}
    assert {"loss", "reward", "reward.format", "kl"} <= names
    for name in names:
        logged = client.get_metric_history(run.info.run_id, f"training.{name}")
        assert sorted(m.step for m in logged) == [1, 2], name  # each step once, numbered
        assert all(m.timestamp <= saved_ms for m in logged), name  # live: while training
    assert not client.get_metric_history(run.info.run_id, "loss")  # no second naming
    assert {"no_signal_group_share", "cut_share"} <= names
    # The completions table: both ranks' completions of each step (one prompt each), once.
    assert list(completions["step"]) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [completions["id"][completions["step"] == s].nunique() for s in (1, 2)] == [2, 2]
    logged = mlflow.load_table("training/completions.json", run_ids=[run.info.run_id])
    assert list(logged["step"]) == list(completions["step"])


@pytest.mark.parametrize(
    ("processes", "batch_size", "problem"),
    [
        (1, 2, None),
        (2, 2, None),  # one prompt's 2 completions per process
        (4, 2, None),  # one completion per process
        (3, 2, "cannot share training's global batch of 4 completions"),
        (8, 2, "cannot share training's global batch of 4 completions"),
        (2, 4, "more than one prompt's 2"),  # 2 prompts per process: image and text could mix
    ],
)
def test_the_global_batch_is_shared_by_the_processes_or_the_world_size_is_rejected(
    training_params, model_params, processes, batch_size, problem
):
    training = copy.deepcopy(training_params)
    training["grpo"]["batch_size"] = batch_size
    training = TrainingConfig.from_params(training)
    model = ModelConfig.from_params(model_params)
    problems = config_problems(training, model, check_access=False, world_size=processes)
    if problem is None:
        assert problems == []
        kwargs = grpo_config_kwargs(
            training, output_dir="x", device="cpu", reward_weights=[1.0], world_size=processes
        )
        # The proposal's global batch whatever the number of processes.
        assert kwargs["per_device_train_batch_size"] * processes == batch_size * 2
    else:
        assert len(problems) == 1 and problem in problems[0]
        assert f"distributed.num_processes {processes}" in problems[0]


@pytest.mark.slow
def test_a_collective_that_never_matches_ends_at_the_process_group_timeout():
    started = time.monotonic()
    with pytest.raises(WorkerFailedError) as error:
        run_workers(DistributedConfig(num_processes=2, timeout_s=5), distributed_workers.stall)
    assert time.monotonic() - started < 60  # not rank 1's two minutes
    message = str(error.value)
    assert "rank 0 (local rank 0): exit code 1" in message
    assert re.search(r"time(d)? ?out", message, re.IGNORECASE)  # gloo's or the store's timeout


@pytest.mark.slow
def test_a_ddp_checkpoint_is_complete_only_with_every_ranks_rng_state(
    tmp_path, tiny_dir, math_questions, training_params, model_params
):
    """Rank 0 writes trainer_state.json, the mark of a complete checkpoint, only once every rank
    has saved its RNG state there: a rank killed before (or while) saving its own must leave the
    checkpoint incomplete, not one that resumes without it (or fails to load it)."""
    checkpoints = tmp_path / "checkpoints"
    training = one_step_training(training_params, checkpoints)
    training["max_steps"] = 2
    training["grpo"]["max_completion_length"] = 4
    training["checkpoints"].update({"save_steps": 1, "keep": True})
    fp32 = cpu_fp32(model_params)
    run_workers(
        DistributedConfig(num_processes=2, timeout_s=60),
        distributed_workers.train_with_a_slow_rank_one,
        str(tiny_dir),
        math_questions.head(2),
        fp32,
        TrainingConfig.from_params(training),
    )
    for step in (1, 2):
        folder = checkpoints / f"checkpoint-{step}"
        marked = (folder / "trainer_state.json").stat().st_mtime_ns
        for rank in (0, 1):
            assert (folder / f"rng_state_{rank}.pth").stat().st_mtime_ns <= marked, (step, rank)


class _WorkerPids:
    """The PIDs of the launch's workers by local rank, from elastic's own process context.

    The RANK of a spawned worker is set inside it after it starts (torch's ``_wrap``), so it is
    not in ``/proc/<pid>/environ``; the agent's ``PContext`` is the one record of which process
    is which rank. This wrapper only records it; the launch runs unchanged.
    """

    def __init__(self, monkeypatch) -> None:
        from torch.distributed.elastic.agent.server import local_elastic_agent

        self.contexts: list = []
        start = local_elastic_agent.start_processes

        def recording_start(*args, **kwargs):
            context = start(*args, **kwargs)
            self.contexts.append(context)
            return context

        monkeypatch.setattr(local_elastic_agent, "start_processes", recording_start)

    def of_rank(self, rank: int) -> int | None:
        return self.contexts[-1].pids().get(rank) if self.contexts else None


def _steps(directory: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in directory.glob("checkpoint-*"))


def _complete(directory: Path, step: int) -> bool:
    from hle_reasoning.modeling.checkpoints import TRAINER_STATE

    return (directory / f"checkpoint-{step}" / TRAINER_STATE).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_a_ddp_run_killed_with_sigkill_fails_naming_the_rank_and_resumes_when_rerun(
    tmp_path, tiny_dir, math_questions, training_params, model_params, monkeypatch, killed
):
    """2 gloo processes train; once two checkpoints are complete, rank ``killed`` is SIGKILLed
    (rank 0 as soon as it starts writing the next checkpoint, to leave an incomplete one). The
    launch fails at once naming the rank; the same call again resumes from the newest complete
    checkpoint and finishes, with each step once in the history and in MLflow's live curve."""
    import mlflow

    from hle_reasoning import tracking
    from hle_reasoning.modeling.checkpoints import TRAINER_STATE, latest_checkpoint
    from hle_reasoning.pipelines.training.workers import train_distributed

    max_steps = 6
    checkpoints = tmp_path / "checkpoints"
    training = one_step_training(training_params, checkpoints)
    training["max_steps"] = max_steps
    training["grpo"]["max_completion_length"] = 8
    training["checkpoints"].update({"save_steps": 1, "resume": "auto"})
    # Two image and two text questions: the ranks' batches differ in kind, as in the study.
    questions = math_questions.iloc[[0, 1, len(math_questions) - 1, len(math_questions) - 2]]
    fp32 = cpu_fp32(model_params)
    scale = DistributedConfig(num_processes=2, timeout_s=60)
    training = TrainingConfig.from_params(training)
    monkeypatch.chdir(tmp_path)  # the runs' artifacts (the completions table) under tmp_path
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    pids = _WorkerPids(monkeypatch)
    killed_at: dict = {}
    launch_ended = threading.Event()

    def kill_after_two_checkpoints() -> None:
        while not launch_ended.is_set():
            # Marked complete (trainer_state.json written last): a cheap scan, so that the poll
            # stays within the few milliseconds of the next checkpoint's write (latest_checkpoint
            # loads every file, a second with Llama 3's 9 MB tokenizer.json, and missed it).
            marked = [s for s in _steps(checkpoints) if _complete(checkpoints, s)]
            step = max(marked, default=0)
            # Two complete checkpoints: the history restored on resuming has more than one step.
            if step >= 2 and (pid := pids.of_rank(killed)) is not None:
                # Rank 0 writes the checkpoints: kill it while it writes step + 1's.
                writing = checkpoints / f"checkpoint-{step + 1}"
                if killed == 1 or (writing.is_dir() and not (writing / TRAINER_STATE).exists()):
                    os.kill(pid, signal.SIGKILL)
                    killed_at.update(step=step, time=time.monotonic())
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_after_two_checkpoints, daemon=True)
    started = time.monotonic()
    with mlflow.start_run() as first, pytest.raises(WorkerFailedError) as error:
        killer.start()
        train_distributed(
            scale, str(tiny_dir), questions, fp32, training, tracking.active_run_ref()
        )
    failed = time.monotonic()
    launch_ended.set()
    killer.join(timeout=5)
    assert killed_at, "the run ended before it could be killed"
    assert failed - killed_at["time"] < 30  # stopped by the kill, not by a timeout
    message = str(error.value)
    assert f"rank {killed} (local rank {killed}): killed by signal SIGKILL" in message
    assert "run the same command again to resume" in message

    last = latest_checkpoint(checkpoints)
    resume_step = int(last.name.split("-")[1])
    assert killed_at["step"] <= resume_step < max_steps
    # A complete checkpoint holds every rank's RNG state (the ranks wait for each other).
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in last.iterdir()}
    left = _steps(checkpoints)
    # The first run's live curve: its steps up to the kill, once each.
    logged = [m.step for m in client.get_metric_history(first.info.run_id, "training.loss")]
    assert logged == list(range(1, len(logged) + 1)) and len(logged) >= resume_step
    if killed == 0:
        # A kill while rank 0 writes a checkpoint leaves it incomplete: the rerun ignores it.
        assert resume_step + 1 in left, left
    print(
        f"\nkilled rank {killed} after checkpoint {killed_at['step']}; failed "
        f"{failed - killed_at['time']:.1f} s later ({failed - started:.0f} s in all); "
        f"checkpoints left {left}, resuming from {resume_step}"
    )

    with mlflow.start_run() as rerun:
        result = train_distributed(
            scale, str(tiny_dir), questions, fp32, training, tracking.active_run_ref()
        )
    print(f"rerun: {time.monotonic() - failed:.0f} s")
    summary = result.summary
    assert summary["resumed_from_step"] == resume_step
    assert summary["world_size"] == 2 and summary["steps"] == max_steps
    steps = list(range(1, max_steps + 1))
    assert [p["step"] for p in result.history["loss"]] == steps  # restored, then trained
    losses = client.get_metric_history(rerun.info.run_id, "training.loss")
    assert [m.step for m in losses] == steps  # rank 0's live curve, once each
    # The completions table: each step's 4 completions once, the restored ones first.
    assert list(result.completions["step"]) == [s for s in steps for _ in range(4)]
    assert not checkpoints.exists()  # removed once the run completed
    assert (result.model.path / "adapter_model.safetensors").is_file()
