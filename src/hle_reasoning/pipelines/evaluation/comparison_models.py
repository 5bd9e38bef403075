"""Nodes of the comparison models (``evaluation.comparison_models``): other models answer the
test questions through their OpenAI-compatible endpoints, are judged and scored by the
variants' own code, and are compared pairwise with the fine-tuned model.

Kedro fixes a pipeline before it reads parameters, so every comparison model goes through the
same four nodes, and each table (answers, verdicts, predictions, figures) is one store with a
``variant`` column: the model's name. Each model's rows follow the variants' rules (answers
reused while backend, endpoint, model and decoding are unchanged; verdicts while judge and
response are); the rows of a model no longer configured are kept untouched, not asked again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from hle_reasoning.config import (
    ComparisonModelConfig,
    EvaluationConfig,
    GenerationConfig,
    JudgeConfig,
    MetricsConfig,
)
from hle_reasoning.datasets.endpoints import AnswerEndpoints
from hle_reasoning.datasets.evaluation import JudgeEndpoint
from hle_reasoning.datasets.stores import replacing
from hle_reasoning.hle.data.records import reusable
from hle_reasoning.hle.data.schema import has_image
from hle_reasoning.hle.formatting import slug
from hle_reasoning.hle.judge.table import VERDICT_COLUMNS
from hle_reasoning.hle.scoring.comparison_models import compare_with_finetuned
from hle_reasoning.modeling import openai_backend
from hle_reasoning.modeling.generation import RESPONSE_COLUMNS
from hle_reasoning.pipelines.evaluation import backends, nodes

logger = logging.getLogger(__name__)

COMPARISON_RESPONSE_COLUMNS = ("variant", *RESPONSE_COLUMNS)
COMPARISON_VERDICT_COLUMNS = ("variant", *VERDICT_COLUMNS)


def questions_of(questions: pd.DataFrame, entry: ComparisonModelConfig) -> pd.DataFrame:
    """The test questions ``entry`` answers: all, or those without an image (``text_only``)."""
    if not entry.text_only:
        return questions
    return questions[~questions["image"].map(has_image).astype(bool)].reset_index(drop=True)


def rows_of(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one comparison model in a shared store, without the ``variant`` column."""
    if "variant" not in table.columns:
        return table.iloc[0:0]
    return table[table["variant"].astype(str) == name].drop(columns="variant")


def _others(table: pd.DataFrame, models: tuple[ComparisonModelConfig, ...]) -> pd.DataFrame:
    """The rows of models no longer configured: kept as they are (their answers cost money)."""
    if "variant" not in table.columns or table.empty:
        return table.iloc[0:0]
    return table[~table["variant"].astype(str).isin({m.name for m in models})]


