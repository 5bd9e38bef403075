"""The proposal's full-scale GRPO step, measured: Llama-3.2-11B-Vision in 4-bit on one GPU.

Builds the exact Llama-3.2-11B-Vision-Instruct architecture (the released config.json's values,
written below) with random weights, no download; saves it and loads it back in 4-bit NF4 with
bf16 compute through the training pipeline's own loader (``hle_reasoning.modeling.models.
load_model``); applies the proposal's LoRA and runs a few GRPO steps with the proposal's
settings (conf/base/parameters_training.yml) through the project's ``MllamaGRPOTrainer`` on a
handful of HLE-format questions of the bundled sample, with and without images. Prints the
quantized model's size, the peak GPU memory (allocated and reserved), eq. (6)'s estimate for the
same model, the time per step split into generation, scoring (rewards and reference log-probs)
and optimisation (loss, backward, optimizer step), and completion tokens per second::

    python benchmarks/gpu_paper_step.py                        # CUDA, the full 11B model
    python benchmarks/gpu_paper_step.py --cpu-rehearsal        # scaled down, on CPU, same code
    python benchmarks/gpu_paper_step.py --check-imports        # every import, then exit

Needs torch, transformers, peft, trl (with datasets), bitsandbytes, pandas, pillow, pyyaml and
this repository's ``src/`` on the path; never kedro, mlflow or pydantic, so that it runs on the
GPU machine's own packages (benchmarks/gpu_machine/packages.txt) and a few carried wheels
(benchmarks/gpu_machine/carried_wheels.txt; benchmarks/RESULTS.md has the exact command).
``--check-imports`` imports everything the run needs, prints the versions and exits (non-zero
with the missing module), in seconds: the device command's first step. The
tokenizer is the project's bundled one (the real Llama tokenizer cannot be downloaded): token
ids differ from Llama's, the shapes and the compute do not (prompts are capped at 32 tokens and
a random model never stops before its 32-token completion limit).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import yaml  # noqa: E402

# meta-llama/Llama-3.2-11B-Vision-Instruct's config.json values (special token ids come from the
# tokenizer), kept in the package, where the tests build it on the meta device.
from hle_reasoning.modeling.architectures import LLAMA_32_11B_VISION  # noqa: E402

# The same structure scaled down for a CPU rehearsal: 10 text layers with cross-attention at 3
# and 8 (every 5th, as the 11B's), a 4-tile vision tower with intermediate-layer features.
CPU_REHEARSAL = {
    "text_config": {
        **LLAMA_32_11B_VISION["text_config"],
        "vocab_size": None,  # the tokenizer's
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 10,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "cross_attention_layers": [3, 8],
        "max_position_embeddings": 2048,
    },
    "vision_config": {
        **LLAMA_32_11B_VISION["vision_config"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_global_layers": 2,
        "attention_heads": 2,
        "image_size": 28,
        "vision_output_dim": 64 * 3,
        "intermediate_layers_indices": [1, 3],
    },
}


def build_random_model(sizes: dict, processor, dtype: torch.dtype, device: str):
    """``MllamaForConditionalGeneration`` of ``sizes`` with random weights, made on ``device``."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    tok = processor.tokenizer
    text = {k: v for k, v in sizes["text_config"].items() if v is not None}
    text.setdefault("vocab_size", len(tok))
    config = MllamaConfig(
        text_config={
            **text,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config=dict(sizes["vision_config"]),
        image_token_index=tok.convert_tokens_to_ids("<|image|>"),
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = MllamaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def handful_of_questions(n_text: int, n_image: int):
    """Math questions of the bundled HLE-format sample: ``n_image`` with images, ``n_text`` without."""
    import pandas as pd

    from hle_reasoning.hle.data.schema import read_export, validate_hle

    sample = ROOT / "data" / "01_raw" / "hle_sample.jsonl"
    questions = validate_hle(read_export(sample), str(sample))
    math = questions[questions["category"] == "Math"]
    with_image = math[math["image"] != ""].head(n_image)
    text = math[math["image"] == ""].head(n_text)
    return pd.concat([with_image, text]).reset_index(drop=True)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_trainer_class(device: str):
    """``MllamaGRPOTrainer`` that records per-step generation and scoring times."""
    from hle_reasoning.modeling.grpo import MllamaGRPOTrainer

    class TimedTrainer(MllamaGRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.timings: list[dict] = []

        def _generate_single_turn(self, prompt_ids, images, fields, num_generations, *rest):
            synchronize(device)
            started = time.perf_counter()
            out = super()._generate_single_turn(prompt_ids, images, fields, num_generations, *rest)
            synchronize(device)
            self._generation = (time.perf_counter() - started, sum(len(c) for c in out[0]))
            return out

        def _generate_and_score_completions(self, inputs):
            synchronize(device)
            started = time.perf_counter()
            output = super()._generate_and_score_completions(inputs)
            synchronize(device)
            generation_s, tokens = self._generation
            self.timings.append(
                {
                    "generation_s": generation_s,
                    "scoring_s": time.perf_counter() - started - generation_s,
                    "completion_tokens": tokens,
                    "image_questions": sum(bool(x.get("images")) for x in inputs)
                    // self.num_generations,
                    "prompt_tokens_max": int(output["prompt_mask"].sum(1).max()),
                }
            )
            return output

    return TimedTrainer


def versions() -> dict:
    import bitsandbytes
    import peft
    import transformers
    import trl

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    else:
        info["cpu"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


# Every module the run imports (the project's and the libraries' it reaches only lazily).
NEEDED = (
    "bitsandbytes",
    "datasets",
    "peft",
    "transformers",
    "trl",
    "hle_reasoning.config",
    "hle_reasoning.modeling.grpo",
    "hle_reasoning.modeling.memory",
    "hle_reasoning.modeling.models",
    "hle_reasoning.hle.judge.rewards",
    "hle_reasoning.modeling.training",
    "hle_reasoning.modeling.training_data",
    "hle_reasoning.modeling.trl_mapping",
    "hle_reasoning.hle.data.schema",
)


def check_imports(needed: tuple[str, ...] = NEEDED) -> int:
    """Import every module the run needs; 0 and the versions, or 1 and what is missing."""
    import importlib

    missing = []
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError as error:
            missing.append(f"{name}: {error}")
    if missing:
        print("missing imports:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    print("imports ok: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-rehearsal", action="store_true", help="scaled-down model on CPU")
    parser.add_argument("--steps", type=int, default=5, help="GRPO steps; the first is warm-up")
    parser.add_argument("--text-questions", type=int, default=3)
    parser.add_argument("--image-questions", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where the random checkpoint is written")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--check-imports", action="store_true", help="import what the run needs, then exit"
    )
    args = parser.parse_args()
    if args.check_imports:
        return check_imports()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore")

    import transformers

    from hle_reasoning.config import QuantizationConfig, TrainingConfig
    from hle_reasoning.hle.judge.rewards import build_reward_functions
    from hle_reasoning.modeling import memory
    from hle_reasoning.modeling.models import build_tiny_processor, load_model
    from hle_reasoning.modeling.training_data import training_dataset
    from hle_reasoning.modeling.trl_mapping import grpo_config, lora_config

    transformers.logging.set_verbosity_error()
    if args.cpu_rehearsal:
        device, sizes, label = "cpu", CPU_REHEARSAL, "CPU rehearsal (scaled-down Mllama)"
        torch.set_num_threads(1)  # as training.cpu_threads: two stall on a busy 2-core machine
    else:
        if not torch.cuda.is_available():
            print("No CUDA GPU: run on a GPU machine, or pass --cpu-rehearsal.", file=sys.stderr)
            return 2
        device, sizes, label = "cuda", LLAMA_32_11B_VISION, "Llama-3.2-11B-Vision-Instruct"

    conf = ROOT / "conf" / "base"
    model_params = yaml.safe_load((conf / "parameters.yml").read_text())["model"]
    training = copy.deepcopy(yaml.safe_load((conf / "parameters_training.yml").read_text()))
    training = TrainingConfig.from_params(training["training"])
    # 4-bit NF4, bf16 compute (the proposal)
    quantization = QuantizationConfig.from_params(model_params["quantization"])

    vision = sizes["vision_config"]
    processor = build_tiny_processor(vision["image_size"], vision["max_num_tiles"])
    figures: dict = {"setup": label, "date": dt.date.today().isoformat(), "versions": versions()}
    phases: dict[str, float] = {}

    workdir_ctx = tempfile.TemporaryDirectory(dir=args.workdir or default_workdir())
    with workdir_ctx as workdir:
        path = Path(workdir) / "model"
        started = time.perf_counter()
        model = build_random_model(sizes, processor, torch.bfloat16, device)
        n_params = model.num_parameters()
        synchronize(device)
        phases["build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        model.save_pretrained(path, max_shard_size="5GB")
        processor.save_pretrained(path)
        phases["save_s"] = time.perf_counter() - started
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

        memory.reset_peak(device)
        started = time.perf_counter()
        model = load_model(str(path), quantization=quantization, device=device)
        synchronize(device)
        phases["load_4bit_s"] = time.perf_counter() - started
        quantized_gb = model.get_memory_footprint() / 1e9
        held = memory.loaded_weight_bytes(model)  # + bitsandbytes' absmax, beside the tensors
        from transformers import MllamaForConditionalGeneration

        resident = memory.resident_weights_of(
            model.config,
            MllamaForConditionalGeneration,
            quantization=quantization,
            dtype="bfloat16",
        )
        after_load = memory.measured_peak(device)

        questions = handful_of_questions(args.text_questions, args.image_questions)
        rewards, weights = build_reward_functions({"format": 1.0}, questions["answer"])
        config = grpo_config(
            training, output_dir=Path(workdir) / "out", device=device, reward_weights=weights
        )
        config.max_steps = args.steps
        config.save_strategy = "no"
        config.disable_tqdm = True
        trainer = timed_trainer_class(device)(
            model=model,
            reward_funcs=rewards,
            args=config,
            train_dataset=training_dataset(questions),
            processing_class=processor,
            peft_config=lora_config(training.lora),
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        estimate = memory.estimate(
            trainer.model,
            quantization=quantization,
            dtype="bfloat16",
            questions=questions,
            training_overhead_gb=training.memory.training_overhead_gb,
            dataset_gb_override=0.16,  # the proposal's D (the study's 888 questions)
        )
        resident_estimate = memory.with_resident_weights(estimate, resident)
        started = time.perf_counter()
        trainer.train()
        synchronize(device)
        phases["train_s"] = time.perf_counter() - started
        peak = memory.measured_peak(device)

    step_times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]
    steps = []
    for i, (timing, step_s) in enumerate(zip(trainer.timings, step_times, strict=False), start=1):
        optimisation = step_s - timing["generation_s"] - timing["scoring_s"]
        steps.append({"step": i, "step_s": step_s, "optimisation_s": optimisation, **timing})
    timed = steps[1:] or steps  # the first step warms up (kernels, allocator)

    def mean(key: str) -> float:
        return statistics.mean(s[key] for s in timed)

    figures.update(
        {
            "parameters": n_params,
            "lora_parameters": estimate.adapter_parameters,
            "quantized_model_gb": quantized_gb,
            "memory_after_load": after_load,
            "peak_memory": peak,
            "eq6": estimate.to_dict(),
            "resident_weights": resident.to_dict(),
            "resident_estimate": resident_estimate.to_dict(),
            "loaded_weight_bytes": held,
            "phases_s": phases,
            "steps": steps,
            "mean_step_s": mean("step_s"),
            "mean_generation_s": mean("generation_s"),
            "mean_scoring_s": mean("scoring_s"),
            "mean_optimisation_s": mean("optimisation_s"),
            "completion_tokens_per_s": sum(s["completion_tokens"] for s in timed)
            / sum(s["generation_s"] for s in timed),
            "completions_per_step": config.per_device_train_batch_size,
            "imports_kedro_or_mlflow": sorted(
                m for m in ("kedro", "mlflow") if sys.modules.get(m) is not None
            ),
        }
    )
    report(figures)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def default_workdir() -> str | None:
    """RAM-backed /dev/shm when it has room for the bf16 checkpoint (~21 GB), else the default."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        stats = os.statvfs(shm)
        if stats.f_bavail * stats.f_frsize > 30e9:
            return str(shm)
    return None


def report(f: dict) -> None:
    v = f["versions"]
    print(f"== {f['setup']}: GRPO steps through MllamaGRPOTrainer, {f['date']}")
    print("   " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print(
        f"parameters                {f['parameters'] / 1e9:.3f} B (LoRA {f['lora_parameters']:,})"
    )
    print(f"quantized model size      {f['quantized_model_gb']:.3f} GB (4-bit NF4, bf16 compute)")
    peak = f["peak_memory"]
    if "peak_cuda_allocated_gb" in peak:
        print(
            f"peak GPU memory           {peak['peak_cuda_allocated_gb']:.3f} GB allocated, "
            f"{peak['peak_cuda_reserved_gb']:.3f} GB reserved (load + {len(f['steps'])} steps)"
        )
    print(f"peak process RSS          {peak['peak_rss_gb']:.3f} GB")
    e = f["eq6"]
    print(
        f"eq. (6) estimate          {e['total_gb']:.3f} GB = P {e['parameters'] / 1e9:.3f}e9 x "
        f"{e['bits']}/8 ({e['model_gb']:.3f}) + A {e['adapter_gb']:.4f} + T "
        f"{e['training_overhead_gb']} + D {e['dataset_gb']}"
    )
    r, held = f["resident_weights"], f["loaded_weight_bytes"]
    print(
        f"resident weights          {r['total_gb']:.3f} GB counted on the meta device = packed "
        f"{r['packed_gb']:.3f} + absmax {r['absmax_gb']:.3f} + unquantized {r['unquantized_gb']:.3f} "
        f"({r['unquantized_parameters'] / 1e9:.3f}e9 parameters: {', '.join(r['skipped_modules'])}, "
        f"embeddings, norms, biases); loaded: "
        f"{(held['tensor_bytes'] + held['absmax_bytes']) / 1e9:.3f} GB"
    )
    print(
        f"with the resident weights {f['resident_estimate']['total_gb']:.3f} GB (eq. (6) with "
        "the resident weights in place of P x B/8)"
    )
    print(
        f"time per step             {f['mean_step_s']:.3f} s = generation "
        f"{f['mean_generation_s']:.3f} + scoring {f['mean_scoring_s']:.3f} + optimisation "
        f"{f['mean_optimisation_s']:.3f} (mean of steps 2..{len(f['steps'])})"
    )
    print(
        f"completion tokens / s     {f['completion_tokens_per_s']:.1f} "
        f"({f['completions_per_step']} completions per step)"
    )
    print(
        "phases                    " + ", ".join(f"{k} {v:.1f}" for k, v in f["phases_s"].items())
    )
    print()
    print(
        "| step | s | generation s | scoring s | optimisation s | completion tokens | image questions |"
    )
    print("|---|---|---|---|---|---|---|")
    for s in f["steps"]:
        print(
            f"| {s['step']} | {s['step_s']:.3f} | {s['generation_s']:.3f} | {s['scoring_s']:.3f} "
            f"| {s['optimisation_s']:.3f} | {s['completion_tokens']} | {s['image_questions']} |"
        )
    imported = f["imports_kedro_or_mlflow"]
    print()
    print(
        f"imports: {'kedro/mlflow imported: ' + ', '.join(imported) if imported else 'no kedro, no mlflow'}"
    )


if __name__ == "__main__":
    sys.exit(main())
