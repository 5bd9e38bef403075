"""Answering throughput: in-process batched generate against `transformers serve`, with and
without continuous batching, on the same model, questions and token budget.

The in-process path is the evaluation's own (``modeling.generation``, ``evaluation.generation``
batch size); the served path is the evaluation's ``openai`` backend (``modeling.openai_backend``) at
``--concurrency`` requests at a time against a `transformers serve` started here on 127.0.0.1.
Both use the same weights (the training pipeline's base model, else the tiny model built from
conf/base) unquantized in fp32, and the same torch thread count::

    python benchmarks/serving_throughput.py                          # 24 questions, 32 tokens
    python benchmarks/serving_throughput.py --questions 48 --max-new-tokens 64 --text-only

Prints tokens/s and questions/s per setting and the ratios to in-process.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no /health within {timeout:.0f} s")


def measure(frames: list[pd.DataFrame], seconds: float) -> dict[str, float]:
    answers = pd.concat(frames) if frames else pd.DataFrame({"response_tokens": []})
    tokens = float(answers["response_tokens"].astype(float).sum())
    return {
        "questions": len(answers),
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "questions_per_s": len(answers) / seconds,
    }


def served(model: str, questions, config, answering, threads: int, extra: list[str]) -> dict:
    from hle_reasoning.modeling.openai_backend import Endpoint, EndpointAnswerer

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    command = [str(Path(sys.executable).with_name("transformers")), "serve", model]
    command += ["--device", "cpu", "--host", "127.0.0.1", "--port", str(port), *extra]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(port, proc)
            endpoint = Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model=model)
            answerer = EndpointAnswerer(endpoint, config, answering)
            list(answerer.answer_all(questions.head(1), progress=False))  # loads the model
            started = time.perf_counter()
            frames = list(answerer.answer_all(questions, progress=False))
            return measure(frames, time.perf_counter() - started)
        except Exception as error:  # reported in the table, not raised: the others still count
            log.seek(0)
            tail = log.read().strip().splitlines()[-3:]
            return {"error": f"{type(error).__name__}: {error} | {' / '.join(tail)}"[:300]}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=24, help="first N test questions")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=None, help="default: batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--text-only", action="store_true", help="text-only questions only")
    parser.add_argument("--test", default=str(ROOT / "data/05_model_input/focus_test.parquet"))
    parser.add_argument("--base-model", default=str(ROOT / "data/06_models/base_model"))
    args = parser.parse_args()

    from hle_reasoning.config import AnsweringConfig, GenerationConfig
    from hle_reasoning.datasets import BaseModelDataset
    from hle_reasoning.hle.data.schema import has_image
    from hle_reasoning.modeling.generation import generate_responses, load_for_evaluation
    from hle_reasoning.modeling.models import prepare_base_model

    conf = ROOT / "conf/base"
    model_params = yaml.safe_load((conf / "parameters.yml").read_text())["model"]
    model_params.update(device="cpu", quantization=None, dtype="float32")
    evaluation = yaml.safe_load((conf / "parameters_evaluation.yml").read_text())["evaluation"]
    generation = {**evaluation["generation"], "max_new_tokens": args.max_new_tokens}
    generation["cpu_threads"] = args.threads
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

    with tempfile.TemporaryDirectory() as scratch:
        base = Path(args.base_model)
        if (base / BaseModelDataset.REF_FILE).exists():
            model = BaseModelDataset(path=str(base)).load()
        else:
            print(f"{base} is missing: using the tiny model built from conf/base/parameters.yml.")
            dataset = BaseModelDataset(path=str(Path(scratch) / "base_model"))
            dataset.save(prepare_base_model({**model_params, "name_or_path": "tiny"}))
            model = dataset.load()
        network, processor = load_for_evaluation(model, None, model_params)
        list(generate_responses(network, processor, questions.head(1), config, progress=False))
        started = time.perf_counter()
        frames = list(generate_responses(network, processor, questions, config, progress=False))
        results = {
            f"in-process generate (batch {config.batch_size})": measure(
                frames, time.perf_counter() - started
            )
        }
        del network
        for name, extra in (
            ("transformers serve", []),
            ("transformers serve --continuous-batching", ["--continuous-batching"]),
        ):
            results[f"{name} (concurrency {concurrency})"] = served(
                model, questions, config, answering, args.threads, extra
            )

    images = int(questions["image"].map(has_image).sum())
    print(
        f"{len(questions)} questions ({images} with an image), {args.max_new_tokens} new tokens "
        f"each at most, greedy, fp32, {args.threads} torch thread(s); load {os.getloadavg()[0]:.1f}"
    )
    reference = next(iter(results.values()))
    print(f"{'setting':58} {'s':>7} {'tokens/s':>9} {'questions/s':>11} {'ratio':>6}")
    for name, row in results.items():
        if "error" in row:
            print(f"{name:58} failed: {row['error']}")
            continue
        ratio = row["tokens_per_s"] / reference["tokens_per_s"]
        print(
            f"{name:58} {row['seconds']:7.2f} {row['tokens_per_s']:9.1f} "
            f"{row['questions_per_s']:11.2f} {ratio:6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
