"""One QLoRA + GRPO run of the study's model: ``train_grpo`` and what it records.

The pieces live beside it: the configuration in ``hle_reasoning.config.training``, its mapping
onto PEFT and TRL in ``trl_mapping``, checkpoints and resuming in ``checkpoints``, the progress
bar, live MLflow metrics and the history in ``training_callbacks``, and the Mllama-aware trainer
in ``grpo``. ``train_grpo`` is the whole run as a plain function (the training pipeline's node
calls it; a notebook can too).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hle_reasoning import tracking
from hle_reasoning.config.distributed import world_size_problems
from hle_reasoning.config.model import ModelConfig
from hle_reasoning.config.training import TrainingConfig, TrainingConfigError
from hle_reasoning.hle.data.prompts import image_goes_first
from hle_reasoning.hle.judge.rewards import build_reward_functions
from hle_reasoning.modeling import completions as completions_table
from hle_reasoning.modeling import memory
from hle_reasoning.modeling.checkpoints import (
    latest_checkpoint,
    resolve_resume,
    resumed_step,
    run_fingerprint,
)
from hle_reasoning.modeling.families import family_of, questions_for
from hle_reasoning.modeling.grpo import GRPOTrainer
from hle_reasoning.modeling.models import (
    ModelAccessError,
    check_model_access,
    load_model,
    load_processor,
    resolve_device,
)
from hle_reasoning.modeling.training_callbacks import (
    CompletionsCallback,
    GRPOProgressCallback,
    LiveMetricsCallback,
    metrics_history,
)
from hle_reasoning.modeling.training_data import training_dataset
from hle_reasoning.modeling.trl_mapping import grpo_config, lora_config, trainer_params

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingConfigError",
    "TrainingResult",
    "config_problems",
    "latest_checkpoint",
    "metrics_history",
    "resolve_resume",
    "summary_metrics",
    "train_grpo",
]


def _access_problems(model: ModelConfig) -> list[str]:
    problems = []
    for check in (
        lambda: check_model_access(model.name_or_path),
        lambda: resolve_device(model.device),
    ):
        try:
            check()
        except ModelAccessError as error:
            problems.append(str(error))
    return problems


def config_problems(
    training: TrainingConfig,
    model: ModelConfig,
    check_access: bool = True,
    world_size: int = 1,
) -> list[str]:
    """What stops a training run of these blocks, one message per problem (no model loads).

    ``check_access=False`` leaves out the model's hub access and device (the preflight hook checks
    those for every pipeline). ``world_size``: the processes that will share the global batch.
    """
    problems = world_size_problems(training.grpo, world_size)
    if check_access:
        problems += _access_problems(model)
    return problems


@contextlib.contextmanager
def _quiet_deprecations():
    """Hide transformers 5.24's gradient-checkpointing renaming warnings, raised by TRL each step."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated")
        yield


