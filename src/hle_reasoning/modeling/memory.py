"""Training memory: the proposal's eq. (6) estimate from the actual model, and the measured peak.

Eq. (6): M_total = P x B/8 + A + T + D (GB, 10^9 bytes), with P the base model's parameters, B the
bits per weight, A the LoRA adapter, T the training overhead and D the dataset. The proposal's
numbers: 11e9 x 0.5 + 0.008 + 1.5 + 0.16 = 7.168 GB. Here P and A are counted on the loaded
model, B is the quantization's bits (the dtype's without quantization), D is the training
questions' bytes (text and images) unless configured, and T is the proposal's 1.5 GB unless
configured.

Eq. (6)'s model term P x B/8 assumes every weight in B bits. The loader does not: transformers'
bitsandbytes integration quantizes only ``nn.Linear`` layers and skips the output embedding
(``lm_head``), so the embeddings, the vision tower's patch and position embeddings, the norms and
the biases stay in the compute dtype, and bitsandbytes stores an absmax per 64-weight block
(fp32; with double quantization an 8-bit absmax plus a second-level fp32 absmax per 256 blocks).
``resident_weights`` counts those bytes on the meta device (no weights, any model), by running
transformers' own bitsandbytes quantizer on the empty model; ``resident_estimate`` puts them in
eq. (6)'s place of P x B/8. For Llama-3.2-11B-Vision-Instruct: 10.67e9 parameters, 1.13e9 left
unquantized (2.26 GB in bf16), 9.54e9 quantized (4.77 GB packed + 0.60 GB absmax): 7.62 GB of
resident weights against eq. (6)'s 5.34 GB.

The measured peak is CUDA's peak allocated (and reserved) memory on a GPU; on a CPU it is the
process's peak resident set size, which also holds Python, the libraries and the reward model, so
it is not comparable to eq. (6) for a tiny model.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from hle_reasoning.config.model import QuantizationConfig

GB = 1e9
PROPOSAL_TRAINING_OVERHEAD_GB = 1.5


@dataclass(frozen=True)
class MemoryEstimate:
    """The terms of eq. (6), in GB, and what they were computed from."""

    parameters: int
    bits: int
    model_gb: float
    adapter_parameters: int
    adapter_gb: float
    training_overhead_gb: float
    dataset_gb: float

    @property
    def total_gb(self) -> float:
        return self.model_gb + self.adapter_gb + self.training_overhead_gb + self.dataset_gb

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_gb": self.total_gb}


def eq6(
    parameters: int,
    bits: int,
    adapter_bytes: int,
    training_overhead_gb: float = PROPOSAL_TRAINING_OVERHEAD_GB,
    dataset_gb: float = 0.0,
    adapter_parameters: int = 0,
) -> MemoryEstimate:
    """Eq. (6) from its terms: P x B/8 + A + T + D (GB)."""
    return MemoryEstimate(
        parameters=int(parameters),
        bits=int(bits),
        model_gb=parameters * bits / 8 / GB,
        adapter_parameters=int(adapter_parameters),
        adapter_gb=adapter_bytes / GB,
        training_overhead_gb=float(training_overhead_gb),
        dataset_gb=float(dataset_gb),
    )


def base_parameter_count(model: torch.nn.Module) -> int:
    """Parameters of the base model, LoRA excluded, 4-bit weights counted unpacked."""
    total = 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            continue
        # bitsandbytes packs 4-bit weights into a flat uint8 tensor; quant_state keeps the shape.
        quant_state = getattr(param, "quant_state", None)
        total += torch.Size(quant_state.shape).numel() if quant_state is not None else param.numel()
    return total


def adapter_size(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters, bytes) of the trainable (LoRA) parameters as they are stored."""
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


def weight_bits(quantization: QuantizationConfig | None, dtype: str) -> int:
    """B of eq. (6): the quantization's bits, else the bits of the weights' dtype."""
    if quantization is not None and quantization.enabled:
        return quantization.bits
    return {"float32": 32, "bfloat16": 16, "float16": 16}[dtype]


def dataset_gb(questions: pd.DataFrame) -> float:
    """D of eq. (6) for the training questions: question and answer text plus decoded images."""
    total = 0
    for column in ("question", "answer"):
        if column in questions:
            total += sum(len(str(v).encode()) for v in questions[column])
    for uri in questions.get("image", []):
        # Images are base64 data URIs; count the decoded bytes.
        if isinstance(uri, str) and uri.startswith("data:") and "," in uri:
            payload = uri.split(",", 1)[1].strip()
            total += len(payload) * 3 // 4 - payload[-2:].count("=")
    return total / GB


