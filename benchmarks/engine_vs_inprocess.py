"""Answering throughput: the evaluation's in-process path against its managed engine
(``backend: engine``), on the same model, questions, token budget and decoding.

The in-process side is the evaluation's own ``generate`` (``modeling.generation``, model block of
``--env``: on a GPU with ``--env paper``, 4-bit NF4 as the paper setup generates). The engine
side is the evaluation's ``backend: engine`` machinery (``modeling.engines.ManagedEngine`` started
here, on a free port, answered through the ``openai`` backend at ``--concurrency``), serving the
same weights unquantized in ``model.dtype``. Each side is timed after one warm-up question; the
engine's start-up (until its ``/health`` answers) is reported apart and in an end-to-end ratio::

    python benchmarks/engine_vs_inprocess.py                       # CPU: transformers serve
    python benchmarks/engine_vs_inprocess.py --unquantized         # both sides in model.dtype
    python benchmarks/engine_vs_inprocess.py --env paper --engine sglang --questions 218 \\
        --max-new-tokens 2048 --model meta-llama/Llama-3.2-11B-Vision-Instruct     # one GPU

Prints seconds, tokens/s and questions/s per path and the served/in-process ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def measure(frames: list[pd.DataFrame], seconds: float) -> dict[str, float]:
    answers = pd.concat(frames) if frames else pd.DataFrame({"response_tokens": []})
    tokens = float(answers["response_tokens"].astype(float).sum())
    return {
        "questions": len(answers),
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "questions_per_s": len(answers) / seconds,
    }


def model_block(env: str) -> dict:
    params = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["model"]
    if env != "base":
        override = yaml.safe_load((ROOT / f"conf/{env}/parameters.yml").read_text()) or {}
        for key, value in (override.get("model") or {}).items():
            if isinstance(value, dict):
                params[key] = {**(params.get(key) or {}), **value}
            else:
                params[key] = value
    if not str(params.get("name_or_path", "")).strip() or "${" in str(params["name_or_path"]):
        params["name_or_path"] = "tiny"
    return params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine", default="transformers", choices=["transformers", "sglang", "vllm"]
    )
    parser.add_argument("--env", default="base", help="conf/<env>/parameters.yml's model block")
    parser.add_argument("--questions", type=int, default=24, help="first N test questions")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=None, help="default: batch size")
    parser.add_argument("--threads", type=int, default=1, help="CPU: torch threads, both sides")
    parser.add_argument(
        "--unquantized",
        action="store_true",
        help="in-process without the model block's quantization (as the engine)",
    )
    parser.add_argument("--text-only", action="store_true", help="text-only questions only")
    parser.add_argument("--test", default=str(ROOT / "data/05_model_input/focus_test.parquet"))
    parser.add_argument(
        "--model",
        default=str(ROOT / "data/06_models/base_model"),
        help="a saved model folder (default: the training pipeline's base model)",
    )
    args = parser.parse_args()

    from hle_reasoning.config import AnsweringConfig, GenerationConfig, ModelConfig
    from hle_reasoning.datasets import BaseModelDataset
    from hle_reasoning.hle.data.schema import has_image, is_hub_id
    from hle_reasoning.modeling import engine_checks, engines
    from hle_reasoning.modeling.generation import generate_responses, load_for_evaluation
    from hle_reasoning.modeling.models import prepare_base_model
    from hle_reasoning.modeling.openai_backend import Endpoint, EndpointAnswerer
    from hle_reasoning.pipelines.evaluation.backends import serves_mllama

    params = model_block(args.env)
    if args.unquantized:
        params["quantization"] = {**(params.get("quantization") or {}), "enabled": False}
    model_config = ModelConfig.from_params(params)
    evaluation = yaml.safe_load((ROOT / "conf/base/parameters_evaluation.yml").read_text())
    generation = {
        **evaluation["evaluation"]["generation"],
        "max_new_tokens": args.max_new_tokens,
        "cpu_threads": args.threads,
    }
    config = GenerationConfig.from_params(generation)
    concurrency = args.concurrency or config.batch_size
    answering = AnsweringConfig(backend="openai", concurrency=concurrency, max_retries=0)
    if not Path(args.test).exists():
        print(f"{args.test} is missing: run `kedro run --pipelines data_processing` first.")
        return 1
    questions = pd.read_parquet(args.test)
    if args.text_only:
        questions = questions[~questions["image"].map(has_image)]
    questions = questions.head(args.questions).reset_index(drop=True)

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(args.model)
        if (base / BaseModelDataset.REF_FILE).exists():
            model = BaseModelDataset(path=str(base)).load()
        elif (base / "config.json").exists():
            model = str(base.resolve())
        elif not base.exists() and is_hub_id(args.model):
            model = args.model  # a hub id (HF_TOKEN for a gated one)
        else:
            print(f"{base} is missing: using the tiny model built from conf/base/parameters.yml.")
            dataset = BaseModelDataset(path=str(Path(scratch) / "base_model"))
            tiny = {**params, "name_or_path": "tiny", "device": "cpu"}
            dataset.save(prepare_base_model(ModelConfig.from_params(tiny)))
            model = dataset.load()
        refusals = engine_checks.engine_refusals(
            args.engine, "--engine", mllama=serves_mllama(model)
        )
        if refusals:
            print("\n".join(refusals))
            return 1

        network, processor = load_for_evaluation(model, None, model_config)
        list(generate_responses(network, processor, questions.head(1), config, progress=False))
        started = time.perf_counter()
        frames = list(generate_responses(network, processor, questions, config, progress=False))
        quantized = "4-bit" if model_config.quantization.enabled else model_config.dtype
        results[f"in-process generate ({quantized}, batch {config.batch_size})"] = measure(
            frames, time.perf_counter() - started
        )
        del network, processor

        engine = engines.ManagedEngine(
            engine=args.engine,
            model=str(Path(model).resolve()) if Path(model).exists() else model,
            log_path=Path(scratch) / "engine.log",
            dtype=model_config.dtype,
            mllama=serves_mllama(model),
            device=model_config.device if args.engine == "transformers" else "auto",
            env={"OMP_NUM_THREADS": str(args.threads)} if model_config.device != "cuda" else None,
        )
        started = time.perf_counter()
        with engine:
            start_up = time.perf_counter() - started
            answerer = EndpointAnswerer(Endpoint(engine.base_url, engine.model), config, answering)
            list(answerer.answer_all(questions.head(1), progress=False))
            started = time.perf_counter()
            frames = list(answerer.answer_all(questions, progress=False))
            served = measure(frames, time.perf_counter() - started)
            command = engine.info()["command"]
        served["start_up_s"] = start_up
        results[f"managed {args.engine} ({model_config.dtype}, concurrency {concurrency})"] = served

    images = int(questions["image"].map(has_image).sum())
    print(
        f"{len(questions)} questions ({images} with an image), {args.max_new_tokens} new tokens "
        f"each at most, greedy; model {model}; env {args.env}; python {sys.version.split()[0]}; "
        f"load {os.getloadavg()[0]:.1f}\nengine command: {command}"
    )
    (inproc_name, inproc), (served_name, served) = results.items()
    print(f"{'path':52} {'s':>8} {'tokens/s':>9} {'questions/s':>11}")
    for name, row in results.items():
        print(
            f"{name:52} {row['seconds']:8.2f} {row['tokens_per_s']:9.1f} {row['questions_per_s']:11.2f}"
        )
    print(f"engine start-up (until /health): {served['start_up_s']:.1f} s")
    print(
        f"served / in-process throughput (tokens/s): {served['tokens_per_s'] / inproc['tokens_per_s']:.2f}"
    )
    end_to_end = inproc["seconds"] / (served["seconds"] + served["start_up_s"])
    print(f"in-process time / (served time + start-up): {end_to_end:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
