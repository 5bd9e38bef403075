"""Nodes of the evaluation pipeline: thin adapters from config to hle_reasoning.hle and .modeling."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from hle_reasoning.config import (
    AnsweringConfig,
    DistributedConfig,
    EvaluationConfig,
    GenerationConfig,
    JudgeConfig,
    MetricsConfig,
    ModelConfig,
)
from hle_reasoning.datasets.endpoints import AnswerEndpoints
from hle_reasoning.datasets.evaluation import JSONLinesShards, JudgeEndpoint
from hle_reasoning.datasets.stores import first_replacing, replacing
from hle_reasoning.hle.data.records import reusable
from hle_reasoning.hle.formatting import ALL, format_number, slug
from hle_reasoning.hle.judge import agreement
from hle_reasoning.hle.judge import table as verdicts
from hle_reasoning.hle.judge.llm import LLMJudge
from hle_reasoning.hle.scoring import comparison, report
from hle_reasoning.hle.scoring.metrics import SCORES, small_sample_note
from hle_reasoning.modeling import families, generation
from hle_reasoning.pipelines.evaluation import backends, workers

logger = logging.getLogger(__name__)


def select_test_questions(
    focus_test: pd.DataFrame, base_model: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The test questions the model takes (a text-only model: the text-only subset) and what
    was left out, for the report, Table 1, MLflow and the run's summary."""
    family = families.family_of(base_model)
    questions, subset = families.questions_for(focus_test, family, split="test")
    if subset["note"]:
        logger.info("%s (%s family)", subset["note"], family.name)
    return questions, subset


def answer_questions(
    questions: pd.DataFrame,
    base_model: str,
    previous_responses: pd.DataFrame,
    generation_config: GenerationConfig,
    model_config: ModelConfig,
    distributed_config: DistributedConfig,
    response_shards: JSONLinesShards | None = None,
    answering_config: dict[str, AnsweringConfig] | None = None,
    answer_endpoints: AnswerEndpoints | None = None,
    adapter: str | None = None,
    *,
    variant: str = "",
) -> Iterator[pd.DataFrame]:
    """Answer the test questions batch by batch; stored answers of the same setup are kept.

    ``evaluation.answering.<variant>.backend`` says who answers: ``local`` (in-process
    generate, below) or ``openai`` (an OpenAI-compatible server, ``modeling.openai_backend``; each
    answer stored as it arrives, ``distributed`` ignored).

    Yields first the reusable stored responses (replacing the store, which drops stale ones),
    then each new batch as soon as it is generated, so a killed run resumes where it stopped.
    With ``distributed.num_processes`` > 1 the questions to answer are spread over worker
    processes (``workers.answer_share``), each writing its own shard of ``response_shards``;
    their answers are then merged into the store in question order, in one save. Answers left
    in shards by a killed run count as stored.
    """
    config, model, scale = generation_config, model_config, distributed_config
    answering = backends.answering_for(answering_config, variant)
    if answering.backend == "engine":
        served = backends.engine_answerer(answering, config, model, base_model, adapter, variant)
    else:
        served = backends.served_answerer(
            answering_config, answer_endpoints, config, variant, model.image_position
        )
    if served is not None:
        key, scale = served.key, DistributedConfig.from_params({"num_processes": 1})
    else:
        key = generation.generation_key(base_model, adapter, config, model)
    ids = set(questions["id"].astype(str))
    leftover = response_shards.load() if response_shards is not None else None
    stored = previous_responses
    if leftover is not None and len(leftover):
        stored = pd.concat([previous_responses, leftover], ignore_index=True)
    kept = replacing(
        reusable(
            stored,
            key_column="generation_key",
            keys={key},
            ids=ids,
            columns=generation.RESPONSE_COLUMNS,
        )
    )
    todo = questions[~questions["id"].astype(str).isin(set(kept["id"]))]
    logger.info(
        "%s: %d stored response(s) reused, %d question(s) to answer (setup %s)%s",
        variant,
        len(kept),
        len(todo),
        key,
        f" by {scale.num_processes} worker processes" if scale.enabled and len(todo) else "",
    )
    if isinstance(served, backends.EngineAnswerer):
        yield kept
        if not todo.empty:
            yield from _answer_by_engine(
                served, todo, answering, base_model, adapter, model, variant
            )
        return
    if served is not None:
        yield kept
        for answer in served.answer_all(todo, description=f"{variant} answers"):
            yield answer.assign(generation_key=key, answered_by=served.answered_by)
        return
    if scale.enabled:
        task = workers.AnswerTask(
            questions=todo,
            base_model=base_model,
            adapter=adapter,
            config=config,
            model=model,
            key=key,
            shards=response_shards,
            description=f"{variant} answers",
        )
        yield from workers.answer_distributed(questions, todo, kept, scale, variant, task)
        return
    yield kept
    if not todo.empty:
        network, processor = generation.load_for_evaluation(base_model, adapter, model)
        for batch in generation.generate_responses(
            network,
            processor,
            todo,
            config,
            description=f"{variant} answers",
            chat_template_date=model.chat_template_date,
            image_position=model.image_position,
        ):
            yield batch.assign(generation_key=key, answered_by="local")
    if leftover is not None and len(leftover):
        response_shards.clear()  # their answers are in the store now (saved at the last yield)


