"""Evaluation of the baseline and the fine-tuned model as the HLE paper does."""

from hle_reasoning.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
