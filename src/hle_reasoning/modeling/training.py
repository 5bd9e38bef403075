"""QLoRA + GRPO fine-tuning of the study's model: config checks, data, LoRA, checkpoints, one run.

``train_grpo`` is the whole training run as a plain function (the training pipeline's node calls
it; a notebook can too). The settings are the ``training`` block of
conf/base/parameters_training.yml; ``check_config`` rejects a bad one before any model is built
or loaded, listing every problem with the parameter to change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import shutil
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hle_reasoning.hle.prompts import SYSTEM_PROMPT, build_messages
from hle_reasoning.hle.schema import has_image, load_image
from hle_reasoning.modeling import memory
from hle_reasoning.modeling.grpo import TRUNCATION_SIDES, MllamaGRPOConfig, MllamaGRPOTrainer
from hle_reasoning.modeling.models import (
    ModelAccessError,
    check_model_access,
    load_model,
    load_processor,
    resolve_device,
)
from hle_reasoning.modeling.rewards import REWARD_NAMES, build_reward_functions

logger = logging.getLogger(__name__)

BATCH_SIZE_UNITS = ("prompts", "completions")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")
RESUME_CHOICES = ("auto", True, False)
FINGERPRINT_FILE = "run_fingerprint.json"
TRAINER_STATE = "trainer_state.json"

# TRL's log keys -> this project's metric names (MLflow: training.<name>).
HISTORY_KEYS = {
    "loss": "loss",
    "reward": "reward",
    "reward_std": "reward_std",
    "kl": "kl",
    "completions/mean_length": "completion_length",
    "learning_rate": "learning_rate",
    "entropy": "entropy",
    "grad_norm": "grad_norm",
    "step_time": "step_time",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "completions/clipped_ratio": "completion_clipped_ratio",
    "clip_ratio/region_mean": "clip_ratio",
}
_PER_REWARD = re.compile(r"^rewards/(?P<name>[^/]+)/(?P<stat>mean|std)$")


class TrainingConfigError(ValueError):
    """A training configuration that cannot work; the message lists what to change."""


# --------------------------------------------------------------------------- config


def completions_per_step(grpo: Mapping[str, Any]) -> int:
    """TRL's ``per_device_train_batch_size``: completions in one micro-batch.

    The proposal's "batch size 2" counts prompts by default (``batch_size_unit: prompts``), so a
    step sees 2 questions x ``num_generations`` completions; ``completions`` uses it as TRL's
    completion count directly (2 completions = 1 question per step with 2 generations).
    """
    if grpo.get("batch_size_unit", "prompts") == "prompts":
        return int(grpo["batch_size"]) * int(grpo["num_generations"])
    return int(grpo["batch_size"])


def config_problems(
    training: Mapping[str, Any], model: Mapping[str, Any], check_access: bool = True
) -> list[str]:
    """Everything wrong with a training configuration, one message per problem (empty if fine).

    ``check_access=False`` leaves out the model's hub access and device (the preflight hook checks
    those for every pipeline).
    """
    problems: list[str] = []
    grpo = training.get("grpo", {}) or {}
    prompt = training.get("prompt", {}) or {}
    lora = training.get("lora", {}) or {}

    def number(section: Mapping[str, Any], key: str, where: str, minimum: float, kind=float):
        value = section.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not float(value).is_integer())
            or value < minimum
        ):
            problems.append(
                f"{where}.{key} is {value!r}; set it to {'an integer' if kind is int else 'a number'} "
                f">= {minimum}."
            )
            return None
        return value

    if grpo.get("num_generations") == 1:
        problems.append(
            "training.grpo.num_generations is 1: GRPO compares each completion with the others of "
            "its prompt, so it needs at least 2 (the proposal: 2)."
        )
        n_gen = None
    else:
        n_gen = number(grpo, "num_generations", "training.grpo", 2, int)
    batch = number(grpo, "batch_size", "training.grpo", 1, int)
    unit = grpo.get("batch_size_unit", "prompts")
    if unit not in BATCH_SIZE_UNITS:
        problems.append(
            f"training.grpo.batch_size_unit is {unit!r}; choose one of {list(BATCH_SIZE_UNITS)}."
        )
    accum = number(grpo, "gradient_accumulation_steps", "training.grpo", 1, int)
    if n_gen and batch and accum and unit in BATCH_SIZE_UNITS:
        per_step = completions_per_step(grpo)
        if (per_step * accum) % n_gen:
            problems.append(
                f"training.grpo.batch_size {batch} ({unit}) gives {per_step} completions per step "
                f"(x {accum} accumulation steps), which num_generations {n_gen} does not divide: "
                f"every prompt's {n_gen} completions must land in the same generation batch. Use a "
                f"batch_size that is a multiple of {n_gen}, or batch_size_unit: prompts."
            )
    number(grpo, "temperature", "training.grpo", 1e-6)
    number(grpo, "max_completion_length", "training.grpo", 1, int)
    number(grpo, "beta", "training.grpo", 0.0)
    number(grpo, "num_train_epochs", "training.grpo", 1e-9)
    number(grpo, "learning_rate", "training.grpo", 1e-12)
    number(grpo, "num_iterations", "training.grpo", 1, int)
    if grpo.get("loss_type") not in LOSS_TYPES:
        problems.append(
            f"training.grpo.loss_type is {grpo.get('loss_type')!r}; choose one of {list(LOSS_TYPES)} "
            "('grpo' is DeepSeekMath's loss, the proposal's)."
        )
    if grpo.get("scale_rewards") not in SCALE_REWARDS:
        problems.append(
            f"training.grpo.scale_rewards is {grpo.get('scale_rewards')!r}; choose one of "
            f"{list(SCALE_REWARDS)}."
        )
    max_prompt = prompt.get("max_prompt_tokens")
    if max_prompt is not None:
        number(prompt, "max_prompt_tokens", "training.prompt", 1, int)
    if prompt.get("truncation_side", "left") not in TRUNCATION_SIDES:
        problems.append(
            f"training.prompt.truncation_side is {prompt.get('truncation_side')!r}; choose one of "
            f"{list(TRUNCATION_SIDES)}."
        )
    if prompt.get("system_role", "auto") not in ("auto", "system", "user"):
        problems.append(
            f"training.prompt.system_role is {prompt.get('system_role')!r}; choose auto, system or "
            "user."
        )

    number(lora, "r", "training.lora", 1, int)
    number(lora, "alpha", "training.lora", 1e-9)
    dropout = lora.get("dropout")
    if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        problems.append(f"training.lora.dropout is {dropout!r}; set it in [0, 1).")
    modules = lora.get("target_modules")
    if not modules or not all(isinstance(m, str) and m for m in modules):
        problems.append(
            "training.lora.target_modules must list module names (the proposal: [q_proj, v_proj])."
        )

    rewards = training.get("rewards") or {}
    unknown = sorted(set(rewards) - set(REWARD_NAMES))
    if unknown:
        problems.append(
            f"training.rewards names unknown reward(s) {unknown}; choose from {list(REWARD_NAMES)}."
        )
    weights = {k: v for k, v in rewards.items() if k in REWARD_NAMES and v is not None}
    bad = {
        k: v for k, v in weights.items() if isinstance(v, bool) or not isinstance(v, int | float)
    }
    if bad:
        problems.append(f"training.rewards weights must be numbers (got {bad}).")
    elif not any(v != 0 for v in weights.values()):
        problems.append(
            "training.rewards gives no reward a non-zero weight, so nothing would be learned; "
            "set e.g. cosine: 1.0 (the proposal's reward)."
        )

    checkpoints = training.get("checkpoints", {}) or {}
    number(checkpoints, "save_steps", "training.checkpoints", 1, int)
    if checkpoints.get("resume", "auto") not in RESUME_CHOICES:
        problems.append(
            f"training.checkpoints.resume is {checkpoints.get('resume')!r}; use auto (resume an "
            "interrupted run of the same configuration), true (must resume) or false (start afresh)."
        )
    for key in ("max_steps", "cpu_threads"):
        if training.get(key) is not None:
            number(training, key, "training", 1, int)

    quantization = model.get("quantization") or {}
    if quantization.get("enabled", False) and quantization.get("bits", 4) != 4:
        problems.append("model.quantization.bits must be 4 (QLoRA's NF4), or set enabled: false.")
    checks = (
        lambda: check_model_access(str(model.get("name_or_path"))),
        lambda: resolve_device(str(model.get("device", "auto"))),
    )
    for check in checks if check_access else ():
        try:
            check()
        except ModelAccessError as error:
            problems.append(str(error))
    return problems


def check_config(training: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    """Raise ``TrainingConfigError`` listing every problem of the configuration (no model loads)."""
    problems = config_problems(training, model)
    if problems:
        raise TrainingConfigError(
            "The training configuration cannot work; nothing was loaded or trained. Change these "
            "parameters (conf/base/parameters_training.yml, or --params training....=...):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def lora_config(lora: Mapping[str, Any]):
    """The proposal's LoRA: r, alpha, dropout on the language model's query and value projections.

    ``language_model_only`` (default) restricts ``target_modules`` to Mllama's text decoder with a
    regex; the plain names would also adapt the vision tower's projections of the same name.
    """
    from peft import LoraConfig

    modules = [str(m) for m in lora["target_modules"]]
    target: str | list[str] = modules
    if lora.get("language_model_only", True):
        names = "|".join(re.escape(m) for m in modules)
        target = rf"^model\.language_model\..*\.({names})$"
    return LoraConfig(
        r=int(lora["r"]),
        lora_alpha=float(lora["alpha"]),
        lora_dropout=float(lora["dropout"]),
        target_modules=target,
        bias="none",
    )


def grpo_config(
    training: Mapping[str, Any],
    *,
    output_dir: str | Path,
    device: str,
    reward_weights: list[float],
) -> MllamaGRPOConfig:
    """TRL's config with every proposal hyperparameter set explicitly (TRL's defaults differ)."""
    return MllamaGRPOConfig(
        **grpo_config_kwargs(
            training, output_dir=output_dir, device=device, reward_weights=reward_weights
        )
    )


def grpo_config_kwargs(
    training: Mapping[str, Any],
    *,
    output_dir: str | Path,
    device: str,
    reward_weights: list[float],
) -> dict[str, Any]:
    """The keyword arguments of ``grpo_config`` (``max_prompt_tokens`` and ``truncation_side``
    are this project's; the rest are ``trl.GRPOConfig``'s)."""
    grpo, prompt = training["grpo"], training.get("prompt", {}) or {}
    checkpoints = training.get("checkpoints", {}) or {}
    cpu = device == "cpu"
    return dict(
        output_dir=str(output_dir),
        # The proposal's settings.
        num_generations=int(grpo["num_generations"]),
        temperature=float(grpo["temperature"]),
        max_completion_length=int(grpo["max_completion_length"]),
        beta=float(grpo["beta"]),
        num_train_epochs=float(grpo["num_train_epochs"]),
        per_device_train_batch_size=completions_per_step(grpo),
        learning_rate=float(grpo["learning_rate"]),
        loss_type=str(grpo["loss_type"]),
        max_prompt_tokens=prompt.get("max_prompt_tokens"),
        truncation_side=str(prompt.get("truncation_side", "left")),
        # What the proposal leaves open, fixed here rather than left to TRL's defaults.
        scale_rewards=str(grpo["scale_rewards"]),
        gradient_accumulation_steps=int(grpo.get("gradient_accumulation_steps", 1)),
        num_iterations=int(grpo.get("num_iterations", 1)),
        epsilon=float(grpo.get("epsilon", 0.2)),
        top_p=float(grpo.get("top_p", 1.0)),
        top_k=int(grpo.get("top_k", 0)),
        lr_scheduler_type=str(grpo.get("lr_scheduler_type", "linear")),
        warmup_steps=int(grpo.get("warmup_steps", 0)),
        weight_decay=float(grpo.get("weight_decay", 0.0)),
        max_grad_norm=float(grpo.get("max_grad_norm", 1.0)),
        optim=str(grpo.get("optim", "adamw_torch")),
        bf16=bool(grpo.get("bf16", True)),
        gradient_checkpointing=bool(grpo.get("gradient_checkpointing", False)),
        seed=int(grpo.get("seed", 42)),
        reward_weights=reward_weights,
        max_steps=int(training.get("max_steps") or -1),
        # Bookkeeping: log every step (the project records the history), checkpoints, no reports.
        use_cpu=cpu,
        dataloader_pin_memory=not cpu,
        logging_steps=1,
        save_strategy="steps",
        save_steps=int(checkpoints.get("save_steps", 5)),
        save_total_limit=checkpoints.get("save_total_limit", 2),
        report_to=[],
        disable_tqdm=False,
        log_completions=False,
    )


# --------------------------------------------------------------------------- data


def training_dataset(
    questions: pd.DataFrame, system_prompt: str = SYSTEM_PROMPT, system_role: str = "auto"
):
    """HLE questions as TRL rows: chat ``prompt``, ``images`` (0 or 1 PIL image) and the answer.

    ``answer``, ``answer_type`` and ``id`` reach the reward functions as keyword arguments.
    """
    import datasets

    if questions.empty:
        raise ValueError("focus_train has no questions: nothing to train on.")
    rows = []
    for q in questions.itertuples(index=False):
        with_image = has_image(q.image)
        rows.append(
            {
                "prompt": build_messages(q.question, with_image, system_prompt, system_role),
                "images": [load_image(q.image)] if with_image else [],
                "answer": str(q.answer),
                "answer_type": str(q.answer_type),
                "id": str(q.id),
            }
        )
    return datasets.Dataset.from_list(rows)


# --------------------------------------------------------------------------- checkpoints


def fingerprint(*parts: Any) -> str:
    """A short hash of everything a run's checkpoints depend on."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete ``checkpoint-N`` (a kill while saving leaves an incomplete one)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    candidates = []
    for path in directory.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if not step.isdigit() or not (path / TRAINER_STATE).is_file():
            continue
        try:
            json.loads((path / TRAINER_STATE).read_text())
        except ValueError:
            continue
        candidates.append((int(step), path))
    return max(candidates)[1] if candidates else None