def _answer_by_engine(
    served: backends.EngineAnswerer,
    todo: pd.DataFrame,
    answering: Any,
    base_model: str,
    adapter: str | None,
    model: ModelConfig,
    variant: str,
) -> Iterator[pd.DataFrame]:
    """Start the variant's engine (merging the fine-tuned checkpoint first when needed), answer
    ``todo`` through it as the ``openai`` backend does, and stop it whatever happens."""
    from hle_reasoning.modeling import engines

    if adapter:
        backends.merged_checkpoint(base_model, adapter, model, answering.merged_model)
    with served.engine as engine:
        engines.write_info(backends.engine_info_path(answering, variant), engine.info())
        for answer in served.answer_all(todo, description=f"{variant} answers"):
            yield answer.assign(generation_key=served.key, answered_by=served.answered_by)


def judge_responses(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    previous_verdicts: pd.DataFrame,
    judge_endpoint: JudgeEndpoint,
    judge_config: JudgeConfig,
    *,
    variant: str = "",
) -> Iterator[pd.DataFrame]:
    """Judge every response with the configured judge (``rules`` or ``llm``), reusing stored verdicts."""
    yield from first_replacing(
        verdict_stream(
            questions,
            responses,
            previous_verdicts,
            judge_config,
            llm_judge(judge_config, judge_endpoint, variant),
            variant,
        )
    )


def llm_judge(
    judge_config: JudgeConfig, judge_endpoint: JudgeEndpoint, variant: str
) -> LLMJudge | None:
    """The LLM judge of ``evaluation.judge`` on its endpoint (``None`` for the rules judge)."""
    judge, settings = judge_config, judge_config.llm
    if judge.kind != "llm":
        return None
    llm = LLMJudge(
        model=judge.model_used(judge_endpoint.model),
        base_url=judge_endpoint.base_url or settings.base_url,
        api_key=judge_endpoint.api_key,
        max_retries=settings.max_retries,
        timeout_s=settings.timeout_s,
        max_completion_tokens=settings.max_completion_tokens,
        unreachable_after=settings.unreachable_after,
    )
    logger.info("%s: judging with %r (key from %s)", variant, llm, judge_endpoint.api_key_source)
    return llm


def verdict_stream(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    previous_verdicts: pd.DataFrame,
    judge_config: JudgeConfig,
    llm: LLMJudge | None,
    variant: str,
) -> Iterator[pd.DataFrame]:
    """``judge_table`` with the configured judge: the reusable stored verdicts, then new ones."""
    return verdicts.judge_table(
        questions,
        responses,
        previous_verdicts,
        judge=judge_config.kind,
        rules=judge_config.rules,
        llm=llm,
        workers=judge_config.llm.workers,
        description=f"{variant} verdicts",
    )


