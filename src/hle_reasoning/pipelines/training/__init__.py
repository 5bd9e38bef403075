"""training: QLoRA + GRPO fine-tuning of the study's model on the focus categories' train split."""

from hle_reasoning.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