def estimate(
    model: torch.nn.Module,
    *,
    quantization: QuantizationConfig | None,
    dtype: str,
    questions: pd.DataFrame,
    training_overhead_gb: float = PROPOSAL_TRAINING_OVERHEAD_GB,
    dataset_gb_override: float | None = None,
) -> MemoryEstimate:
    """Eq. (6) for ``model`` (a PEFT-wrapped model, adapter included) trained on ``questions``."""
    n_adapter, adapter_bytes = adapter_size(model)
    return eq6(
        parameters=base_parameter_count(model),
        bits=weight_bits(quantization, dtype),
        adapter_bytes=adapter_bytes,
        training_overhead_gb=training_overhead_gb,
        dataset_gb=dataset_gb(questions) if dataset_gb_override is None else dataset_gb_override,
        adapter_parameters=n_adapter,
    )


@dataclass(frozen=True)
class ResidentWeights:
    """The bytes a model's weights occupy once loaded as configured, counted on the meta device."""

    parameters: int
    quantized_parameters: int
    unquantized_parameters: int
    quantized_modules: int
    # transformers' bitsandbytes skip list for this model (modules_to_not_convert)
    skipped_modules: tuple[str, ...]
    packed_bytes: int  # the 4-bit weights, two per byte
    absmax_bytes: int  # the quantization statistics: absmax per block (double quant: nested)
    unquantized_bytes: int  # everything the quantizer leaves, in its loaded dtype
    buffer_bytes: int  # persistent and non-persistent buffers (rotary frequencies, ...)

    @property
    def total_bytes(self) -> int:
        return self.packed_bytes + self.absmax_bytes + self.unquantized_bytes + self.buffer_bytes

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "skipped_modules": list(self.skipped_modules),
            "packed_gb": self.packed_bytes / GB,
            "absmax_gb": self.absmax_bytes / GB,
            "unquantized_gb": self.unquantized_bytes / GB,
            "total_gb": self.total_gb,
        }


# bitsandbytes' defaults: 4-bit blocks of 64 weights with an fp32 absmax each; double quantization
# quantizes those absmax to 8 bits in blocks of 256 (quantize_blockwise), with an fp32 absmax per
# block, one fp32 offset and the 256-entry fp32 dynamic map per layer.
NESTED_BLOCKSIZE = 256
NESTED_CODE_ENTRIES = 256


def meta_model(config: Any, model_class: Any) -> torch.nn.Module:
    """``model_class`` built from ``config`` on the meta device: the architecture, no weights."""
    with torch.device("meta"):
        if hasattr(model_class, "from_config"):  # the transformers auto classes
            return model_class.from_config(config)
        return model_class(config)


