"""Nodes of the evaluation chain: every variant (baseline, fine-tuned, each comparison model)
answered, judged, scored and compared by the same nodes; thin adapters from the plan to
hle_reasoning.hle and .modeling."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from hle_reasoning.config import DistributedConfig, JudgeConfig, ModelConfig
from hle_reasoning.datasets.endpoints import AnswerEndpoints
from hle_reasoning.datasets.evaluation import JSONLinesShards, JudgeEndpoint
from hle_reasoning.datasets.stores import Wanted
from hle_reasoning.hle.formatting import ALL, format_number, slug
from hle_reasoning.hle.judge import agreement
from hle_reasoning.hle.judge import table as verdicts
from hle_reasoning.hle.judge.llm import LLMJudge
from hle_reasoning.hle.scoring import comparison, report
from hle_reasoning.hle.scoring.comparison_models import compare_with_finetuned
from hle_reasoning.hle.scoring.metrics import SCORES, small_sample_note
from hle_reasoning.modeling import generation, openai_backend
from hle_reasoning.pipelines.evaluation import backends, workers
from hle_reasoning.pipelines.evaluation.plan import (
    EvaluationPlan,
    Variant,
    partitions,
    questions_of,
    rows_of,
)

logger = logging.getLogger(__name__)


def answer_questions(
    plan: EvaluationPlan,
    questions: pd.DataFrame,
    adapter: str | None,
    answer_endpoints: AnswerEndpoints | None,
    distributed_config: DistributedConfig,
) -> dict[str, Wanted]:
    """Every variant answers its test questions; the ``responses`` store keeps the stored
    answers of the same setup and appends each new batch as it comes (``VariantStore``), so a
    killed run resumes where it stopped.

    A variant's ``backend`` says who answers: ``local`` (in-process generate; with
    ``distributed.num_processes`` > 1 spread over worker processes, ``workers.answer_share``,
    each writing its own shard, merged in question order), ``openai`` (an OpenAI-compatible
    server, ``modeling.openai_backend``; each answer stored as it arrives) or ``engine`` (a
    serving engine the run starts and stops). A comparison model is asked through ``openai``.
    """
    return {
        variant.name: _wanted_answers(
            plan,
            variant,
            questions_of(questions, variant),
            adapter,
            answer_endpoints,
            distributed_config,
        )
        for variant in plan.variants
    }


def _wanted_answers(
    plan: EvaluationPlan,
    variant: Variant,
    questions: pd.DataFrame,
    adapter: str | None,
    answer_endpoints: AnswerEndpoints | None,
    distributed_config: DistributedConfig,
) -> Wanted:
    config, model, scale = plan.evaluation.generation, plan.model, distributed_config
    name, answering = variant.name, variant.answering
    adapter = adapter if variant.adapter else None
    endpoints = answer_endpoints or AnswerEndpoints()
    if answering.backend == "engine":
        served = backends.engine_answerer(answering, config, model, plan.base_model, adapter, name)
    elif answering.backend == "openai":
        served = backends.served_answerer(
            answering,
            endpoints,
            config,
            name,
            model.image_position,
            variant.parameter,
            model.chat_template_date,
        )
    else:
        served = None
    if served is not None:
        key, scale = served.key, DistributedConfig.from_params({"num_processes": 1})
    else:
        key = generation.generation_key(plan.base_model, adapter, config, model)

    def make(todo: pd.DataFrame, kept: pd.DataFrame, shards: JSONLinesShards | None):
        logger.info(
            "%s: %d stored response(s) reused, %d question(s) to answer (setup %s)%s",
            name,
            len(kept),
            len(todo),
            key,
            f" by {scale.num_processes} worker processes" if scale.enabled and len(todo) else "",
        )
        todo = todo.drop(columns="generation_key")
        if todo.empty:
            return
        if isinstance(served, backends.EngineAnswerer):
            yield from _answer_by_engine(
                served, todo, answering, plan.base_model, adapter, model, name
            )
        elif served is not None:
            yield from _answer_served(served, todo, variant)
        elif scale.enabled:
            task = workers.AnswerTask(
                questions=todo,
                base_model=plan.base_model,
                adapter=adapter,
                config=config,
                model=model,
                key=key,
                shards=shards,
                description=f"{name} answers",
            )
            yield from workers.answer_distributed(todo, scale, name, task)
        else:
            network, processor = generation.load_for_evaluation(plan.base_model, adapter, model)
            for batch in generation.generate_responses(
                network,
                processor,
                todo,
                config,
                description=f"{name} answers",
                chat_template_date=model.chat_template_date,
                image_position=model.image_position,
            ):
                yield batch.assign(generation_key=key, answered_by="local")

    return Wanted(rows=questions.assign(generation_key=key), make=make)


def _answer_served(
    served: openai_backend.EndpointAnswerer, todo: pd.DataFrame, variant: Variant
) -> Iterator[pd.DataFrame]:
    try:
        for answer in served.answer_all(todo, description=f"{variant.name} answers"):
            yield answer.assign(generation_key=served.key, answered_by=served.answered_by)
    except openai_backend.EndpointConfigError as error:
        if not variant.comparison:
            raise
        raise openai_backend.EndpointConfigError(
            f"comparison model {variant.name!r}: {error}"
        ) from None


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
    plan: EvaluationPlan, questions: pd.DataFrame, responses: pd.DataFrame
) -> dict[str, Wanted]:
    """Every variant's responses judged by the configured judge (``rules`` or ``llm``); the
    ``verdicts`` store keeps the stored verdicts of the same judgement (an LLM judge is never
    paid twice for one) and appends the new ones as they come."""
    judge = plan.evaluation.judge
    llm = llm_judge(judge, plan.judge_endpoint, "evaluation")
    wanted = {}
    for variant in plan.variants:
        keyed = verdicts.judged_responses(
            questions_of(questions, variant),
            rows_of(responses, variant.name),
            judge=judge.kind,
            rules=judge.rules,
            llm=llm,
        )

        def make(todo, kept, shards, name=variant.name):
            return verdicts.judge_new(
                todo,
                judge=judge.kind,
                rules=judge.rules,
                llm=llm,
                workers=judge.llm.workers,
                description=f"{name} verdicts",
                reused=len(kept),
            )

        wanted[variant.name] = Wanted(rows=keyed, make=make)
    return wanted


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


def score_answers(
    plan: EvaluationPlan,
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    verdict_records: pd.DataFrame,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Every variant's predictions table and figures per category (``score_variant``), as
    ``{file name: table}`` (one file per variant), each with a ``variant`` column first."""
    predictions, figures = {}, {}
    for variant in plan.variants:
        table, by_category = score_variant(
            questions_of(questions, variant),
            rows_of(responses, variant.name),
            rows_of(verdict_records, variant.name),
            plan.evaluation.metrics,
            plan.evaluation.judge,
            variant=variant.name,
        )
        predictions[variant.slug] = _variant_first(table, variant.name)
        figures[variant.slug] = _variant_first(by_category, variant.name)
    return predictions, figures


