"""1 process against N worker processes on the same work: answering throughput and GRPO epoch time.

Uses the project's own code paths: the evaluation workers (``hle_reasoning.pipelines.evaluation
.workers.answer_share``, started by ``hle_reasoning.modeling.distributed.run_workers``) and the
training node's data-parallel run (``hle_reasoning.pipelines.training.workers.train_distributed``)
against ``generate_responses`` and ``train_grpo`` in this process. The configuration is the
project's (``model``, ``evaluation.generation``, ``training``), on the bundled sample's Math
questions and the tiny model (4-bit NF4 on the CPU by default)::

    python benchmarks/distributed_scaling.py                     # 1 vs 2 processes
    python benchmarks/distributed_scaling.py --processes 4 --questions 64 --device cuda

Answering: questions per second, over the answering itself (the slowest worker's answering
time) and over the wall time of the whole launch (process start-up and model loading included).
Training: seconds per epoch (the trainer's own wall time on rank 0) and the whole wall time.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def answering(processes, questions, base, model, config, folder) -> dict:
    from hle_reasoning.datasets import JSONLinesShards
    from hle_reasoning.modeling import distributed, generation
    from hle_reasoning.pipelines.evaluation import workers

    shards = JSONLinesShards(
        path=str(Path(folder) / f"shards-{processes}"), columns=generation.RESPONSE_COLUMNS
    )
    started = time.perf_counter()
    if processes == 1:
        model, processor = generation.load_for_evaluation(base, None, model)
        answered = pd.concat(
            list(generation.generate_responses(model, processor, questions, config))
        )
        busy = float(answered["seconds"].sum())
    else:
        task = workers.AnswerTask(
            questions=questions,
            base_model=base,
            adapter=None,
            config=config,
            model=model,
            key="benchmark",
            shards=shards,
            description="benchmark",
        )
        distributed.run_workers(
            distributed.DistributedConfig(num_processes=processes), workers.answer_share, task
        )
        per_rank = [float(shards.store(r).load()["seconds"].sum()) for r in range(processes)]
        answered = shards.load()
        busy = max(per_rank)  # the workers answer side by side: the slowest one decides
        shards.clear()
    wall = time.perf_counter() - started
    assert sorted(answered["id"]) == sorted(questions["id"]), "a question was lost or repeated"
    return {
        "answering_qps": len(questions) / busy,
        "wall_qps": len(questions) / wall,
        "wall_s": wall,
    }


def training_epoch(processes, questions, base, model, training_params, folder) -> dict:
    from hle_reasoning.config import TrainingConfig
    from hle_reasoning.modeling import distributed, training
    from hle_reasoning.pipelines.training import workers

    params = copy.deepcopy(training_params)
    params["grpo"]["num_train_epochs"] = 1
    params["checkpoints"] = {
        "dir": str(Path(folder) / f"ckpt-{processes}"),
        "resume": False,
        "save_steps": 1000,
    }
    params = TrainingConfig.from_params(params)
    started = time.perf_counter()
    if processes == 1:
        result = training.train_grpo(base, questions, model, params)
    else:
        scale = distributed.DistributedConfig(num_processes=processes)
        result = workers.train_distributed(scale, base, questions, model, params)
    wall = time.perf_counter() - started
    summary = result.summary
    return {
        "epoch_s": summary["train_seconds"],
        "wall_s": wall,
        "steps": summary["steps"],
        "world_size": summary["world_size"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--questions", type=int, default=48, help="Math questions to answer")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from hle_reasoning.config import GenerationConfig, ModelConfig
    from hle_reasoning.datasets import BaseModelDataset
    from hle_reasoning.hle.data.schema import read_export, validate_hle
    from hle_reasoning.modeling.models import prepare_base_model

    model_params = load_yaml(ROOT / "conf/base/parameters.yml")["model"]
    model_params.update({"name_or_path": "tiny", "device": args.device})
    model = ModelConfig.from_params(model_params)
    generation_config = GenerationConfig.from_params(
        load_yaml(ROOT / "conf/base/parameters_evaluation.yml")["evaluation"]["generation"]
    )
    training_params = load_yaml(ROOT / "conf/base/parameters_training.yml")["training"]
    sample = ROOT / "data/01_raw/hle_sample.jsonl"
    math = validate_hle(read_export(sample), str(sample))
    math = math[math["category"] == "Math"].reset_index(drop=True)
    evaluate = math.head(args.questions)
    train = math.iloc[args.questions :].reset_index(drop=True)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        base_dir = Path(folder) / "base_model"
        BaseModelDataset(path=str(base_dir)).save(prepare_base_model(model))
        base = BaseModelDataset(path=str(base_dir)).load()
        for processes in (1, args.processes):
            print(
                f"answering {len(evaluate)} questions on {processes} process(es)...",
                file=sys.stderr,
            )
            row = {
                "processes": processes,
                **answering(processes, evaluate, base, model, generation_config, folder),
            }
            if not args.skip_training:
                print(
                    f"one GRPO epoch on {len(train)} questions, {processes} process(es)...",
                    file=sys.stderr,
                )
                row.update(
                    {
                        f"train_{k}": v
                        for k, v in training_epoch(
                            processes, train, base, model, training_params, folder
                        ).items()
                    }
                )
            rows.append(row)
    one, many = rows
    print(
        f"\n{len(evaluate)} questions answered, device {args.device}, "
        f"{os.environ['OMP_NUM_THREADS']} torch thread(s) per process"
    )
    print(f"| | 1 process | {args.processes} processes | ratio |")
    print("|---|---|---|---|")
    print(
        f"| answering (questions/s) | {one['answering_qps']:.2f} | {many['answering_qps']:.2f} | "
        f"**{many['answering_qps'] / one['answering_qps']:.2f}x** |"
    )
    print(
        f"| answering incl. start-up (questions/s) | {one['wall_qps']:.2f} | "
        f"{many['wall_qps']:.2f} | {many['wall_qps'] / one['wall_qps']:.2f}x |"
    )
    if not args.skip_training:
        print(
            f"| GRPO epoch ({one['train_steps']} / {many['train_steps']} steps, s) | "
            f"{one['train_epoch_s']:.1f} | {many['train_epoch_s']:.1f} | "
            f"**{one['train_epoch_s'] / many['train_epoch_s']:.2f}x** |"
        )
        print(
            f"| GRPO epoch incl. start-up (s) | {one['train_wall_s']:.1f} | "
            f"{many['train_wall_s']:.1f} | {one['train_wall_s'] / many['train_wall_s']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