def score_answers(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    verdict_records: pd.DataFrame,
    metrics_config: MetricsConfig,
    judge_config: JudgeConfig,
    *,
    variant: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predictions table (response + verdict per question) and the figures per category.

    Accuracy, CI and calibration count judged answers only. With the ``llm`` judge the rules
    judge's verdicts are computed beside the LLM's (``rules_correct``, ``rules_method``), and
    their agreement goes into the figures (``rules_agreement``, ``rules_false_accepts``,
    ``rules_false_rejects``).
    """
    metrics, judge = metrics_config, judge_config
    predictions = verdicts.predictions_table(questions, responses, verdict_records)
    by_category = report.variant_metrics(predictions, beta=metrics.beta, p=metrics.p)
    if judge.kind == "llm":
        predictions, by_category = _beside_the_llm(predictions, by_category, judge.rules, variant)
    overall = by_category.iloc[0]
    unjudged = int(overall["answered"] - overall["judged"])
    if unjudged:
        logger.warning(
            "%s: incomplete: %d of %d answers are not judged (left out of the metrics); "
            "rerun to judge the remaining %d",
            variant,
            unjudged,
            int(overall["answered"]),
            unjudged,
        )
    note = small_sample_note(int(overall["judged"]), metrics.beta)
    if note:
        logger.warning("%s: %s", variant, note)
    logger.info(
        "%s: %d judged / %d answered; %s",
        variant,
        overall["judged"],
        overall["answered"],
        "; ".join(f"{m.heading().lower()} {m.show(overall)}" for m in SCORES),
    )
    return predictions, by_category


def _beside_the_llm(
    predictions: pd.DataFrame,
    by_category: pd.DataFrame,
    rules: verdicts.RulesOptions,
    variant: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rules verdicts beside the LLM's, and their agreement per category (judged rows)."""
    judged = predictions[predictions["judged"]].rename(columns={"correct": "llm_correct"})
    beside = agreement.with_rules_verdicts(
        judged[["id", "category", "answer_type", "answer", "response", "llm_correct"]],
        rel_tol=rules.rel_tol,
        math_verify=rules.math_verify,
    )
    predictions = predictions.merge(
        beside[["id", "rules_correct", "rules_method"]], on="id", how="left"
    )
    summary = agreement.agreement_summary(beside)
    figures = summary[summary["group"].isin(["all", "category"])].set_index("value")
    by_category = by_category.copy()
    for column in ("agreement", "false_accepts", "false_rejects"):
        by_category[f"rules_{column}"] = [
            float(figures.loc[c, column]) if c in figures.index else float("nan")
            for c in by_category["category"]
        ]
    logger.info("%s: %s", variant, agreement.summary_line(summary))
    return predictions, by_category


def compare_variants(
    baseline_predictions: pd.DataFrame,
    finetuned_predictions: pd.DataFrame,
    evaluation_config: EvaluationConfig,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], comparison.PairedComparison]:
    """Fine-tuned against baseline on the questions both answered and were judged on.

    Returns the comparison per category (``All`` first), its figures for the parent MLflow run
    (``comparison.accuracy_diff``, ..., ``comparison.<category>.accuracy_diff``, ...; NaN when
    undefined), and the overall comparison as a typed object for the run's summary.
    """
    evaluation = evaluation_config
    config = evaluation.comparison
    results = comparison.compare_predictions(
        baseline_predictions,
        finetuned_predictions,
        confidence_level=config.confidence_level,
        n_resamples=config.bootstrap_resamples,
        seed=config.seed,
        beta=evaluation.metrics.beta,
        p=evaluation.metrics.p,
    )
    table = pd.DataFrame([result.record() for result in results])
    metrics: dict[str, dict[str, float]] = {}
    for row in table.to_dict("records"):
        prefix = "" if row["category"] == ALL else f"{slug(row['category'])}."
        for name, value in row.items():
            if name != "category":
                metrics[f"{prefix}{name}"] = {"value": float(value), "step": 0}
    overall = results[0]
    logger.info(
        "finetuned - baseline: %s pp [%s, %s] on %d paired questions, McNemar p = %s "
        "(%d fine-tuned only, %d baseline only); %d left out",
        format_number(overall.accuracy_diff, signed=True),
        format_number(overall.accuracy_diff_ci_low, signed=True),
        format_number(overall.accuracy_diff_ci_high, signed=True),
        overall.table.n,
        format_number(overall.mcnemar_p, 3),
        overall.table.finetuned_only,
        overall.table.baseline_only,
        overall.unpaired,
    )
    return table, metrics, overall
