"""The evaluation chain's pieces as a test drives them without Kedro: a plan, the stores."""

from __future__ import annotations

from typing import Any

import yaml

from hle_reasoning.config import EvaluationConfig, ModelConfig
from hle_reasoning.datasets import VariantStore
from hle_reasoning.datasets.evaluation import JudgeEndpoint
from hle_reasoning.pipelines.evaluation.plan import EvaluationPlan, variants_of
from tests.conftest import PROJECT_ROOT


def plan_for(
    base_model: str,
    model_params: dict[str, Any],
    judge_endpoint: JudgeEndpoint | None = None,
    subset: dict[str, Any] | None = None,
    **evaluation: Any,
) -> EvaluationPlan:
    """The plan of ``conf/base``'s evaluation block with ``evaluation``'s sub-blocks replaced."""
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())
    config = EvaluationConfig.from_params({**params["evaluation"], **evaluation})
    model = ModelConfig.from_params(model_params)
    return EvaluationPlan(
        variants=variants_of(config, model),
        evaluation=config,
        model=model,
        base_model=base_model,
        subset=subset or {"subset": "all", "note": ""},
        judge_endpoint=judge_endpoint or JudgeEndpoint(),
    )


def responses_store(folder, also_read: str | None = None) -> VariantStore:
    """The ``responses`` store of conf/base/catalog_evaluation.yml under ``folder``."""
    return VariantStore(
        filepath=str(folder / "{variant}" / "responses.jsonl"),
        key_column="generation_key",
        columns="hle_reasoning.modeling.generation.RESPONSE_COLUMNS",
        shards="response_shards",
        also_read=also_read,
    )


class Killed(BaseException):
    """The run is killed here (not an error a node or a dataset would catch)."""


def answer_into(
    store: VariantStore,
    plan: EvaluationPlan,
    questions,
    variant: str = "baseline",
    *,
    stop_after: int | None = None,
    adapter: str | None = None,
    endpoints: Any = None,
    distributed: Any = None,
) -> list[str]:
    """The answering node's ``variant`` saved into ``store`` as Kedro saves it, optionally killed
    after ``stop_after`` new chunks; the ids answered (not reused)."""
    from hle_reasoning.config import DistributedConfig
    from hle_reasoning.datasets.stores import Wanted
    from hle_reasoning.pipelines.evaluation import nodes

    wanted = nodes.answer_questions(
        plan, questions, adapter, endpoints, distributed or DistributedConfig()
    )[variant]
    answered: list[str] = []

    def make(todo, kept, shards):
        for i, chunk in enumerate(wanted.make(todo, kept, shards)):
            answered.extend(chunk["id"])
            yield chunk
            if stop_after is not None and i + 1 == stop_after:
                raise Killed  # nothing after this chunk is written

    try:
        store.save({variant: Wanted(rows=wanted.rows, make=make)})
    except Killed:
        pass
    return answered
