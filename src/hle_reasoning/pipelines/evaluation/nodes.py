"""Nodes of the evaluation pipeline: thin adapters from config to hle_reasoning.hle and .modeling."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from hle_reasoning.config import (
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
from hle_reasoning.hle.scoring.metrics import small_sample_note
from hle_reasoning.modeling import families, generation
from hle_reasoning.pipelines.evaluation import backends, workers
from hle_reasoning.summaries import VariantRun

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
    answering_config: dict[str, Any] | None = None,
    answer_endpoints: AnswerEndpoints | None = None,
    adapter: str | None = None,
    *,
    variant: str = "",
) -> Iterator[pd.DataFrame]:
    """Answer the test questions batch by batch; stored answers of the same setup are kept.

    ``evaluation.answering.<variant>.backend`` says who answers: ``local`` (in-process
    generate, below) or ``openai`` (an OpenAI-compatible server, ``modeling.serving``; each
    answer stored as it arrives, ``distributed`` ignored).

    Yields first the reusable stored responses (replacing the store, which drops stale ones),
    then each new batch as soon as it is generated, so a killed run resumes where it stopped.
    With ``distributed.num_processes`` > 1 the questions to answer are spread over worker
    processes (``workers.answer_share``), each writing its own shard of ``response_shards``;
    their answers are then merged into the store in question order, in one save. Answers left
    in shards by a killed run count as stored.
    """
    config, model, scale = generation_config, model_config, distributed_config
    served = backends.served_answerer(answering_config, answer_endpoints, config, variant)
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
            network, processor, todo, config, description=f"{variant} answers"
        ):
            yield batch.assign(generation_key=key, answered_by="local")
    if leftover is not None and len(leftover):
        response_shards.clear()  # their answers are in the store now (saved at the last yield)


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
    judge = judge_config
    kind, settings = judge.kind, judge.llm
    llm = None
    if kind == "llm":
        llm = LLMJudge(
            model=judge.model_used(judge_endpoint.model),
            base_url=judge_endpoint.base_url or settings.base_url,
            api_key=judge_endpoint.api_key,
            max_retries=settings.max_retries,
            timeout_s=settings.timeout_s,
            max_completion_tokens=settings.max_completion_tokens,
        )
        logger.info(
            "%s: judging with %r (key from %s)", variant, llm, judge_endpoint.api_key_source
        )
    yield from first_replacing(
        verdicts.judge_table(
            questions,
            responses,
            previous_verdicts,
            judge=kind,
            rules=judge.rules,
            llm=llm,
            workers=settings.workers,
            description=f"{variant} verdicts",
        )
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
        "%s: accuracy %.2f%% ± %.2f (%d judged / %d answered), calibration error %s (official), "
        "%s (all bins)",
        variant,
        overall["accuracy"],
        overall["accuracy_ci"],
        overall["judged"],
        overall["answered"],
        format_number(overall["calibration_error"], 2, "%"),
        format_number(overall["calibration_error_all_bins"], 2, "%"),
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


def publish_variant(
    predictions: pd.DataFrame,
    metrics_by_category: pd.DataFrame,
    evaluation_config: EvaluationConfig,
    model_config: ModelConfig,
    judge_endpoint: JudgeEndpoint,
    base_model: str,
    test_subset: dict[str, Any] | None = None,
    adapter: str | None = None,
    *,
    variant: str = "",
) -> tuple[plt.Figure, VariantRun, dict[str, dict[str, float]]]:
    """The reliability diagram, the variant's MLflow child run, and its metrics for the parent run.

    The child run carries the same metric names for every variant (``accuracy``,
    ``accuracy_ci``, ``calibration_error``, ...) and the tags ``variant``, ``model``,
    ``adapter`` and ``judge`` (the model that judged), so the MLflow UI compares variants side
    by side.
    """
    evaluation, model = evaluation_config, model_config
    beta = evaluation.metrics.beta
    judged = predictions[predictions["judged"]]
    label = evaluation.report.label(variant, model.name_or_path)
    diagram = report.reliability_diagram(
        judged["confidence"].astype(float),
        judged["correct"].astype(bool),
        title=label,
        n_bins=evaluation.metrics.reliability_bins,
        beta=beta,
    )
    overall = metrics_by_category.iloc[0].drop("category").to_dict()
    extra = {
        "has_answer_line": 100.0 * float(predictions["extracted_answer"].notna().mean())
        if len(predictions)
        else float("nan"),
        "finished": 100.0 * float(predictions["finished"].fillna(False).astype(bool).mean())
        if len(predictions)
        else float("nan"),
        "response_tokens_mean": float(predictions["response_tokens"].astype(float).mean()),
    }
    metrics = {**{k: float(v) for k, v in overall.items()}, **extra}
    for row in metrics_by_category.iloc[1:].itertuples():
        for name in ("accuracy", "accuracy_ci", "calibration_error", "calibration_error_all_bins"):
            metrics[f"{slug(row.category)}.{name}"] = float(getattr(row, name))
    run = VariantRun(
        variant=variant,
        tags={
            "variant": variant,
            "model": model.name_or_path,
            "base_model": base_model,
            "adapter": adapter or "none",
            "judge": evaluation.judge.label(judge_endpoint.model),
            "label": label,
            **({"subset": test_subset["note"]} if test_subset and test_subset["note"] else {}),
        },
        params={
            **{f"generation.{k}": v for k, v in evaluation.generation.to_dict().items()},
            "judge.kind": evaluation.judge.kind,
            "metrics.beta": beta,
            "metrics.p": evaluation.metrics.p,
            "questions": len(predictions),
            "subset": (test_subset or {}).get("subset", "all"),
        },
        metrics=metrics,
        artifacts={
            "predictions.csv": predictions,
            f"judged_{variant}.json": verdicts.official_judged_format(predictions, label),
            "metrics_by_category.csv": metrics_by_category,
            "reliability_diagram.png": diagram,
        },
    )
    # Undefined figures (the official calibration error below beta answers) are logged as NaN,
    # hle_reasoning.tracking's rule, so every run has the same metric names.
    parent_metrics = {name: {"value": value, "step": 0} for name, value in metrics.items()}
    return diagram, run, parent_metrics


def _judging_notes(label: str, overall: dict[str, Any]) -> list[str]:
    """An incomplete judging, and the rules judge's agreement with an LLM judge, in words."""
    notes = []
    unjudged = int(overall["answered"] - overall["judged"])
    if unjudged:
        notes.append(
            f"{label}: incomplete: {int(overall['judged'])} of {int(overall['answered'])} answers "
            f"judged; the figures cover the judged ones only; rerun to judge the remaining "
            f"{unjudged}."
        )
    rate = overall.get("rules_agreement")
    if rate is not None and not math.isnan(float(rate)):
        notes.append(
            f"{label}: the offline rules judge agrees with the LLM judge on {float(rate):.1f}% "
            f"of the {int(overall['judged'])} judged answers "
            f"({int(overall['rules_false_accepts'])} false accepts, "
            f"{int(overall['rules_false_rejects'])} false rejects)."
        )
    return notes


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


