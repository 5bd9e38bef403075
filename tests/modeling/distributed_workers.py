"""Worker functions for the distributed tests (module level: the workers are spawned).

Every spawned worker imports this module first: it imports only torch.distributed and the
project's launcher, so that the workers which only show the launch's wiring (``report``, ``fail``,
``stall``) start without transformers, TRL and PEFT (about 8 CPU seconds each on 2 cores). The
training workers import them (and :mod:`tests.modeling.grpo_trainers`) when they train.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import torch.distributed as dist

from hle_reasoning.config import ModelConfig
from hle_reasoning.modeling import distributed


def one_step_training(training_params: dict, checkpoints: Path) -> dict:
    """The ``training`` block of a one-step run that every setting repeats exactly (no dropout, no
    bf16, no clipping, the format reward only: no embedding model to load in every process)."""
    training = copy.deepcopy(training_params)
    training["lora"]["dropout"] = 0.0  # no randomness between the two settings
    training["grpo"].update({"bf16": False, "max_grad_norm": 0.0, "num_train_epochs": 1})
    training["rewards"] = {"format": 1.0}  # no embedding model to load in every process
    training["checkpoints"] = {"dir": str(checkpoints), "save_steps": 100, "resume": False}
    training["max_steps"] = 1
    training["cpu_threads"] = 1
    return training


def cpu_fp32(model_params: dict) -> ModelConfig:
    """The ``model`` block on the CPU, unquantized (quicker to load, the same logic)."""
    return ModelConfig.from_params(
        {**model_params, "device": "cpu", "quantization": {"enabled": False}}
    )


def report(items: list[int], cpu_threads: int = 1) -> dict:
    """What this worker sees: its rank, the group's size and backend, its torch threads (after
    ``init_worker(cpu_threads)``) and its share."""
    state = distributed.init_worker(cpu_threads)
    return {
        "rank": state.process_index,
        "world_size": state.num_processes,
        "backend": dist.get_backend(),
        "threads": __import__("torch").get_num_threads(),
        "share": distributed.split(state, items),
    }


def fail(mode: str) -> int:
    """Rank 1 raises (``raise``) or dies without a word (``die``); rank 0 waits for it."""
    state = distributed.init_worker()
    if state.process_index == 1:
        if mode == "raise":
            raise ValueError("question q7 could not be answered")
        os._exit(3)
    time.sleep(60)  # rank 0 would wait a minute: the launch must not
    return 0


def one_step_gradients(base_model, questions, model_params, training_params) -> dict | None:
    """One GRPO step with fixed completions in this process; its gradients (rank 0 only)."""
    from hle_reasoning.modeling.training import train_grpo
    from tests.modeling.grpo_trainers import FixedCompletionsTrainer, GradientCapture

    state = distributed.init_worker(1)
    capture = GradientCapture()
    train_grpo(
        base_model,
        questions,
        model_params,
        training_params,
        callbacks=[capture],
        trainer_class=FixedCompletionsTrainer,
    )
    return capture.gradients if state.is_main_process else None


def stall() -> int:
    """Rank 1 stays alive but never joins rank 0's all-reduce (a lost peer, not a dead one)."""
    import torch

    state = distributed.init_worker()
    if state.process_index == 1:
        time.sleep(120)
        return 1
    dist.all_reduce(torch.ones(1))
    return 0


def train_with_a_slow_rank_one(base_model, questions, model_params, training_params) -> None:
    """``train_grpo`` with :class:`SlowRankOneRngTrainer` in this process."""
    from hle_reasoning.modeling.training import train_grpo
    from tests.modeling.grpo_trainers import SlowRankOneRngTrainer

    distributed.init_worker(1)
    train_grpo(
        base_model, questions, model_params, training_params, trainer_class=SlowRankOneRngTrainer
    )
