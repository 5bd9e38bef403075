"""The ``model`` block (conf/base/parameters.yml): which model, on which device, how quantized."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from hle_reasoning.config.parsing import Block, at_least, check
from hle_reasoning.hle.data.prompts import DEFAULT_CHAT_TEMPLATE_DATE, ImagePosition

TINY = "tiny"
Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass(frozen=True, kw_only=True)
class QuantizationConfig(Block):
    """bitsandbytes 4-bit NF4 (QLoRA's base); ``enabled: false`` loads unquantized."""

    PATH = "model.quantization"
    enabled: bool = True
    bits: int = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    compute_dtype: Dtype = "bfloat16"
    double_quant: bool = False
    # How the packed 4-bit weights are stored (bitsandbytes' bnb_4bit_quant_storage). uint8 is
    # bitsandbytes' default; FSDP (and DeepSpeed ZeRO-3) shard only floating-point tensors, so
    # FSDP-QLoRA stores them as the compute dtype (the preflight says so when it matters).
    quant_storage: Literal["uint8", "float32", "bfloat16", "float16"] = "uint8"

    def cross_checks(self) -> list[str]:
        if self.enabled and self.bits != 4:
            return ["model.quantization.bits must be 4 (QLoRA's NF4), or set enabled: false."]
        return []


@dataclass(frozen=True, kw_only=True)
class TinyVisionConfig(Block):
    """Sizes of the tiny model's vision tower (widths: multiples of 64 for bitsandbytes)."""

    PATH = "model.tiny.vision"
    hidden_size: int = field(default=64, metadata=at_least(1, "an integer"))
    intermediate_size: int = field(default=128, metadata=at_least(1, "an integer"))
    num_hidden_layers: int = field(default=2, metadata=at_least(1, "an integer"))
    num_global_layers: int = field(default=1, metadata=at_least(1, "an integer"))
    attention_heads: int = field(default=2, metadata=at_least(1, "an integer"))
    image_size: int = field(default=28, metadata=at_least(1, "an integer"))
    patch_size: int = field(default=14, metadata=at_least(1, "an integer"))
    max_num_tiles: int = field(default=2, metadata=at_least(1, "an integer"))


@dataclass(frozen=True, kw_only=True)
class TinyTextConfig(Block):
    """Sizes of the tiny model's text decoder."""

    PATH = "model.tiny.text"
    hidden_size: int = field(default=64, metadata=at_least(1, "an integer"))
    intermediate_size: int = field(default=128, metadata=at_least(1, "an integer"))
    num_hidden_layers: int = field(default=3, metadata=at_least(1, "an integer"))
    num_attention_heads: int = field(default=4, metadata=at_least(1, "an integer"))
    num_key_value_heads: int = field(default=2, metadata=at_least(1, "an integer"))
    cross_attention_layers: tuple[int, ...] = (1,)
    max_position_embeddings: int = field(default=2048, metadata=at_least(1, "an integer"))
    initializer_range: float = field(default=0.02, metadata=at_least(0.0))


@dataclass(frozen=True, kw_only=True)
class TinyConfig(Block):
    """The offline tiny Mllama built from config (``name_or_path: tiny``)."""

    PATH = "model.tiny"
    seed: int = 0
    vision: TinyVisionConfig = field(default_factory=TinyVisionConfig)
    text: TinyTextConfig = field(default_factory=TinyTextConfig)


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Block):
    """The study's model: ``tiny`` (offline), a hub id or a local ``save_pretrained`` directory."""

    PATH = "model"
    name_or_path: str = TINY
    device: str = field(
        default="auto",
        metadata=check(
            lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None,
            "use auto, cpu, cuda or cuda:N",
        ),
    )
    dtype: Dtype = "float32"
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    tiny: TinyConfig = field(default_factory=TinyConfig)
    # The chat template's "Today Date" (Llama 3.2's template writes today's date into text-only
    # prompts unless given one): pinned so that prompts, and stored answers, never depend on the
    # day of the run. The default is the released template's own fallback.
    chat_template_date: str = field(
        default=DEFAULT_CHAT_TEMPLATE_DATE,
        metadata=check(lambda v: bool(v.strip()), "set a date such as '26 Jul 2024'"),
    )
    # Where the image goes in the user turn: before the question text (cross-attention models:
    # Mllama's text attends only to images before it), after it (HLE's own request order), or
    # auto: before for cross-attention models, after for the others.
    image_position: ImagePosition = "auto"
    # Where packaged models (name_or_path: smollm2-135m-instruct) are converted, once, to a
    # normal checkpoint folder named after them.
    packaged_dir: str = "data/06_models"