def _stacked(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    kept = [f.reindex(columns=list(columns)) for f in frames if len(f)]
    if not kept:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(kept, ignore_index=True)


def answer_comparison_models(
    questions: pd.DataFrame,
    previous_responses: pd.DataFrame,
    generation_config: GenerationConfig,
    comparison_models: tuple[ComparisonModelConfig, ...],
    answer_endpoints: AnswerEndpoints | None = None,
) -> Iterator[pd.DataFrame]:
    """Each comparison model answers its test questions through the ``openai`` backend.

    Yields first every reusable stored answer (replacing the store), then each new answer as it
    arrives, model after model: a killed run resumes where it stopped. A model the endpoint
    refuses (a bad key, an unknown model) stops the run at its first request, naming it.
    """
    endpoints = answer_endpoints or AnswerEndpoints()
    kept, plans = [_others(previous_responses, comparison_models)], []
    for i, entry in enumerate(comparison_models):
        parameter = f"evaluation.comparison_models[{i}]"
        endpoint = backends.served_endpoint(entry.answering, endpoints, entry.name, parameter)
        answerer = openai_backend.EndpointAnswerer(
            endpoint, generation_config, entry.answering, parameter=parameter
        )
        mine = questions_of(questions, entry)
        stored = reusable(
            rows_of(previous_responses, entry.name),
            key_column="generation_key",
            keys={answerer.key},
            ids=set(mine["id"].astype(str)),
            columns=RESPONSE_COLUMNS,
        )
        todo = mine[~mine["id"].astype(str).isin(set(stored["id"].astype(str)))]
        logger.info(
            "%s: %d stored response(s) reused, %d question(s) to answer through %r (key from %s)",
            entry.name,
            len(stored),
            len(todo),
            answerer,
            endpoints.endpoint(entry.name).api_key_source,
        )
        kept.append(stored.assign(variant=entry.name))
        plans.append((entry, answerer, todo))
    yield replacing(_stacked(kept, COMPARISON_RESPONSE_COLUMNS))
    for entry, answerer, todo in plans:
        try:
            for answer in answerer.answer_all(todo, description=f"{entry.name} answers"):
                record = answer.assign(
                    variant=entry.name,
                    generation_key=answerer.key,
                    answered_by=answerer.answered_by,
                )
                yield record.reindex(columns=list(COMPARISON_RESPONSE_COLUMNS))
        except openai_backend.EndpointConfigError as error:
            raise openai_backend.EndpointConfigError(
                f"comparison model {entry.name!r}: {error}"
            ) from None


def judge_comparison_models(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    previous_verdicts: pd.DataFrame,
    judge_endpoint: JudgeEndpoint,
    judge_config: JudgeConfig,
    comparison_models: tuple[ComparisonModelConfig, ...],
) -> Iterator[pd.DataFrame]:
    """Every comparison model's answers judged by the variants' judge, stored verdicts reused."""
    llm = (
        nodes.llm_judge(judge_config, judge_endpoint, "comparison models")
        if comparison_models
        else None
    )
    streams = [
        (
            entry.name,
            nodes.verdict_stream(
                questions_of(questions, entry),
                rows_of(responses, entry.name),
                rows_of(previous_verdicts, entry.name),
                judge_config,
                llm,
                entry.name,
            ),
        )
        for entry in comparison_models
    ]
    # Each stream's first chunk is its reusable stored verdicts: together they replace the store.
    first = [next(stream).assign(variant=name) for name, stream in streams]
    others = _others(previous_verdicts, comparison_models)
    yield replacing(_stacked([others, *first], COMPARISON_VERDICT_COLUMNS))
    for name, stream in streams:
        for chunk in stream:
            yield chunk.assign(variant=name).reindex(columns=list(COMPARISON_VERDICT_COLUMNS))


def score_comparison_models(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    verdict_records: pd.DataFrame,
    metrics_config: MetricsConfig,
    judge_config: JudgeConfig,
    comparison_models: tuple[ComparisonModelConfig, ...],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each comparison model's predictions and figures per category, by the variants' code
    (``nodes.score_answers``), stacked with a ``variant`` column first."""
    predictions, figures = [], []
    for entry in comparison_models:
        table, by_category = nodes.score_answers(
            questions_of(questions, entry),
            rows_of(responses, entry.name),
            rows_of(verdict_records, entry.name),
            metrics_config,
            judge_config,
            variant=entry.name,
        )
        predictions.append(table.assign(variant=entry.name))
        figures.append(by_category.assign(variant=entry.name))
    return _first_variant(predictions), _first_variant(figures)


def _first_variant(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=["variant"])
    table = pd.concat(frames, ignore_index=True)
    return table[["variant", *[c for c in table.columns if c != "variant"]]]


def compare_comparison_models(
    finetuned_predictions: pd.DataFrame,
    predictions: pd.DataFrame,
    metrics_by_category: pd.DataFrame,
    evaluation_config: EvaluationConfig,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Fine-tuned minus each comparison model, paired (``compare_with_finetuned``), per
    category; and the figures for the kedro run's MLflow run: ``<model>.<metric>`` (the
    variants' metric names) and ``<model>.comparison.<figure>`` (overall)."""
    evaluation, config = evaluation_config, evaluation_config.comparison
    tables: list[pd.DataFrame] = []
    metrics: dict[str, dict[str, float]] = {}
    for entry in evaluation.comparison_models:
        table = compare_with_finetuned(
            entry.name,
            rows_of(predictions, entry.name),
            finetuned_predictions,
            text_only=entry.text_only,
            confidence_level=config.confidence_level,
            n_resamples=config.bootstrap_resamples,
            seed=config.seed,
            beta=evaluation.metrics.beta,
            p=evaluation.metrics.p,
        )
        tables.append(table)
        key = slug(entry.name)
        overall = rows_of(metrics_by_category, entry.name).iloc[0].drop("category")
        metrics.update({f"{key}.{k}": _value(v) for k, v in overall.items()})
        paired = table.iloc[0].drop(["model", "subset", "category"])
        metrics.update({f"{key}.comparison.{k}": _value(v) for k, v in paired.items()})
        row = table.iloc[0]
        logger.info(
            "finetuned - %s: %+.1f pp on %d paired questions (%s), McNemar p = %.3g "
            "(%d fine-tuned only, %d %s only)",
            entry.name,
            row["accuracy_diff"],
            row["n"],
            row["subset"],
            row["mcnemar_p"],
            row["finetuned_only"],
            row["model_only"],
            entry.name,
        )
    comparison = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["model"])
    return comparison, metrics


def _value(value: Any) -> dict[str, float]:
    return {"value": float(value), "step": 0}
