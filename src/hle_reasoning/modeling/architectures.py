"""Released architectures, from their published config values: built on the meta device they give
the real model's parameter counts, module names and memory without a download.

``LLAMA_32_11B_VISION`` is meta-llama/Llama-3.2-11B-Vision-Instruct's config.json (special token
ids come from the tokenizer). ``MllamaConfig()``'s defaults have the same shape except the vision
``image_size`` (448 there, 560 released).
"""

from __future__ import annotations

from typing import Any

LLAMA_32_11B_VISION: dict[str, Any] = {
    "text_config": {
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    "vision_config": {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_global_layers": 8,
        "attention_heads": 16,
        "image_size": 560,
        "patch_size": 14,
        "max_num_tiles": 4,
        "vision_output_dim": 7680,
        "intermediate_layers_indices": [3, 7, 15, 23, 30],
        "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]],
        "norm_eps": 1e-5,
        "num_channels": 3,
    },
    "image_token_index": 128256,
}


def llama_32_11b_vision_config():
    """The released ``MllamaConfig`` of Llama-3.2-11B-Vision-Instruct."""
    from transformers import MllamaConfig

    return MllamaConfig(
        text_config=dict(LLAMA_32_11B_VISION["text_config"]),
        vision_config=dict(LLAMA_32_11B_VISION["vision_config"]),
        image_token_index=LLAMA_32_11B_VISION["image_token_index"],
    )