def _variant_first(table: pd.DataFrame, name: str) -> pd.DataFrame:
    return table.assign(variant=name)[["variant", *table.columns]]


def score_variant(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    verdict_records: pd.DataFrame,
    metrics_config: Any,
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
    plan: EvaluationPlan, predictions: dict[str, Any]
) -> tuple[
    pd.DataFrame,
    pd.DataFrame,
    dict[str, dict[str, float]],
    dict[str, dict[str, float]],
    comparison.PairedComparison,
]:
    """Fine-tuned against baseline, and against each comparison model, on the questions both
    answered and were judged on (McNemar, Newcombe's interval, the calibration bootstrap).

    Returns the baseline comparison per category (``All`` first), the comparison models'
    (``compare_with_finetuned``), their figures for the parent MLflow run
    (``comparison.accuracy_diff``, ..., ``comparison.<category>.accuracy_diff``, ...; and
    ``evaluation.comparison_models.<model>.comparison.<figure>``, overall; NaN when undefined),
    and the overall baseline comparison as a typed object for the run's summary.
    """
    tables = {
        name: frame.drop(columns="variant", errors="ignore")
        for name, frame in partitions(predictions, plan).items()
    }
    table, metrics, overall = _baseline_comparison(
        tables["baseline"], tables["finetuned"], plan.evaluation
    )
    models, model_metrics = _comparison_models(plan, tables)
    return table, models, metrics, model_metrics, overall


def _baseline_comparison(
    baseline_predictions: pd.DataFrame, finetuned_predictions: pd.DataFrame, evaluation: Any
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], comparison.PairedComparison]:
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
                metrics[f"{prefix}{name}"] = _value(value)
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


def _comparison_models(
    plan: EvaluationPlan, tables: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Fine-tuned minus each comparison model, paired, per category; and the overall figures
    ``<model>.comparison.<figure>`` for the kedro run's MLflow run."""
    evaluation, config = plan.evaluation, plan.evaluation.comparison
    frames: list[pd.DataFrame] = []
    metrics: dict[str, dict[str, float]] = {}
    for variant in plan.comparison_models:
        table = compare_with_finetuned(
            variant.name,
            tables[variant.name],
            tables["finetuned"],
            text_only=variant.text_only,
            confidence_level=config.confidence_level,
            n_resamples=config.bootstrap_resamples,
            seed=config.seed,
            beta=evaluation.metrics.beta,
            p=evaluation.metrics.p,
        )
        frames.append(table)
        paired = table.iloc[0].drop(["model", "subset", "category"])
        metrics.update({f"{variant.slug}.comparison.{k}": _value(v) for k, v in paired.items()})
        row = table.iloc[0]
        logger.info(
            "finetuned - %s: %+.1f pp on %d paired questions (%s), McNemar p = %.3g "
            "(%d fine-tuned only, %d %s only)",
            variant.name,
            row["accuracy_diff"],
            row["n"],
            row["subset"],
            row["mcnemar_p"],
            row["finetuned_only"],
            row["model_only"],
            variant.name,
        )
    models = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model"])
    return models, metrics


def _value(value: Any) -> dict[str, float]:
    return {"value": float(value), "step": 0}
