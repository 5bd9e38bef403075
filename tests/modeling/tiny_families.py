"""Tiny models of the non-Mllama families, built from config offline and saved like a checkpoint:
a Llama causal LM (text-only) and a Qwen2-VL / Qwen2.5-VL (TRL's native vision path), all with the
project's bundled tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from hle_reasoning.modeling.models import load_tokenizer, without_video_processor

# Llama 3's turn markup with plain-string contents (what text-only models' templates take).
TEXT_CHAT_TEMPLATE = (
    "{{- bos_token }}{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim }}"
    "{{- '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)
# Qwen2-VL's markup: an image part becomes <|vision_start|><|image_pad|><|vision_end|>.
QWEN_CHAT_TEMPLATE = (
    "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' }}"
    "{%- if m['content'] is string %}{{- m['content'] }}{%- else %}"
    "{%- for part in m['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TEXT_SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)


def save_tiny_causal_lm(path: Path, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer("tiny")
    tokenizer.chat_template = TEXT_CHAT_TEMPLATE
    config = LlamaConfig(
        **TEXT_SIZES,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|eot_id|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# The vision towers of the two Qwen generations: one block, patches of 14 merged 2 x 2.
QWEN_VISION = {
    "qwen2_vl": {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2},
    "qwen2_5_vl": {
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "window_size": 56,
        "fullatt_block_indexes": [0],
    },
}


def save_tiny_qwen_vl(path: Path, model_type: str = "qwen2_vl", seed: int = 0) -> Path:
    """A tiny Qwen2-VL (``qwen2_vl``) or Qwen2.5-VL (``qwen2_5_vl``) and its processor (PIL
    image processor; without torchvision, no video processor, as the project's loader does)."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )
    from transformers.utils import is_torchvision_available

    tokenizer = load_tokenizer("tiny")
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": [
                "<|vision_start|>",
                "<|vision_end|>",
                "<|image_pad|>",
                "<|video_pad|>",
                "<|im_start|>",
                "<|im_end|>",
            ]
        }
    )
    ids = tokenizer.convert_tokens_to_ids
    config = AutoConfig.for_model(
        model_type,
        text_config={
            **TEXT_SIZES,
            "vocab_size": len(tokenizer),
            # Multimodal RoPE: temporal, height and width sections of head_dim / 2 = 8.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]},
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            **QWEN_VISION[model_type],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    # 56 x 56 pixels at most: 4 patches of 14, merged 2 x 2 into one image token.
    parts = {
        "image_processor": Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56),
        "tokenizer": tokenizer,
        "chat_template": QWEN_CHAT_TEMPLATE,
    }
    processor_class = getattr(transformers, PROCESSOR_MAPPING_NAMES[model_type])
    if is_torchvision_available():
        from transformers import Qwen2VLVideoProcessor

        processor = processor_class(**parts, video_processor=Qwen2VLVideoProcessor())
    else:
        processor = without_video_processor(processor_class)(**parts)
    processor.save_pretrained(path)
    return path
