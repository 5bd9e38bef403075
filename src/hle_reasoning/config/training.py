"""The ``training`` block (conf/base/parameters_training.yml): QLoRA + GRPO as the proposal sets it.

``LoraSettings`` and ``GRPOSettings`` are the YAML blocks; ``hle_reasoning.modeling.trl_mapping``
turns them into PEFT's ``LoraConfig`` and TRL's ``GRPOConfig`` (the GRPO keys that are TRL's go
to it as written). ``rewards`` maps the names of ``hle.judge.rewards.REWARDS`` to weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from hle_reasoning.config.parsing import (
    CROSS_CHECK,
    UNKNOWN_KEY,
    Block,
    ConfigError,
    at_least,
    check,
    parse,
)
from hle_reasoning.hle.data.prompts import SystemRole

TruncationSide = Literal["left", "right"]
LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"]
ScaleRewards = Literal["group", "batch", "none"]
BatchSizeUnit = Literal["prompts", "completions"]
Resume = Literal["auto", True, False]

_INT1 = at_least(1, "an integer")
_POSITIVE = check(lambda v: v > 0, "set it to a number > 0")


class PromptConfig(Block):
    """How prompts are rendered and capped before generation."""

    PATH: ClassVar[str] = "training.prompt"
    max_prompt_tokens: Annotated[int | None, _INT1] = Field(
        32, description="the prompt cap in tokens (the proposal: 32; null: no cap)"
    )
    truncation_side: TruncationSide = Field(
        "left", description="left keeps the prompt's end (question, image, header), right its start"
    )
    system_role: SystemRole = Field(
        "auto", description="auto: a system message, or the user turn for image questions"
    )


class LoraSettings(Block):
    """The proposal's LoRA: rank, alpha, dropout and the projections it adapts."""

    PATH: ClassVar[str] = "training.lora"
    r: Annotated[int, _INT1] = Field(4, description="PEFT's LoraConfig.r (the proposal: 4)")
    alpha: Annotated[float, _POSITIVE] = Field(
        32.0, description="PEFT's lora_alpha (the proposal: 32)"
    )
    dropout: Annotated[float, check(lambda v: 0 <= v < 1, "set it in [0, 1)")] = Field(
        0.05, description="PEFT's lora_dropout (the proposal: 5%)"
    )
    target_modules: Annotated[
        tuple[str, ...],
        check(
            lambda v: bool(v) and all(v),
            "list module names (the proposal: [q_proj, v_proj])",
        ),
    ] = ("q_proj", "v_proj")
    language_model_only: bool = True


class GRPOSettings(Block):
    """GRPO's hyperparameters; every one is set explicitly (TRL's defaults differ).

    Every key but ``PROJECT_KEYS`` is a field of TRL's ``GRPOConfig`` with TRL's name and
    meaning, declared here once (type, check, default, help) and handed to TRL as written
    (``trl_settings``); ``batch_size`` and ``batch_size_unit`` are the project's (how the
    proposal counts its batch), turned into TRL's ``per_device_train_batch_size``.
    """

    PATH: ClassVar[str] = "training.grpo"
    PROJECT_KEYS: ClassVar[frozenset[str]] = frozenset({"batch_size", "batch_size_unit"})

    num_generations: Annotated[
        int,
        check(
            lambda v: v >= 2,
            "GRPO compares each completion with the others of its prompt, so it needs at least 2 "
            "(the proposal: 2)",
        ),
    ] = Field(2, description="completions per prompt (the proposal: two)")
    temperature: Annotated[float, _POSITIVE] = Field(0.7, description="sampling temperature")
    max_completion_length: Annotated[int, _INT1] = Field(
        32, description="tokens per completion (the proposal: 32)"
    )
    beta: Annotated[float, at_least(0.0)] = Field(0.1, description="the KL penalty")
    num_train_epochs: Annotated[float, _POSITIVE] = Field(
        2.0, description="epochs over the focus training questions (max_steps may stop sooner)"
    )
    batch_size: Annotated[int, _INT1] = Field(
        2, description="the project's: the proposal's batch size, counted in batch_size_unit"
    )
    batch_size_unit: BatchSizeUnit = Field(
        "prompts",
        description="the project's: prompts (batch_size questions x num_generations "
        "completions per step) or completions (TRL's per_device_train_batch_size)",
    )
    learning_rate: Annotated[float, _POSITIVE] = Field(1e-4, description="the optimizer's rate")
    loss_type: LossType = Field("grpo", description="DeepSeekMath's GRPO loss by default")
    scale_rewards: ScaleRewards = Field("group", description="how advantages are scaled")
    gradient_accumulation_steps: Annotated[int, _INT1] = Field(
        1, description="micro-batches a step"
    )
    num_iterations: Annotated[int, _INT1] = Field(
        1, description="policy updates per generation batch (on-policy: 1)"
    )
    epsilon: Annotated[float, at_least(0.0)] = Field(0.2, description="PPO clipping")
    top_p: Annotated[float, check(lambda v: 0 < v <= 1, "set it in (0, 1]")] = Field(
        1.0, description="nucleus sampling"
    )
    top_k: Annotated[int, at_least(0, "an integer")] = Field(0, description="0: no top-k")
    lr_scheduler_type: str = Field("linear", description="transformers' scheduler name")
    warmup_steps: Annotated[int, at_least(0, "an integer")] = Field(0, description="LR warm-up")
    weight_decay: Annotated[float, at_least(0.0)] = Field(0.0, description="AdamW's decay")
    max_grad_norm: Annotated[float, at_least(0.0)] = Field(1.0, description="gradient clipping")
    optim: str = Field("adamw_torch", description="transformers' optimizer name")
    bf16: bool = Field(True, description="bf16 autocast (the proposal's compute)")
    gradient_checkpointing: bool = Field(False, description="recompute activations")
    seed: int = Field(42, description="the trainer's seed")

    def trl_settings(self) -> dict[str, Any]:
        """The keys that are TRL's, as ``GRPOConfig`` takes them (every key but
        ``PROJECT_KEYS``)."""
        return self.model_dump(exclude=set(self.PROJECT_KEYS))

    @property
    def completions_per_step(self) -> int:
        """TRL's ``per_device_train_batch_size``: completions in one micro-batch.

        The proposal's "batch size 2" counts prompts by default (``batch_size_unit: prompts``),
        so a step sees 2 questions x ``num_generations`` completions; ``completions`` uses it as
        TRL's completion count directly.
        """
        if self.batch_size_unit == "prompts":
            return self.batch_size * self.num_generations
        return self.batch_size

    @property
    def prompts_per_step(self) -> int:
        """Training questions one optimizer step draws (TRL builds no step from fewer)."""
        return max(
            1, self.completions_per_step * self.gradient_accumulation_steps // self.num_generations
        )

    def cross_checks(self) -> list[str]:
        per_step = self.completions_per_step
        if (per_step * self.gradient_accumulation_steps) % self.num_generations:
            n = self.num_generations
            return [
                f"training.grpo.batch_size {self.batch_size} ({self.batch_size_unit}) gives "
                f"{per_step} completions per step (x {self.gradient_accumulation_steps} "
                f"accumulation steps), which num_generations {n} does not divide: every prompt's "
                f"{n} completions must land in the same generation batch. Use a batch_size that "
                f"is a multiple of {n}, or batch_size_unit: prompts."
            ]
        return []


