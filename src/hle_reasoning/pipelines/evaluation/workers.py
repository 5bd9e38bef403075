"""The evaluation's distributed worker: one process's share of a variant's questions.

Started by ``hle_reasoning.modeling.distributed.launch`` from the answering node (never by
Kedro): it joins the process group, takes its share of the questions, loads the model on its
device and appends each answered batch to its own shard. It touches neither the catalog nor
MLflow; the node merges the shards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hle_reasoning.config import GenerationConfig, ModelConfig
from hle_reasoning.datasets.evaluation import JSONLinesShards
from hle_reasoning.hle.schema import has_image
from hle_reasoning.modeling import distributed, generation


@dataclass(frozen=True)
class AnswerTask:
    """Everything a worker needs to answer its share (picklable: it crosses the process spawn)."""

    questions: pd.DataFrame
    base_model: str
    adapter: str | None
    config: GenerationConfig
    model: ModelConfig
    key: str
    shards: JSONLinesShards
    description: str


def share_of(state: Any, questions: pd.DataFrame) -> pd.DataFrame:
    """This worker's questions: text-only and image questions are split apart, so every worker
    gets its part of the slower image questions (``split_between_processes`` is contiguous)."""
    with_image = questions["image"].map(has_image)
    parts = []
    for group in (questions[~with_image], questions[with_image]):
        parts.append(group.loc[distributed.split(state, list(group.index))])
    return pd.concat(parts)


def answer_share(task: AnswerTask) -> int:
    """Answer this worker's share of ``task.questions`` into its shard; the number answered."""
    state = distributed.init_worker(task.config.cpu_threads)
    questions = task.questions.reset_index(drop=True)
    mine = share_of(state, questions)
    if mine.empty:
        return 0
    # One device per worker: accelerate's choice (cuda:<local rank>), unless the CPU is asked for.
    cpu = task.model.device == "cpu" or state.device.type == "cpu"
    device = "cpu" if cpu else str(state.device)
    model, processor = generation.load_for_evaluation(
        task.base_model, task.adapter, dataclasses.replace(task.model, device=device)
    )
    store = task.shards.store(state.process_index)
    answered = 0
    for batch in generation.generate_responses(
        model,
        processor,
        mine,
        task.config,
        progress=state.is_local_main_process,
        description=f"{task.description} (rank {state.process_index} of {state.num_processes})",
    ):
        batch["generation_key"] = task.key
        store.save(batch)
        answered += len(batch)
    return answered