def resolve_resume(directory: str | Path, run_fingerprint: str, resume: Any) -> Path | None:
    """The checkpoint to resume from, or None to start afresh (clearing stale checkpoints).

    ``resume``: ``auto`` resumes the newest complete checkpoint written by the same configuration
    (same fingerprint) and otherwise starts afresh; ``true`` must resume; ``false`` starts afresh.
    """
    directory = Path(directory)
    marker = directory / FINGERPRINT_FILE
    same = marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == run_fingerprint
    last = latest_checkpoint(directory) if same else None
    if resume is True and last is None:
        raise TrainingConfigError(
            f"training.checkpoints.resume is true but {directory} holds no complete checkpoint of "
            "this configuration; set resume: auto (resume when possible) or false (start afresh)."
        )
    if resume is not False and last is not None:
        logger.info("Resuming the interrupted training run from %s", last)
        return last
    if directory.exists() and any(directory.iterdir()):
        logger.warning(
            "Starting training afresh: removing %s (%s)",
            directory,
            "resume: false" if resume is False else "checkpoints of another configuration",
        )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": run_fingerprint}) + "\n")
    return None


# --------------------------------------------------------------------------- the run


@contextlib.contextmanager
def _quiet_deprecations():
    """Hide transformers 5.24's gradient-checkpointing renaming warnings, raised by TRL each step."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated")
        yield


def _progress_callback():
    from transformers.trainer_callback import ProgressCallback

    class GRPOProgressCallback(ProgressCallback):
        """A tqdm bar of optimizer steps showing reward, loss and KL, not a dict per step."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs:
                shown = {k: f"{logs[k]:.3g}" for k in ("reward", "loss", "kl") if k in logs}
                self.training_bar.set_postfix(shown, refresh=False)

    return GRPOProgressCallback