def _known_rewards(weights: dict[str, float | None]) -> dict[str, float | None]:
    """Every name a reward of ``hle_reasoning.hle.judge.rewards.REWARDS`` (the registry), and one
    weight at least not zero."""
    from hle_reasoning.hle.judge.rewards import REWARDS

    for name in weights:
        if name not in REWARDS:
            raise PydanticCustomError(
                UNKNOWN_KEY, "unknown reward", {"key": name, "known": list(REWARDS)}
            )
    if not any(weights.values()):
        problem = (
            "training.rewards gives no reward a non-zero weight, so nothing would be learned; "
            "set e.g. cosine: 1.0 (the proposal's reward)."
        )
        raise PydanticCustomError(CROSS_CHECK, "{text}", {"text": problem, "problems": [problem]})
    return weights


# Reward weights by reward name (``hle.judge.rewards.REWARDS``), summed before the group
# normalisation; 0 computes and logs a reward without training on it, a name left out (or
# null) is not computed. A new reward is a line of the registry and a line of conf/.
RewardWeights = Annotated[dict[str, float | None], AfterValidator(_known_rewards)]


class CheckpointsConfig(Block):
    """Where checkpoints go, how often, and whether an interrupted run resumes."""

    PATH: ClassVar[str] = "training.checkpoints"
    dir: str = "data/06_models/grpo_checkpoints"
    save_steps: Annotated[int, _INT1] = 5
    save_total_limit: Annotated[int | None, _INT1] = 2
    resume: Resume = "auto"
    keep: bool = False


class MemoryConfig(Block):
    """Eq. (6)'s fixed terms: M = P x B/8 + A + T + D."""

    PATH: ClassVar[str] = "training.memory"
    training_overhead_gb: Annotated[float, at_least(0.0)] = 1.5
    dataset_gb: Annotated[float | None, at_least(0.0)] = None


class CompletionsConfig(Block):
    """The completions table (MLflow ``training/completions.json`` and
    data/08_reporting/training_completions.jsonl) and the no-signal warning."""

    PATH: ClassVar[str] = "training.completions"
    rows_per_step: Annotated[int | None, _INT1] = None
    prompt_chars: Annotated[int, _INT1] = 160
    warn_no_signal_share: Annotated[
        float,
        check(lambda v: 0 <= v <= 1, "set it in [0, 1]"),
    ] = 0.5
    warn_after_steps: Annotated[int, _INT1] = 2


class TrainingConfig(Block):
    """The whole ``training`` block."""

    PATH: ClassVar[str] = "training"
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    rewards: RewardWeights = Field(
        default_factory=lambda: {"cosine": 1.0, "correctness": 0.0, "format": 0.0}
    )
    embedding_model: str = "all-MiniLM-L6-v2"
    checkpoints: CheckpointsConfig = Field(default_factory=CheckpointsConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    completions: CompletionsConfig = Field(default_factory=CompletionsConfig)
    max_steps: Annotated[int | None, _INT1] = 8
    cpu_threads: Annotated[int | None, _INT1] = 1

    @property
    def reward_weights(self) -> dict[str, float]:
        """The rewards to compute, by name (``null`` weights left out)."""
        return {k: v for k, v in self.rewards.items() if v is not None}

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> TrainingConfig:
        """The block parsed from a mapping, or ``TrainingConfigError`` listing every problem."""
        block, problems = parse(cls, params, cls.PATH)
        if problems or block is None:
            raise TrainingConfigError(problems)
        return block


class TrainingConfigError(ConfigError):
    """A training configuration that cannot work; the message lists what to change."""

    HEADER = (
        "The training configuration cannot work; nothing was loaded or trained. Change these "
        "parameters (conf/base/parameters_training.yml, or --params training....=...):"
    )

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, header=self.HEADER)
