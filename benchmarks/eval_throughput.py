"""Questions per second answering the test split: batched generation against one at a time.

Uses the evaluation's own code path (``hle_reasoning.modeling.generation``) and configuration
(the ``model`` block, e.g. 4-bit NF4, and ``evaluation.generation``), on the focus test split
written by the data_processing pipeline, with the base model of the training pipeline, or the
tiny model built in memory when that is absent::

    python benchmarks/eval_throughput.py                       # batch 8 vs 1, default setup
    python benchmarks/eval_throughput.py --batch-size 16 --max-new-tokens 64 --repeats 3

Each setting runs once untimed (warm-up) and then ``--repeats`` times; the table shows the best
run (the least disturbed by other work on the machine) and the median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the config's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=None, help="first N test questions")
    parser.add_argument("--test", default=str(ROOT / "data/05_model_input/focus_test.parquet"))
    parser.add_argument("--base-model", default=str(ROOT / "data/06_models/base_model"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from hle_reasoning.config import ModelConfig
    from hle_reasoning.datasets import BaseModelDataset
    from hle_reasoning.modeling.generation import (
        GenerationConfig,
        generate_responses,
        load_for_evaluation,
    )
    from hle_reasoning.modeling.models import prepare_base_model

    model_params = load_yaml(ROOT / "conf/base/parameters.yml")["model"]
    model_params["device"] = args.device
    generation_params = load_yaml(ROOT / "conf/base/parameters_evaluation.yml")["evaluation"][
        "generation"
    ]
    if args.max_new_tokens:
        generation_params["max_new_tokens"] = args.max_new_tokens

    test_path = Path(args.test)
    if not test_path.exists():
        print(f"{test_path} is missing: run `kedro run --pipelines data_processing` first.")
        return 1
    questions = pd.read_parquet(test_path)
    if args.questions:
        questions = questions.head(args.questions)

    with tempfile.TemporaryDirectory() as scratch:
        base = Path(args.base_model)
        if (base / BaseModelDataset.REF_FILE).exists():
            name_or_path = BaseModelDataset(path=str(base)).load()
        else:
            print(f"{base} is missing: using the tiny model built from conf/base/parameters.yml.")
            dataset = BaseModelDataset(path=str(Path(scratch) / "base_model"))
            tiny = ModelConfig.from_params({**model_params, "name_or_path": "tiny"})
            dataset.save(prepare_base_model(tiny))
            name_or_path = dataset.load()
        model, processor = load_for_evaluation(
            name_or_path, None, ModelConfig.from_params(model_params)
        )

        rows = []
        for batch_size in (args.batch_size, 1):
            config = GenerationConfig.from_params({**generation_params, "batch_size": batch_size})
            seconds = []
            for run in range(args.repeats + 1):
                started = time.perf_counter()
                for _ in generate_responses(model, processor, questions, config, progress=False):
                    pass
                if run:  # run 0 warms up
                    seconds.append(time.perf_counter() - started)
            rows.append(
                {
                    "batch_size": batch_size,
                    "best_s": min(seconds),
                    "median_s": statistics.median(seconds),
                    "questions_per_s": len(questions) / min(seconds),
                }
            )

    quant = model_params.get("quantization") or {}
    setup = (
        f"{len(questions)} questions ({int((questions['image'] != '').sum())} with images), "
        f"{name_or_path}, {'4-bit ' + quant.get('quant_type', '') if quant.get('enabled') else model_params.get('dtype')}, "
        f"{config.max_new_tokens} new tokens, greedy={not config.do_sample}, device {args.device}, "
        f"torch threads {config.cpu_threads or torch.get_num_threads()}"
    )
    print(f"\nEvaluation throughput: {setup}\n")
    print(f"{'batch size':>10} | {'best (s)':>9} | {'median (s)':>10} | {'questions/s':>11}")
    print(f"{'-' * 10}-+-{'-' * 9}-+-{'-' * 10}-+-{'-' * 11}")
    for row in rows:
        print(
            f"{row['batch_size']:>10} | {row['best_s']:>9.2f} | {row['median_s']:>10.2f} | "
            f"{row['questions_per_s']:>11.1f}"
        )
    ratio = rows[0]["questions_per_s"] / rows[1]["questions_per_s"]
    print(f"\nbatched / one at a time: {ratio:.1f}x (target >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
