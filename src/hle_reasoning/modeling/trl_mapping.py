"""The ``training`` block mapped onto the libraries: PEFT's ``LoraConfig`` and TRL's ``GRPOConfig``.

Every hyperparameter the proposal names is passed explicitly (TRL 1.16's defaults differ on
almost all): the keys of ``training.grpo`` that are TRL's go to ``GRPOConfig`` as written
(``GRPOSettings.trl_settings``, no copy field by field); the project's own keys (the batch size
and its unit, the prompt cap) and the run's bookkeeping are set here. ``trainer_params`` records
what the libraries resolved beyond the YAML for MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hle_reasoning.config.training import LoraSettings, TrainingConfig
from hle_reasoning.hle.data.prompts import DEFAULT_CHAT_TEMPLATE_DATE
from hle_reasoning.modeling.families import FAMILIES, MLLAMA, Family
from hle_reasoning.modeling.grpo import MllamaGRPOConfig


def lora_config(lora: LoraSettings, family: Family | None = None):
    """The proposal's LoRA: r, alpha, dropout on the language model's query and value projections.

    ``language_model_only`` restricts ``target_modules`` to the ``family``'s language model with
    a regex (default: Mllama's text decoder); the plain names would also adapt a vision tower's
    projections of the same name.
    """
    from peft import LoraConfig

    modules = list(lora.target_modules)
    target: str | list[str] = modules
    if lora.language_model_only:
        target = (family or FAMILIES[MLLAMA]).lora_target(modules)
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target,
        bias="none",
    )


def grpo_config_kwargs(
    training: TrainingConfig,
    *,
    output_dir: str | Path,
    device: str,
    reward_weights: list[float],
    world_size: int = 1,
    chat_template_date: str = DEFAULT_CHAT_TEMPLATE_DATE,
) -> dict[str, Any]:
    """The keyword arguments of ``MllamaGRPOConfig`` (``max_prompt_tokens`` and
    ``truncation_side`` are this project's; the rest are ``trl.GRPOConfig``'s).

    The proposal's batch (``completions_per_step``) is the *global* batch of an optimizer step:
    on ``world_size`` > 1 processes (DDP) each takes ``completions_per_step / world_size``, so 1
    and N processes optimise the same objective. LoRA parameters that a process's batch does not
    reach (the cross-attention layers' when its prompt has no image) are allowed
    (``ddp_find_unused_parameters``), and buffers are not broadcast at every forward pass, so the
    no-grad log-prob passes make no collective call. TRL's image log (``log_multimodal``) is off:
    TRL gathers it only on processes whose batch has images, so a text-only process would wait
    in another collective (a deadlock).
    """
    grpo, prompt, checkpoints = training.grpo, training.prompt, training.checkpoints
    cpu = device == "cpu"
    ddp = (
        {
            "ddp_find_unused_parameters": True,
            "ddp_broadcast_buffers": False,
            "log_multimodal": False,
        }
        if world_size > 1
        else {}
    )
    return dict(
        **ddp,
        # training.grpo's keys that are TRL's, as written (their names and meanings are TRL's).
        **grpo.trl_settings(),
        # The project's batch keys, as TRL counts its batch: completions per process.
        per_device_train_batch_size=grpo.completions_per_step // max(1, world_size),
        output_dir=str(output_dir),
        # The prompt cap (training.prompt): MllamaGRPOConfig's, not TRL's.
        max_prompt_tokens=prompt.max_prompt_tokens,
        truncation_side=prompt.truncation_side,
        # The chat template's date (model.chat_template_date): prompts never depend on the day.
        chat_template_kwargs={"date_string": chat_template_date},
        reward_weights=reward_weights,
        max_steps=training.max_steps or -1,
        # Bookkeeping: log every step (the project records the history), checkpoints, and no
        # integration of TRL's own (the project's callback logs to the kedro run's MLflow run).
        use_cpu=cpu,
        dataloader_pin_memory=not cpu,
        logging_steps=1,
        save_strategy="steps",
        save_steps=checkpoints.save_steps,
        save_total_limit=checkpoints.save_total_limit,
        report_to=[],
        disable_tqdm=False,
        log_completions=False,
    )


def grpo_config(
    training: TrainingConfig,
    *,
    output_dir: str | Path,
    device: str,
    reward_weights: list[float],
    world_size: int = 1,
    chat_template_date: str = DEFAULT_CHAT_TEMPLATE_DATE,
) -> MllamaGRPOConfig:
    """TRL's config with every proposal hyperparameter set explicitly (TRL's defaults differ)."""
    return MllamaGRPOConfig(
        **grpo_config_kwargs(
            training,
            output_dir=output_dir,
            device=device,
            reward_weights=reward_weights,
            world_size=world_size,
            chat_template_date=chat_template_date,
        )
    )


# training.lora's keys under PEFT's names (LoraConfig's r, lora_alpha, lora_dropout).
_LORA_AS_PEFT = {"r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout"}


def trainer_params(args: MllamaGRPOConfig, lora: Any, training: TrainingConfig) -> dict[str, str]:
    """The trainer's and LoRA's resolved settings as MLflow params (``trl.*``, ``peft.*``), but
    those the ``training`` block sets: they are logged once, as ``training.grpo.*`` and
    ``training.lora.*`` (as written in the YAML)."""

    def flat(prefix: str, values: Mapping[str, Any], written: set[str]) -> dict[str, str]:
        out = {}
        for key, raw in values.items():
            if key in written:
                continue
            value = raw
            if hasattr(raw, "value") and not isinstance(raw, int | float | str):
                value = raw.value  # enums
            if isinstance(value, set | frozenset):
                value = sorted(value)
            out[f"{prefix}.{key}"] = str(value)
        return out

    lora_values = {k: v for k, v in lora.to_dict().items() if not k.startswith("_")}
    return {
        **flat("trl", args.to_dict(), set(training.grpo.trl_settings())),
        **flat("peft", lora_values, set(_LORA_AS_PEFT.values())),
    }
