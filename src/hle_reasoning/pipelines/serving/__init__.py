"""serving: the fine-tuned model as a normal checkpoint for a serving engine."""

from hle_reasoning.pipelines.serving.pipeline import create_pipeline

__all__ = ["create_pipeline"]
