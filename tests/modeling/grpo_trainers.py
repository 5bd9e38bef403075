"""The study's GRPO trainer with what the distributed tests need fixed or slowed (imported by the
training workers of :mod:`tests.modeling.distributed_workers` when they train)."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from hle_reasoning.modeling.grpo import MllamaGRPOTrainer


class FixedCompletionsTrainer(MllamaGRPOTrainer):
    """The study's trainer with the completions fixed: the gradient check needs the same
    completions in every setting, and sampling depends on how the RNG is consumed. A prompt's
    first completion follows the answer format, its second does not (different rewards, so the
    advantages are not zero)."""

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        tokenizer = self.processing_class.tokenizer
        good = tokenizer.encode("Answer: 4\nConfidence: 50%", add_special_tokens=False)
        bad = tokenizer.encode("I would rather not say", add_special_tokens=False)
        return [list(good if row % 2 == 0 else bad) for row in range(len(prompt_ids))], None


class GradientCapture(TrainerCallback):
    """The trainable parameters' gradients just before the first optimizer step (after DDP's
    all-reduce), as float64 numpy arrays by name."""

    def __init__(self) -> None:
        self.gradients: dict | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.gradients is None:
            self.gradients = {
                name: param.grad.detach().double().cpu().numpy()
                for name, param in model.named_parameters()
                if param.requires_grad and param.grad is not None
            }


class SlowRankOneRngTrainer(MllamaGRPOTrainer):
    """The study's trainer with rank 1 a second late to save its RNG state in each checkpoint
    (a busy or dying process): rank 0 must not mark the checkpoint complete before it."""

    def _save_rng_state(self, output_dir: str) -> None:
        if self.args.process_index == 1:
            time.sleep(1.0)
        super()._save_rng_state(output_dir)