@contextlib.contextmanager
def _cpu_threads(threads: int | None):
    """torch's CPU threads set to ``threads`` for the block (None: unchanged)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class TrainingResult:
    """What a training run produced: the trained PEFT model and what to record about it."""

    model: Any
    completions: pd.DataFrame  # the completions table (completions.COLUMNS); empty off rank 0
    history: dict[str, list[dict[str, float]]]
    summary: dict[str, Any]
    params: dict[str, str]


def train_grpo(
    base_model: str,
    questions: pd.DataFrame,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    *,
    callbacks: Iterable[Any] = (),
    trainer_class: type[GRPOTrainer] | None = None,
    live_run: tracking.RunRef | None = None,
) -> TrainingResult:
    """QLoRA + GRPO on ``questions`` from the saved base model ``base_model`` (a directory or hub id).

    Checkpoints go to ``training.checkpoints.dir`` every ``save_steps`` steps; an interrupted run
    of the same configuration resumes from the newest one (``resume: auto``). They are removed
    when the run completes. Each step's metrics reach the active MLflow run as the step ends, or
    ``live_run`` (a worker process's way to the parent's run; rank 0 only logs).

    The model's family (``families``) picks the trainer (``trainer_class`` overrides it) and
    LoRA's targets; a text-only model trains on the questions without an image.

    Inside an initialised process group (a worker of ``hle_reasoning.modeling.distributed``) it
    trains data-parallel (DDP): every process runs this function, the global batch is shared
    between them, and only rank 0 manages the checkpoint folder (the others learn from it where
    to resume).
    """
    world_size, rank = _process_group()
    training, model_cfg = training_config, model_config
    problems = config_problems(training, model_cfg, world_size=world_size)
    if problems:
        raise TrainingConfigError(problems)
    needed = training.grpo.prompts_per_step
    if questions is not None and len(questions) < needed:
        raise TrainingConfigError(
            [
                f"focus_train holds {len(questions)} question(s), fewer than one optimizer step's "
                f"{needed} (training.grpo.batch_size {training.grpo.batch_size} "
                f"{training.grpo.batch_size_unit}): lower training.grpo.batch_size, or add "
                "categories to data_processing.focus_categories."
            ]
        )
    device = resolve_device(model_cfg.device)
    if world_size > 1 and device.startswith("cuda"):
        from accelerate import PartialState

        device = str(PartialState().device)  # one GPU per process: cuda:<local rank>
    checkpoints = training.checkpoints
    checkpoint_dir = Path(checkpoints.dir)
    fingerprint = run_fingerprint(
        {
            k: v
            for k, v in training.model_dump().items()
            if k not in ("checkpoints", "cpu_threads", "completions")  # change no checkpoint
        },
        {k: v for k, v in model_cfg.model_dump().items() if k != "device"},
        str(base_model),
        questions[["id", "question", "answer"]].astype(str).values.tolist(),
        checkpoints.save_steps,
    )
    resume_from = None
    if rank == 0:  # the other processes would race it on the folder
        resume_from = resolve_resume(checkpoint_dir, fingerprint, checkpoints.resume)
    if world_size > 1:
        shared = [str(resume_from) if resume_from else None]
        torch.distributed.broadcast_object_list(shared, src=0)
        resume_from = Path(shared[0]) if shared[0] else None

    family = family_of(base_model)
    questions, subset = questions_for(questions, family, split="train")
    if subset["note"]:
        logger.info("%s (%s family)", subset["note"], family.name)
    trainer_class = trainer_class or family.trainer_class()
    dataset = training_dataset(
        questions,
        system_role=training.prompt.system_role,
        plain=not family.takes_images,
        image_first=image_goes_first(model_cfg.image_position, family.cross_attention),
    )
    reward_funcs, weights = build_reward_functions(
        training.reward_weights,
        questions["answer"].astype(str),
        embedding_model=training.embedding_model,
        device=device,
    )
    table = training.completions
    reward_funcs, recorder = completions_table.recording(reward_funcs, table.prompt_chars)
    quantization = model_cfg.quantization

    with _cpu_threads(training.cpu_threads if device == "cpu" else None):
        memory.reset_peak(device)
        rss_before_model = memory.current_rss_gb()
        model = load_model(
            base_model, quantization=quantization, device=device, dtype=model_cfg.dtype
        )
        processor = load_processor(base_model)
        # What the loaded weights occupy, counted on the meta device from the model's config.
        resident = memory.resident_weights_of(
            model.config, family.model_class(), quantization=quantization, dtype=model_cfg.dtype
        )
        lora = lora_config(training.lora, family)
        with _quiet_deprecations():
            args = grpo_config(
                training,
                output_dir=checkpoint_dir,
                device="cpu" if device == "cpu" else "cuda",
                reward_weights=weights,
                world_size=world_size,
                chat_template_date=model_cfg.chat_template_date,
            )
            # Before the live metrics: it adds each step's figures to the log history they read.
            completions = CompletionsCallback(
                recorder,
                weights=weights,
                num_generations=training.grpo.num_generations,
                scale_rewards=training.grpo.scale_rewards,
                rows_per_step=table.rows_per_step,
                warn_share=table.warn_no_signal_share,
                warn_after_steps=table.warn_after_steps,
                restore_from=resume_from if rank == 0 else None,
                run=live_run,
                max_completion_length=training.grpo.max_completion_length,
            )
            trainer = trainer_class(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=dataset,
                processing_class=processor,
                peft_config=lora,
                callbacks=[completions, LiveMetricsCallback(run=live_run), *callbacks],
            )
            completions.end_token_ids = _end_token_ids(trainer)
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(GRPOProgressCallback)

        estimate = memory.estimate(
            trainer.model,
            quantization=quantization,
            dtype=model_cfg.dtype,
            questions=questions,
            training_overhead_gb=training.memory.training_overhead_gb,
            dataset_gb_override=training.memory.dataset_gb,
        )
        resident_estimate = memory.with_resident_weights(estimate, resident)
        n_images = (
            int(sum(bool(images) for images in dataset["images"]))
            if "images" in dataset.column_names
            else 0
        )
        logger.info(
            "GRPO on %d questions (%d with images), %d completions per step on %d process(es); "
            "eq. (6) estimate %.3f GB, with the resident weights %.3f GB",
            len(dataset),
            n_images,
            args.per_device_train_batch_size * world_size,
            world_size,
            estimate.total_gb,
            resident_estimate.total_gb,
        )
        started = time.perf_counter()
        with _quiet_deprecations():
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        wall = time.perf_counter() - started
        peak = memory.measured_peak(device)

    history = metrics_history(trainer.state.log_history)
    signal = _signal_summary(history)
    step_times = [p["value"] for p in history.get("step_time", [])]
    summary = {
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "questions": len(dataset),
        "image_questions": n_images,
        "family": family.name,
        "subset": subset["note"],
        "completions_per_step": int(args.per_device_train_batch_size) * world_size,
        "completions_per_process": int(args.per_device_train_batch_size),
        "world_size": world_size,
        # The engine the trainer's accelerate really ran (NO / MULTI_CPU / MULTI_GPU is DDP,
        # FSDP, DEEPSPEED) and its mixed precision: what distributed.config_file asked for.
        "distributed_type": str(getattr(trainer.accelerator.distributed_type, "value", "")),
        "mixed_precision": str(trainer.accelerator.mixed_precision),
        "resumed_from_step": resumed_step(resume_from),
        "train_seconds": wall,
        "mean_step_time_s": sum(step_times) / len(step_times) if step_times else None,
        "train_loss": float(output.training_loss),
        **signal,
        "device": device,
        "quantized": quantization.enabled,
        "memory": {
            "eq6": estimate.to_dict(),
            "resident_weights": resident.to_dict(),
            "resident_estimate": resident_estimate.to_dict(),
            "measured": {**peak, "rss_before_model_gb": rss_before_model},
        },
    }
    for key in ("reward", "kl", "loss"):
        if history.get(key):
            summary[f"final_{key}"] = history[key][-1]["value"]
    if world_size > 1:
        torch.distributed.barrier()  # every process is done with the checkpoints
    if rank == 0 and not checkpoints.keep:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return TrainingResult(
        model=trainer.model,
        completions=completions.frame(),
        history=history,
        summary=summary,
        params={
            **trainer_params(args, lora, training),
            **{f"accelerate.{k}": summary[k] for k in ("distributed_type", "mixed_precision")},
        },
    )


def _end_token_ids(trainer: Any) -> list[int]:
    """The tokens that end a completion before the limit: TRL's end-of-sequence ids and the pad
    token (TRL's ``completions/clipped_ratio`` counts the others as cut)."""
    tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
    ids = [*getattr(trainer, "eos_token_ids", []), getattr(tokenizer, "pad_token_id", None)]
    return [int(i) for i in ids if i is not None]


def _signal_summary(history: Mapping[str, list[dict[str, float]]]) -> dict[str, Any]:
    """The run's learning signal: steps whose groups all had equal rewards, and cut completions."""
    shares = [p["value"] for p in history.get(completions_table.NO_SIGNAL, [])]
    cut = [p["value"] for p in history.get(completions_table.CUT, [])]
    free = sum(1 for v in shares if v == 1.0)
    return {
        "no_signal_steps": free,
        "no_signal_step_share": free / len(shares) if shares else None,
        "mean_no_signal_group_share": sum(shares) / len(shares) if shares else None,
        "mean_cut_share": sum(cut) / len(cut) if cut else None,
    }


def _process_group() -> tuple[int, int]:
    """(world size, rank) of the initialised process group; (1, 0) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def resident_metrics(summary_memory: Mapping[str, Any]) -> dict[str, float]:
    """The resident-weights figures of a summary's ``memory`` block, as MLflow metric values."""
    weights = summary_memory.get("resident_weights")
    if weights is None:
        return {}
    return {
        "memory.resident_total_gb": summary_memory["resident_estimate"]["total_gb"],
        "memory.resident_weights_gb": weights["total_gb"],
        "memory.resident_packed_gb": weights["packed_gb"],
        "memory.resident_absmax_gb": weights["absmax_gb"],
        "memory.resident_unquantized_gb": weights["unquantized_gb"],
        "memory.quantized_parameters": weights["quantized_parameters"],
        "memory.unquantized_parameters": weights["unquantized_parameters"],
    }


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The run's single figures as metrics: memory (eq. (6) terms, measured peak) and timings.

    Undefined figures are logged as NaN (``hle_reasoning.tracking``'s rule).
    """
    eq6 = summary["memory"]["eq6"]
    values = {
        "memory.eq6_total_gb": eq6["total_gb"],
        "memory.eq6_model_gb": eq6["model_gb"],
        "memory.eq6_adapter_gb": eq6["adapter_gb"],
        "memory.eq6_training_overhead_gb": eq6["training_overhead_gb"],
        "memory.eq6_dataset_gb": eq6["dataset_gb"],
        **resident_metrics(summary["memory"]),
        **{f"memory.{k}": v for k, v in summary["memory"]["measured"].items()},
        "train_seconds": summary["train_seconds"],
        "mean_step_time_s": summary["mean_step_time_s"],
        "steps": summary["steps"],
    }
    from hle_reasoning.tracking import metric_value

    return {k: {"step": 0, "value": metric_value(v)} for k, v in values.items()}
