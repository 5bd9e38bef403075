"""serving: writes the base model with the LoRA adapter merged into its weights
(data/06_models/merged_model), for engines that serve the fine-tuned variant without LoRA
support (SGLang's Mllama). Runs only by name: ``kedro run --pipelines serving``."""

from __future__ import annotations

import json

from kedro.pipeline import Pipeline, node, pipeline

from hle_reasoning.config import ModelConfig
from hle_reasoning.modeling import engines
from hle_reasoning.modeling.generation import merge_adapter
from hle_reasoning.modeling.models import BuiltModel


def merge_lora_adapter(base_model: str, adapter: str, model_config: ModelConfig) -> BuiltModel:
    """The fine-tuned model as one checkpoint: base weights + the merged LoRA adapter, with the
    ``merged_from.json`` the engine path writes (so an engine run reuses it, not merges again)."""
    merged = merge_adapter(base_model, adapter, model_config)
    stamp = engines.merged_from(base_model, adapter, model_config.dtype)
    merged.files[engines.MERGED_FROM_FILE] = json.dumps(stamp, indent=2) + "\n"
    return merged


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                merge_lora_adapter,
                inputs=["base_model", "lora_adapter", "params:model"],
                outputs="merged_model",
                name="merge_lora_adapter_node",
            )
        ],
        tags="serving",
    )
