"""Sharded answering: the evaluation's answering node with 2 gloo workers on the tiny model."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from hle_reasoning.config import DistributedConfig, GenerationConfig, ModelConfig
from hle_reasoning.datasets import BaseModelDataset, JSONLinesShards
from hle_reasoning.launch import project_error
from hle_reasoning.modeling.distributed import WorkerFailedError
from hle_reasoning.modeling.models import prepare_base_model
from tests.conftest import PROJECT_ROOT
from tests.pipelines.evaluation_runs import answer_into, plan_for, responses_store

pytestmark = pytest.mark.slow
GENERATION = GenerationConfig(batch_size=1, max_new_tokens=24, cpu_threads=1)


@pytest.fixture(scope="module")
def model_params() -> ModelConfig:
    model = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters.yml").read_text())["model"]
    # fp32: quicker to load in every worker, the same sharding logic
    return ModelConfig.from_params(
        {**model, "name_or_path": "tiny", "device": "cpu", "quantization": {"enabled": False}}
    )


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, model_params) -> str:
    path = tmp_path_factory.mktemp("models") / "base_model"
    BaseModelDataset(path=str(path)).save(prepare_base_model(model_params))
    return BaseModelDataset(path=str(path)).load()


@pytest.fixture(scope="module")
def questions(sample_questions) -> pd.DataFrame:
    """Twelve Math questions, four with an image, text and image questions interleaved."""
    math = sample_questions[sample_questions["category"] == "Math"]
    text, image = math[math["image"] == ""].head(8), math[math["image"] != ""].head(4)
    mixed = [
        row
        for pair in zip(text.head(4).itertuples(), image.itertuples(), strict=True)
        for row in pair
    ]
    rows = [r._asdict() for r in mixed] + [r._asdict() for r in text.iloc[4:].itertuples()]
    return pd.DataFrame(rows).drop(columns="Index").reset_index(drop=True)


def run_node(store, questions, tiny_base, model_params, processes):
    """The answering node as Kedro runs it: its answers saved into the ``store``."""
    plan = plan_for(tiny_base, model_params.to_dict(), generation=GENERATION.to_dict())
    answer_into(
        store,
        plan,
        questions,
        distributed=DistributedConfig(num_processes=processes, timeout_s=60),
    )


def test_two_workers_answer_each_question_once_in_order_as_one_process_does(
    tmp_path, questions, tiny_base, model_params
):
    answers = {}
    for processes in (1, 2):
        store = responses_store(tmp_path / f"{processes}")
        shards = store.shards("baseline")
        run_node(store, questions, tiny_base, model_params, processes)
        answers[processes] = store.load()
        assert sorted(answers[processes]["id"]) == sorted(questions["id"])  # each once
        assert shards.files() == [] and not Path(shards.path).exists()
    # Both store in question order (two workers finish in any order).
    assert answers[2]["id"].tolist() == questions["id"].tolist()
    # Greedy answers one question at a time do not depend on which process gave them.
    one = answers[1].set_index("id")["response"]
    assert answers[2]["response"].tolist() == one.loc[questions["id"]].tolist()
    assert answers[2]["generation_key"].nunique() == 1


def _kill_rank_1_after_its_first_answer(shards: JSONLinesShards, killed: list) -> None:
    shard = Path(shards.path) / "rank-00001.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if shard.exists() and shard.read_text().count("\n") >= 1:
            workers = [
                p
                for p in psutil.Process().children(recursive=True)
                if "spawn_main" in " ".join(p.cmdline())
            ]
            # Elastic starts the workers in local-rank order: the newest one is rank 1 (the
            # creation times tie within a clock tick; the pids then tell the order).
            victim = max(workers, key=lambda p: (p.create_time(), p.pid))
            victim.kill()
            killed.append(victim.pid)
            return
        time.sleep(0.01)


def test_a_killed_worker_stops_the_node_naming_its_rank_and_a_rerun_answers_only_the_rest(
    tmp_path, questions, tiny_base, model_params, caplog
):
    store = responses_store(tmp_path)
    shards = store.shards("baseline")
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_rank_1_after_its_first_answer, args=(shards, killed))
    watcher.start()
    started = time.monotonic()
    with pytest.raises(Exception) as error:  # Kedro wraps a dataset's error in its own
        run_node(store, questions, tiny_base, model_params, 2)
    failure = project_error(error.value, (WorkerFailedError,))
    watcher.join()
    assert killed, "the watcher never saw rank 1 answer"
    assert time.monotonic() - started < 200  # stopped, not hung
    assert "rank 1 (local rank 1): killed by signal SIGKILL" in str(failure)
    assert store.load().empty  # nothing merged: the store is written whole or not at all
    survived = shards.load()
    assert 1 <= len(survived) < len(questions) and survived["id"].is_unique

    caplog.set_level(logging.INFO, logger="hle_reasoning.pipelines.evaluation.nodes")
    run_node(store, questions, tiny_base, model_params, 2)
    assert (
        f"{len(survived)} stored response(s) reused, {len(questions) - len(survived)} "
        "question(s) to answer" in caplog.text
    )
    final = store.load()
    assert final["id"].tolist() == questions["id"].tolist()  # each question exactly once
    kept = final.set_index("id").loc[survived["id"], "response"]
    assert kept.tolist() == survived["response"].tolist()  # the survivors were not re-answered
    assert shards.files() == []