def metrics_history(log_history: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """TRL's per-step logs as ``{metric: [{"step", "value"}, ...]}`` under the project's names."""
    history: dict[str, list[dict[str, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None or "train_runtime" in entry:
            continue
        for key, value in entry.items():
            name = HISTORY_KEYS.get(key)
            if name is None and (match := _PER_REWARD.match(key)):
                stat = "reward" if match["stat"] == "mean" else "reward_std"
                name = f"{stat}.{match['name']}"
            if name is None or not isinstance(value, int | float) or math.isnan(value):
                continue
            history.setdefault(name, []).append({"step": int(step), "value": float(value)})
    return history


def trainer_params(args: MllamaGRPOConfig, lora: Any) -> dict[str, str]:
    """Every setting of the trainer and of LoRA as MLflow params (``trl.*``, ``peft.*``)."""

    def flat(prefix: str, values: Mapping[str, Any]) -> dict[str, str]:
        out = {}
        for key, raw in values.items():
            value = raw
            if hasattr(raw, "value") and not isinstance(raw, int | float | str):
                value = raw.value  # enums
            if isinstance(value, set | frozenset):
                value = sorted(value)
            out[f"{prefix}.{key}"] = str(value)[:6000]
        return out

    lora_values = {k: v for k, v in lora.to_dict().items() if not k.startswith("_")}
    return {**flat("trl", args.to_dict()), **flat("peft", lora_values)}


@dataclass
class TrainingResult:
    """What a training run produced: the trained PEFT model and what to record about it."""

    model: Any
    history: dict[str, list[dict[str, float]]]
    summary: dict[str, Any]
    params: dict[str, str]


def train_grpo(
    base_model: str,
    questions: pd.DataFrame,
    model_params: Mapping[str, Any],
    training: Mapping[str, Any],
    *,
    callbacks: Iterable[Any] = (),
) -> TrainingResult:
    """QLoRA + GRPO on ``questions`` from the saved base model ``base_model`` (a directory or hub id).

    Checkpoints go to ``training.checkpoints.dir`` every ``save_steps`` steps; an interrupted run
    of the same configuration resumes from the newest one (``resume: auto``). They are removed
    when the run completes.
    """
    check_config(training, model_params)
    device = resolve_device(str(model_params.get("device", "auto")))
    checkpoints = training.get("checkpoints", {}) or {}
    checkpoint_dir = Path(checkpoints.get("dir", "data/06_models/grpo_checkpoints"))
    run_fingerprint = fingerprint(
        {k: v for k, v in training.items() if k not in ("checkpoints", "cpu_threads")},
        {k: v for k, v in model_params.items() if k != "device"},
        str(base_model),
        questions[["id", "question", "answer"]].astype(str).values.tolist(),
        checkpoints.get("save_steps"),
    )
    resume_from = resolve_resume(checkpoint_dir, run_fingerprint, checkpoints.get("resume", "auto"))

    prompt = training.get("prompt", {}) or {}
    dataset = training_dataset(questions, system_role=prompt.get("system_role", "auto"))
    reward_funcs, weights = build_reward_functions(
        {k: v for k, v in (training.get("rewards") or {}).items() if v is not None},
        questions["answer"].astype(str),
        embedding_model=training.get("embedding_model", "all-MiniLM-L6-v2"),
        device=device,
    )
    quantization = model_params.get("quantization")
    dtype = str(model_params.get("dtype", "float32"))

    with _cpu_threads(training.get("cpu_threads") if device == "cpu" else None):
        memory.reset_peak(device)
        rss_before_model = memory.current_rss_gb()
        model = load_model(base_model, quantization=quantization, device=device, dtype=dtype)
        processor = load_processor(base_model)
        lora = lora_config(training["lora"])
        with _quiet_deprecations():
            args = grpo_config(
                training, output_dir=checkpoint_dir, device=device, reward_weights=weights
            )
            trainer = MllamaGRPOTrainer(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=dataset,
                processing_class=processor,
                peft_config=lora,
                callbacks=list(callbacks),
            )
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_progress_callback())

        mem = training.get("memory", {}) or {}
        estimate = memory.estimate(
            trainer.model,
            quantization=quantization,
            dtype=dtype,
            questions=questions,
            training_overhead_gb=float(
                mem.get("training_overhead_gb", memory.PROPOSAL_TRAINING_OVERHEAD_GB)
            ),
            dataset_gb_override=mem.get("dataset_gb"),
        )
        n_images = int(sum(bool(images) for images in dataset["images"]))
        logger.info(
            "GRPO on %d questions (%d with images), %d completions per step; eq. (6) estimate "
            "%.3f GB",
            len(dataset),
            n_images,
            args.per_device_train_batch_size,
            estimate.total_gb,
        )
        started = time.perf_counter()
        with _quiet_deprecations():
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        wall = time.perf_counter() - started
        peak = memory.measured_peak(device)

    history = metrics_history(trainer.state.log_history)
    step_times = [p["value"] for p in history.get("step_time", [])]
    summary = {
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "questions": len(dataset),
        "image_questions": n_images,
        "completions_per_step": int(args.per_device_train_batch_size),
        "resumed_from_step": int(resume_from.name.split("-")[-1]) if resume_from else 0,
        "train_seconds": wall,
        "mean_step_time_s": sum(step_times) / len(step_times) if step_times else None,
        "train_loss": float(output.training_loss),
        "device": device,
        "quantized": bool((quantization or {}).get("enabled", False)),
        "memory": {
            "eq6": estimate.to_dict(),
            "measured": {**peak, "rss_before_model_gb": rss_before_model},
        },
    }
    for key in ("reward", "kl", "loss"):
        if history.get(key):
            summary[f"final_{key}"] = history[key][-1]["value"]
    if not checkpoints.get("keep", False):
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return TrainingResult(
        model=trainer.model,
        history=history,
        summary=summary,
        params=trainer_params(args, lora),
    )


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


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The run's single figures as metrics: memory (eq. (6) terms, measured peak) and timings."""
    eq6 = summary["memory"]["eq6"]
    values = {
        "memory.eq6_total_gb": eq6["total_gb"],
        "memory.eq6_model_gb": eq6["model_gb"],
        "memory.eq6_adapter_gb": eq6["adapter_gb"],
        "memory.eq6_training_overhead_gb": eq6["training_overhead_gb"],
        "memory.eq6_dataset_gb": eq6["dataset_gb"],
        **{f"memory.{k}": v for k, v in summary["memory"]["measured"].items()},
        "train_seconds": summary["train_seconds"],
        "mean_step_time_s": summary["mean_step_time_s"],
        "steps": summary["steps"],
    }
    return {k: {"step": 0, "value": float(v)} for k, v in values.items() if v is not None}
