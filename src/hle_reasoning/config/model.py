"""The ``model`` block (conf/base/parameters.yml): which model, on which device, how quantized."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from hle_reasoning.config.parsing import Block, at_least, check
from hle_reasoning.hle.data.prompts import DEFAULT_CHAT_TEMPLATE_DATE, ImagePosition

TINY = "tiny"
Dtype = Literal["float32", "bfloat16", "float16"]


class QuantizationConfig(Block):
    """bitsandbytes 4-bit NF4 (QLoRA's base); ``enabled: false`` loads unquantized."""

    PATH: ClassVar[str] = "model.quantization"
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


class TinyVisionConfig(Block):
    """Sizes of the tiny model's vision tower (widths: multiples of 64 for bitsandbytes)."""

    PATH: ClassVar[str] = "model.tiny.vision"
    hidden_size: Annotated[int, at_least(1, "an integer")] = 64
    intermediate_size: Annotated[int, at_least(1, "an integer")] = 128
    num_hidden_layers: Annotated[int, at_least(1, "an integer")] = 2
    num_global_layers: Annotated[int, at_least(1, "an integer")] = 1
    attention_heads: Annotated[int, at_least(1, "an integer")] = 2
    image_size: Annotated[int, at_least(1, "an integer")] = 28
    patch_size: Annotated[int, at_least(1, "an integer")] = 14
    max_num_tiles: Annotated[int, at_least(1, "an integer")] = 2


class TinyTextConfig(Block):
    """Sizes of the tiny model's text decoder."""

    PATH: ClassVar[str] = "model.tiny.text"
    hidden_size: Annotated[int, at_least(1, "an integer")] = 64
    intermediate_size: Annotated[int, at_least(1, "an integer")] = 128
    num_hidden_layers: Annotated[int, at_least(1, "an integer")] = 3
    num_attention_heads: Annotated[int, at_least(1, "an integer")] = 4
    num_key_value_heads: Annotated[int, at_least(1, "an integer")] = 2
    cross_attention_layers: tuple[int, ...] = (1,)
    max_position_embeddings: Annotated[int, at_least(1, "an integer")] = 2048
    initializer_range: Annotated[float, at_least(0.0)] = 0.02


class TinyConfig(Block):
    """The offline tiny Mllama built from config (``name_or_path: tiny``)."""

    PATH: ClassVar[str] = "model.tiny"
    seed: int = 0
    vision: TinyVisionConfig = Field(default_factory=TinyVisionConfig)
    text: TinyTextConfig = Field(default_factory=TinyTextConfig)


class ModelConfig(Block):
    """The study's model: ``tiny`` (offline), a hub id or a local ``save_pretrained`` directory."""

    PATH: ClassVar[str] = "model"
    name_or_path: str = Field(
        TINY, description="tiny (offline), a hub id, a packaged model or a local directory"
    )
    device: Annotated[
        str,
        check(
            lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None,
            "use auto, cpu, cuda or cuda:N",
        ),
    ] = Field("auto", description="auto, cpu, cuda or cuda:N")
    dtype: Dtype = Field("float32", description="the weights' dtype when not quantized")
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    tiny: TinyConfig = Field(default_factory=TinyConfig)
    chat_template_date: Annotated[
        str,
        check(lambda v: bool(v.strip()), "set a date such as '26 Jul 2024'"),
    ] = Field(
        DEFAULT_CHAT_TEMPLATE_DATE,
        description="the chat template's 'Today Date' (Llama 3.2's template writes today's date "
        "into text-only prompts unless given one): pinned so that prompts, and stored answers, "
        "never depend on the day of the run; the default is the released template's fallback",
    )
    image_position: ImagePosition = Field(
        "auto",
        description="where the image goes in the user turn: before the question text "
        "(cross-attention models: Mllama's text attends only to images before it), after it "
        "(HLE's own request order), or auto: before for cross-attention models, after for others",
    )
    packaged_dir: str = Field(
        "data/06_models",
        description="where packaged models (name_or_path: smollm2-135m-instruct) are converted, "
        "once, to a normal checkpoint folder named after them",
    )
