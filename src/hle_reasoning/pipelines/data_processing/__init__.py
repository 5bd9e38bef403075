"""HLE statistics and the proposal's stratified train/test split."""

from hle_reasoning.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
