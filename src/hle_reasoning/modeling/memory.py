"""Training memory: the proposal's eq. (6) estimate from the actual model, and the measured peak.

Eq. (6): M_total = P x B/8 + A + T + D (GB, 10^9 bytes), with P the base model's parameters, B the
bits per weight, A the LoRA adapter, T the training overhead and D the dataset. The proposal's
numbers: 11e9 x 0.5 + 0.008 + 1.5 + 0.16 = 7.168 GB. Here P and A are counted on the loaded
model, B is the quantization's bits (the dtype's without quantization), D is the training
questions' bytes (text and images) unless configured, and T is the proposal's 1.5 GB unless
configured.

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
