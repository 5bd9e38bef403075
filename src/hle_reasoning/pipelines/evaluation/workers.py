"""The evaluation's distributed worker: one process's share of a variant's questions.

Started by ``hle_reasoning.modeling.distributed.run_workers`` from the answering node (never by
Kedro): it joins the process group, takes its share of the questions, loads the model on its
device and appends each answered batch to its own shard. It touches neither the catalog nor
MLflow. :func:`answer_distributed` is the node's side: it launches the workers and merges their
shards into one chunk in question order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hle_reasoning.config import DistributedConfig, GenerationConfig, ModelConfig
from hle_reasoning.datasets.evaluation import JSONLinesShards
from hle_reasoning.hle.data.records import reusable
from hle_reasoning.hle.data.schema import has_image
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
        task.base_model, task.adapter, task.model.model_copy(update={"device": device})
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
        chat_template_date=task.model.chat_template_date,
        image_position=task.model.image_position,
    ):
        batch["generation_key"] = task.key
        batch["answered_by"] = "local"
        store.save(batch)
        answered += len(batch)
    return answered


def answer_distributed(
    todo: pd.DataFrame,
    scale: DistributedConfig,
    variant: str,
    task: AnswerTask,
) -> Iterator[pd.DataFrame]:
    """The workers answer ``todo`` into their shards; then every new answer, in question order,
    as one chunk (the store empties the shards once it holds them)."""
    shards = task.shards
    if shards is None:
        raise ValueError(
            f"{variant}: distributed answering needs the responses store's shards folder "
            "(`shards:` of `responses` in conf/base/catalog_evaluation.yml) for the workers."
        )
    answered = distributed.run_workers(scale, answer_share, task)
    written = shards.load()
    todo_ids = set(todo["id"].astype(str))
    new = reusable(
        written,
        key_column="generation_key",
        keys={task.key},
        ids=todo_ids,
        columns=generation.RESPONSE_COLUMNS,
    )
    missing = sorted(todo_ids - set(new["id"].astype(str)))
    if missing:
        raise RuntimeError(
            f"{variant}: the workers reported {sum(answered.values())} answer(s) but "
            f"{len(missing)} question(s) have none in {shards.path} (first: {missing[:5]}); "
            "run the same command again to answer them."
        )
    order = {qid: i for i, qid in enumerate(todo["id"].astype(str))}
    new = new.sort_values("id", key=lambda ids: ids.astype(str).map(order), kind="stable")
    yield new.reset_index(drop=True)