def report_evaluation(
    baseline_metrics: pd.DataFrame,
    finetuned_metrics: pd.DataFrame,
    evaluation_config: EvaluationConfig,
    model_name_or_path: str,
    judge_endpoint: JudgeEndpoint,
    paired_comparison: pd.DataFrame | None = None,
    test_subset: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Table 1 (paper rows, both measured variants, their paired difference), the per-category
    table, the report; a text-only model's rows and report say they cover the text-only subset."""
    evaluation = evaluation_config
    report_config, beta = evaluation.report, evaluation.metrics.beta
    subset_note = (test_subset or {}).get("note", "")
    measured, frames, notes = [], [], []
    if subset_note:
        notes.append(
            f"{subset_note[0].upper()}{subset_note[1:]}: the model takes no images, so it is "
            "evaluated, compared and trained on the questions without one, as the HLE paper "
            "evaluates text-only models."
        )
    for variant, frame in (("baseline", baseline_metrics), ("finetuned", finetuned_metrics)):
        overall = frame.iloc[0].to_dict()
        label = report_config.label(variant, model_name_or_path)
        measured.append({**overall, "model": label, "variant": variant, "note": subset_note})
        frames.append(frame.assign(variant=variant))
        note = small_sample_note(int(overall["judged"]), beta)
        if note:
            notes.append(f"{label}: {note}.")
        notes += _judging_notes(label, overall)
    table = report.table_1([row.to_dict() for row in report_config.paper_rows], measured)
    by_category = pd.concat(frames, ignore_index=True)
    by_category = by_category[["variant", *[c for c in by_category.columns if c != "variant"]]]
    markdown = report.report_markdown(
        table,
        by_category,
        paper_source=report_config.paper_source,
        test_set=report_config.test_set,
        judge=evaluation.judge.label(judge_endpoint.model, style="report"),
        beta=beta,
        p=evaluation.metrics.p,
        notes=notes,
        diagrams=[f"{v}_reliability_diagram.png" for v in ("baseline", "finetuned")],
        **_comparison_parts(paired_comparison, evaluation),
    )
    return table, by_category, markdown


def _comparison_parts(
    paired_comparison: pd.DataFrame | None, evaluation: EvaluationConfig
) -> dict[str, str]:
    if paired_comparison is None or paired_comparison.empty:
        return {}
    config = evaluation.comparison
    return {
        "comparison_row": report.comparison_row_markdown(paired_comparison.iloc[0].to_dict()),
        "comparison": report.comparison_section(
            paired_comparison,
            confidence_level=config.confidence_level,
            bootstrap_resamples=config.bootstrap_resamples,
            seed=config.seed,
            beta=evaluation.metrics.beta,
        ),
    }
