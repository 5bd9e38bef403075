"""Eq. (6) of the proposal, computed from actual models, and the measured peak."""

from __future__ import annotations

import base64

import pandas as pd
import pytest
import torch

from hle_reasoning.config import LoraSettings, QuantizationConfig
from hle_reasoning.modeling import memory
from hle_reasoning.modeling.models import load_model
from hle_reasoning.modeling.trl_mapping import lora_config

PROPOSAL_LORA = LoraSettings(r=4, alpha=32, dropout=0.05, target_modules=("q_proj", "v_proj"))
NF4 = QuantizationConfig(enabled=True, bits=4)


def mllama_parameter_count(config) -> int:
    """Parameters of MllamaForConditionalGeneration derived from its config's shapes, module by
    module (Llama 3.2 Vision: a ViT-H/14 with a gated global encoder, a Llama 3.1 decoder with
    gated cross-attention layers, and a linear projector between them)."""
    t, v = config.text_config, config.vision_config
    h, inter = t.hidden_size, t.intermediate_size
    head = h // t.num_attention_heads
    q_o = 2 * h * t.num_attention_heads * head
    k_v = 2 * h * t.num_key_value_heads * head
    mlp = 3 * h * inter  # gate, up, down; no biases
    norms = 2 * h  # input and post-attention RMSNorm
    self_layer = q_o + k_v + mlp + norms
    cross_layer = self_layer + 2 * head + 2  # + q_norm, k_norm, the attention and MLP gates
    n_cross = len(t.cross_attention_layers)
    text = (
        (t.vocab_size + 8) * h  # the embedding holds 8 extra (image) rows
        + (t.num_hidden_layers - n_cross) * self_layer
        + n_cross * cross_layer
        + h  # final norm
        + h * t.vocab_size  # lm_head (untied)
    )
    d = v.hidden_size
    patches = (v.image_size // v.patch_size) ** 2 + 1  # + the class token
    aspect_ratios = v.max_aspect_ratio_id + 1
    encoder_layer = 4 * d * d + 2 * d * v.intermediate_size + v.intermediate_size + d + 4 * d
    vision = (
        v.num_channels * d * v.patch_size**2  # patch embedding (no bias)
        + d  # class embedding
        + patches * d
        + 1
        + aspect_ratios * v.max_num_tiles * patches * d  # gated positions
        + 2 * (aspect_ratios * v.max_num_tiles * d + 1)  # pre/post tile positions + gates
        + 2 * 2 * d  # layernorm_pre, layernorm_post (weight and bias)
        + v.num_hidden_layers * encoder_layer
        + v.num_global_layers * (encoder_layer + 2)  # + attention and MLP gates
    )
    projector = v.vision_output_dim * h + h
    return text + vision + projector


def test_eq6_with_the_proposals_terms_is_7_168_gb():
    estimate = memory.eq6(11e9, 4, adapter_bytes=0.008e9, training_overhead_gb=1.5, dataset_gb=0.16)
    assert estimate.model_gb == pytest.approx(5.5)
    assert estimate.total_gb == pytest.approx(7.168)


def test_eq6_for_the_real_11b_architecture_counted_on_the_meta_device():
    """P and A of Llama-3.2-11B-Vision with the proposal's LoRA, without any weights."""
    from peft import get_peft_model
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    with torch.device("meta"):
        model = MllamaForConditionalGeneration(MllamaConfig())
    peft_model = get_peft_model(model, lora_config(PROPOSAL_LORA))
    n_adapter, adapter_bytes = memory.adapter_size(peft_model)
    # P derived from the architecture's shapes, then counted on the instantiated model.
    derived = mllama_parameter_count(MllamaConfig())
    assert derived == 10_642_941_475
    assert memory.base_parameter_count(peft_model) == derived
    # r 4 on the text decoder's q and v (40 layers incl. 8 cross-attention): 2.13M fp32 = 0.0085 GB,
    # the proposal's A = 0.008 GB.
    assert n_adapter == 2_129_920
    assert adapter_bytes / 1e9 == pytest.approx(0.0085, abs=1e-4)
    estimate = memory.estimate(
        peft_model,
        quantization=NF4,
        dtype="bfloat16",
        questions=pd.DataFrame({"question": [], "answer": []}),
        dataset_gb_override=0.16,
    )
    assert estimate.total_gb == pytest.approx(5.3215 + 0.0085 + 1.5 + 0.16, abs=1e-3)


def test_resident_weights_of_the_released_11b_on_the_meta_device():
    """What a 4-bit load of Llama-3.2-11B-Vision-Instruct leaves resident, counted by
    transformers' own bitsandbytes quantizer on the empty model, and derived independently: every
    plain ``nn.Linear`` but ``lm_head`` is quantized (its bias stays), nothing else is."""
    from transformers import MllamaForConditionalGeneration

    from hle_reasoning.modeling.architectures import llama_32_11b_vision_config

    config = llama_32_11b_vision_config()
    resident = memory.resident_weights_of(
        config, MllamaForConditionalGeneration, quantization=NF4, dtype="bfloat16"
    )
    plain = memory.meta_model(config, MllamaForConditionalGeneration)
    linear = [m for n, m in plain.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"]
    quantized = sum(m.weight.numel() for m in linear)
    assert resident.parameters == plain.num_parameters() == 10_670_220_835
    assert resident.quantized_parameters == quantized == 9_542_041_600
    assert resident.unquantized_parameters == 1_128_179_235  # 10.6% of the model
    assert resident.quantized_modules == len(linear) == 521
    assert resident.skipped_modules == ("lm_head",)
    # lm_head, the token embeddings (+ 8 image rows), the vision tower's tile and position
    # embeddings, patch convolution, norms, gates and the quantized linears' biases, in bf16.
    head = plain.lm_head.weight.numel()
    embeddings = sum(
        p.numel()
        for m in plain.modules()
        if isinstance(m, torch.nn.Embedding)
        for p in m.parameters()
    )
    assert (head, embeddings) == (525_336_576, 599_235_584)
    assert resident.unquantized_bytes == 2 * 1_128_179_235  # 2.26 GB
    assert resident.packed_bytes == quantized // 2  # 4.77 GB
    assert resident.absmax_bytes == 4 * quantized // 64  # an fp32 absmax per 64 weights: 0.60 GB
    assert resident.total_gb == pytest.approx(7.6238, abs=1e-4)  # eq. (6)'s P x 4/8: 5.3351 GB
    assert memory.eq6(resident.parameters, 4, 0).model_gb == pytest.approx(5.3351, abs=1e-4)
    # Double quantization: 8-bit absmax + an fp32 absmax per 256 of them: 0.15 GB, 7.18 GB in all.
    nested = memory.resident_weights_of(
        config,
        MllamaForConditionalGeneration,
        quantization=QuantizationConfig(enabled=True, double_quant=True),
        dtype="bfloat16",
    )
    assert nested.absmax_bytes == pytest.approx(quantized / 64, rel=0.02)
    assert nested.total_gb == pytest.approx(7.1793, abs=1e-4)
    # Beside eq. (6)'s 7.00 GB: + the bf16 adapter, the proposal's T = 1.5 GB and D = 0.16 GB.
    estimate = memory.resident_estimate(
        resident, adapter_bytes=2 * 2_129_920, training_overhead_gb=1.5, dataset_gb=0.16
    )
    assert estimate.total_gb == pytest.approx(9.288, abs=1e-3)


@pytest.mark.parametrize(
    ("quantization", "dtype"),
    [
        (NF4, "float32"),
        (QuantizationConfig(enabled=True, bits=4, double_quant=True), "float32"),
        (None, "float32"),
        (None, "bfloat16"),
    ],
    ids=["nf4", "nf4-double-quant", "fp32", "bf16"],
)
def test_resident_weights_equal_what_the_loaded_model_holds(tiny_dir, quantization, dtype):
    """The meta-device count equals the bytes bitsandbytes really allocates (weights, buffers,
    absmax and nested statistics) when the loader loads the same checkpoint."""
    from transformers import MllamaForConditionalGeneration

    loaded = load_model(str(tiny_dir), quantization=quantization, device="cpu", dtype=dtype)
    held = memory.loaded_weight_bytes(loaded)
    resident = memory.resident_weights_of(
        loaded.config, MllamaForConditionalGeneration, quantization=quantization, dtype=dtype
    )
    assert resident.absmax_bytes == held["absmax_bytes"]
    assert resident.total_bytes == held["tensor_bytes"] + held["absmax_bytes"]
    assert (resident.quantized_parameters > 0) == (quantization is not None)


def test_4bit_weights_are_counted_unpacked(tiny_dir):
    fp32 = load_model(str(tiny_dir), quantization=None, device="cpu")
    nf4 = load_model(str(tiny_dir), quantization=NF4, device="cpu")
    assert (
        memory.base_parameter_count(nf4)
        == memory.base_parameter_count(fp32)
        == fp32.num_parameters()
    )


def test_dataset_size_counts_text_and_decoded_image_bytes():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(100))
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    frame = pd.DataFrame({"question": ["abc", "é"], "answer": ["1", "22"], "image": [uri, ""]})
    assert memory.dataset_gb(frame) * 1e9 == pytest.approx(3 + 2 + 1 + 2 + len(png))


def test_weight_bits_follow_quantization_or_dtype():
    assert memory.weight_bits(NF4, "float32") == 4
    assert memory.weight_bits(QuantizationConfig(enabled=False), "bfloat16") == 16
    assert memory.weight_bits(None, "float32") == 32


def test_measured_peak_on_cpu_is_the_process_rss():
    peak = memory.measured_peak("cpu")
    assert set(peak) == {"peak_rss_gb"}
    assert peak["peak_rss_gb"] >= memory.current_rss_gb() > 0.05


@pytest.mark.parametrize("family", ["qwen2_5_vl", "causal_lm"])
def test_resident_weights_of_other_families_equal_what_the_loaded_model_holds(tmp_path, family):
    """Any family: the meta-device count through the family's own auto class equals the bytes
    of the 4-bit load (a Qwen2.5-VL's vision tower, a causal LM)."""
    from hle_reasoning.modeling.families import family_of
    from tests.modeling.tiny_families import save_tiny_causal_lm, save_tiny_qwen_vl

    path = (
        save_tiny_qwen_vl(tmp_path / family, family)
        if family != "causal_lm"
        else save_tiny_causal_lm(tmp_path / family)
    )
    loaded = load_model(str(path), quantization=NF4, device="cpu")
    held = memory.loaded_weight_bytes(loaded)
    resident = memory.resident_weights_of(
        loaded.config, family_of(str(path)).model_class(), quantization=NF4, dtype="float32"
    )
    assert resident.quantized_modules > 0 and "lm_head" in resident.skipped_modules
    assert resident.absmax_bytes == held["absmax_bytes"]
    assert resident.total_bytes == held["tensor_bytes"] + held["absmax_bytes"]