def _blocks(n: int, blocksize: int) -> int:
    return -(-n // blocksize)


def _loaded_dtype(name: str, dtype: torch.dtype, keep_fp32: set[str], keep_fp32_strict: set[str]):
    """The dtype transformers loads a parameter in: ``dtype``, or fp32 for the model's
    ``_keep_in_fp32_modules`` (under fp16) and ``_keep_in_fp32_modules_strict`` (fp16/bf16)."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    half = dtype in (torch.float16, torch.bfloat16)
    if half and keep_fp32_strict and not should_convert_module(name, list(keep_fp32_strict)):
        return torch.float32
    if dtype == torch.float16 and keep_fp32 and not should_convert_module(name, list(keep_fp32)):
        return torch.float32
    return dtype


def resident_weights(
    model: torch.nn.Module, *, quantization: QuantizationConfig | None, dtype: str
) -> ResidentWeights:
    """The resident bytes of ``model`` (built on the meta device, modified in place) once loaded
    as ``load_model`` loads it: transformers' bitsandbytes quantizer replaces the linear layers
    it converts, and every other parameter is counted in the dtype it is loaded in."""
    from hle_reasoning.modeling.models import quantization_config, torch_dtype

    bnb_config = quantization_config(quantization)
    skipped: list[str] = []
    if bnb_config is not None:
        from transformers.quantizers import AutoHfQuantizer

        quantizer = AutoHfQuantizer.from_config(bnb_config, pre_quantized=False)
        quantizer.preprocess_model(
            model, device_map={"": "cpu"}, dtype=bnb_config.bnb_4bit_compute_dtype
        )
        skipped = sorted(quantizer.modules_to_not_convert)
        loaded = bnb_config.bnb_4bit_compute_dtype
    else:
        loaded = torch_dtype(dtype)
    keep_fp32 = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    keep_strict = set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())

    quantized = unquantized = n_modules = packed = absmax = unquantized_bytes = 0
    for module_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        is_4bit = type(weight).__name__ == "Params4bit"
        for param_name, param in module.named_parameters(recurse=False):
            if is_4bit and param is weight:
                n = param.numel()
                n_modules += 1
                quantized += n
                packed += _blocks(n, 2)
                blocks = _blocks(n, weight.blocksize)
                if weight.compress_statistics:
                    nested = _blocks(blocks, NESTED_BLOCKSIZE)
                    absmax += blocks + 4 * nested + 4 + 4 * NESTED_CODE_ENTRIES
                else:
                    absmax += 4 * blocks
                continue
            full = f"{module_name}.{param_name}" if module_name else param_name
            unquantized += param.numel()
            unquantized_bytes += (
                param.numel() * _loaded_dtype(full, loaded, keep_fp32, keep_strict).itemsize
            )
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    return ResidentWeights(
        parameters=quantized + unquantized,
        quantized_parameters=quantized,
        unquantized_parameters=unquantized,
        quantized_modules=n_modules,
        skipped_modules=tuple(skipped),
        packed_bytes=packed,
        absmax_bytes=absmax,
        unquantized_bytes=unquantized_bytes,
        buffer_bytes=buffer_bytes,
    )


def resident_weights_of(
    config: Any, model_class: Any, *, quantization: QuantizationConfig | None, dtype: str
) -> ResidentWeights:
    """``resident_weights`` of the architecture ``config`` describes, built on the meta device."""
    return resident_weights(meta_model(config, model_class), quantization=quantization, dtype=dtype)


def loaded_weight_bytes(model: torch.nn.Module) -> dict[str, int]:
    """The bytes a loaded model really holds: its parameters and buffers as stored (4-bit weights
    packed), and bitsandbytes' quantization statistics (absmax, nested absmax and offset, the
    nested map) kept beside each 4-bit weight; what ``resident_weights`` predicts."""
    tensors = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        tensors += tensor.numel() * tensor.element_size()
    statistics = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is None:
            continue
        statistics += state.absmax.numel() * state.absmax.element_size()
        if state.nested:
            statistics += state.offset.numel() * state.offset.element_size()
            for t in (state.state2.absmax, state.state2.code):
                statistics += t.numel() * t.element_size()
    return {"tensor_bytes": tensors, "absmax_bytes": statistics}


def resident_estimate(
    resident: ResidentWeights,
    *,
    adapter_bytes: int,
    adapter_parameters: int = 0,
    training_overhead_gb: float = PROPOSAL_TRAINING_OVERHEAD_GB,
    dataset_gb: float = 0.0,
) -> MemoryEstimate:
    """Eq. (6) with the resident weights in place of P x B/8: what the loaded model really holds,
    plus the adapter, the training overhead and the data."""
    return MemoryEstimate(
        parameters=resident.parameters,
        bits=0,  # not one bit width: the model term is counted, not P x B/8
        model_gb=resident.total_gb,
        adapter_parameters=int(adapter_parameters),
        adapter_gb=adapter_bytes / GB,
        training_overhead_gb=float(training_overhead_gb),
        dataset_gb=float(dataset_gb),
    )


def with_resident_weights(estimate: MemoryEstimate, resident: ResidentWeights) -> MemoryEstimate:
    """``estimate`` (eq. (6)) with the resident weights in place of its model term P x B/8."""
    return resident_estimate(
        resident,
        adapter_bytes=round(estimate.adapter_gb * GB),
        adapter_parameters=estimate.adapter_parameters,
        training_overhead_gb=estimate.training_overhead_gb,
        dataset_gb=estimate.dataset_gb,
    )


def reset_peak(device: str) -> None:
    """Start measuring the CUDA peak afresh (the CPU peak RSS cannot be reset)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_rss_gb() -> float:
    """The process's peak resident set size so far, in GB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / GB if sys.platform == "darwin" else rss * 1024 / GB


def current_rss_gb() -> float:
    """The process's resident set size now, in GB."""
    import psutil

    return psutil.Process().memory_info().rss / GB


def measured_peak(device: str) -> dict[str, float]:
    """The measured peak memory: CUDA allocated and reserved on a GPU, peak RSS on a CPU."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return {
            "peak_cuda_allocated_gb": torch.cuda.max_memory_allocated() / GB,
            "peak_cuda_reserved_gb": torch.cuda.max_memory_reserved() / GB,
            "peak_rss_gb": peak_rss_gb(),
        }
    return {"peak_rss_gb": peak_rss_gb()}
