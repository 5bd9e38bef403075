"""Tiny models of the non-Mllama families, built from config offline and saved like a checkpoint:
a Llama causal LM (text-only) and a Qwen2-VL (TRL's native vision path), both with the project's
bundled tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from hle_reasoning.modeling.models import load_tokenizer

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


def qwen2_vl_processor_problem() -> str | None:
    """Why Qwen2-VL's processor cannot be built here (None when it can): transformers builds it
    with a video processor, which needs torchvision."""
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return None
    return "Qwen2-VL's processor needs torchvision, which is not installed"


def save_tiny_qwen2_vl(path: Path, seed: int = 0) -> Path:
    """The tiny Qwen2-VL, and its processor where torchvision is installed."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

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
    config = Qwen2VLConfig(
        text_config={
            **TEXT_SIZES,
            "vocab_size": len(tokenizer),
            # Multimodal RoPE: temporal, height and width sections of head_dim / 2 = 8.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]},
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
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
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if qwen2_vl_processor_problem() is None:
        from transformers import Qwen2VLProcessor
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )

        # 56 x 56 pixels at most: 4 patches of 14, merged 2 x 2 into one image token.
        processor = Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56),
            tokenizer=tokenizer,
            chat_template=QWEN_CHAT_TEMPLATE,
        )
        processor.save_pretrained(path)
    return path
