"""Nodes that publish the evaluation: a variant's reliability diagram and MLflow run, Table 1
and the report."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from hle_reasoning.config import EvaluationConfig
from hle_reasoning.hle.formatting import slug
from hle_reasoning.hle.judge import table as verdicts
from hle_reasoning.hle.scoring import report
from hle_reasoning.hle.scoring.comparison_models import comparison_models_section
from hle_reasoning.hle.scoring.metrics import SCORE_COLUMNS, small_sample_note
from hle_reasoning.modeling import completions
from hle_reasoning.pipelines.evaluation.plan import (
    STUDY_VARIANTS,
    EvaluationPlan,
    Variant,
    partitions,
)
from hle_reasoning.summaries import VariantRun


def publish_variants(
    plan: EvaluationPlan,
    predictions: dict[str, Any],
    metrics_by_category: dict[str, Any],
    adapter: str | None,
) -> tuple[dict[str, plt.Figure], list[VariantRun], dict[str, dict[str, float]]]:
    """Every variant's reliability diagram (``{file name: figure}``), MLflow child run
    (``publish_variant``), and figures for the kedro run's own run, under the variant's
    ``metric_prefix`` (``baseline.accuracy``, ``comparison_models.<model>.accuracy``, ...)."""
    tables = partitions(predictions, plan)
    figures = partitions(metrics_by_category, plan)
    diagrams, runs, metrics = {}, [], {}
    for variant in plan.variants:
        diagram, run, mine = publish_variant(
            tables[variant.name].drop(columns="variant", errors="ignore"),
            figures[variant.name].drop(columns="variant", errors="ignore"),
            plan,
            variant,
            adapter if variant.adapter else None,
        )
        diagrams[variant.slug] = diagram
        runs.append(run)
        metrics.update({f"{variant.metric_prefix}.{k}": v for k, v in mine.items()})
    return diagrams, runs, metrics


def publish_variant(
    predictions: pd.DataFrame,
    metrics_by_category: pd.DataFrame,
    plan: EvaluationPlan,
    variant: Variant,
    adapter: str | None = None,
) -> tuple[plt.Figure, VariantRun, dict[str, dict[str, float]]]:
    """The reliability diagram, the variant's MLflow child run, and its metrics for the parent run.

    The child run carries the same metric names for every variant (the registry's,
    ``hle.scoring.metrics.METRICS``: ``accuracy``, ``accuracy_ci``, ``calibration_error``, ...;
    per category its scores with their half-widths) and the tags ``variant``, ``model``,
    ``adapter`` and ``judge`` (the model that judged), so the MLflow UI compares variants side
    by side.
    """
    evaluation, model, test_subset = plan.evaluation, plan.model, plan.subset
    beta = evaluation.metrics.beta
    judged = predictions[predictions["judged"]]
    label = variant.label
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
    for row in metrics_by_category.iloc[1:].to_dict("records"):
        for name in SCORE_COLUMNS:
            metrics[f"{slug(row['category'])}.{name}"] = float(row[name])
    if variant.comparison:
        model_tags = {"model": variant.answering.model or variant.name, "backend": "openai"}
        subset = "text-only" if variant.text_only else "all"
    else:
        model_tags = {
            "model": model.name_or_path,
            "base_model": plan.base_model,
            "adapter": adapter or "none",
        }
        subset = (test_subset or {}).get("subset", "all")
    run = VariantRun(
        variant=variant.name,
        tags={
            "variant": variant.name,
            **model_tags,
            "judge": plan.judge_label(),
            "label": label,
            **(
                {"subset": test_subset["note"]}
                if test_subset and test_subset["note"] and not variant.comparison
                else {}
            ),
        },
        params={
            **{f"generation.{k}": v for k, v in evaluation.generation.to_dict().items()},
            "judge.kind": evaluation.judge.kind,
            "metrics.beta": beta,
            "metrics.p": evaluation.metrics.p,
            "questions": len(predictions),
            "subset": subset,
            **engine_params(evaluation, variant.name),
        },
        metrics=metrics,
        artifacts={
            "predictions.csv": predictions,
            f"judged_{variant.slug}.json": verdicts.official_judged_format(predictions, label),
            "metrics_by_category.csv": metrics_by_category,
            "reliability_diagram.png": diagram,
        },
    )
    # Undefined figures (the official calibration error below beta answers) are logged as NaN,
    # hle_reasoning.tracking's rule, so every run has the same metric names.
    parent_metrics = {name: {"value": value, "step": 0} for name, value in metrics.items()}
    return diagram, run, parent_metrics


def engine_params(evaluation: EvaluationConfig, variant: str) -> dict[str, str]:
    """The managed engine that answered ``variant`` (``backend: engine``): ``engine.name``,
    ``engine.version``, ``engine.command``, ``engine.precision``, from the description the
    answering node wrote beside the engine's log; none for the other backends."""
    import json

    from hle_reasoning.pipelines.evaluation.backends import engine_info_path

    answering = evaluation.answering.get(variant)
    if answering is None or answering.backend != "engine":
        return {}
    path = engine_info_path(answering, variant)
    if not path.is_file():
        return {}
    info = json.loads(path.read_text())
    return {
        "engine.name": info["engine"],
        "engine.version": info["version"],
        "engine.command": info["command"],
        "engine.precision": info["precision"],
        "engine.log": info["log"],
    }


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


def report_evaluation(
    plan: EvaluationPlan,
    metrics_by_category: dict[str, Any],
    paired_comparison: pd.DataFrame | None = None,
    comparison_models_comparison: pd.DataFrame | None = None,
    training_completions: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Table 1 (paper rows, both measured variants, their paired difference, the comparison
    models measured here), the per-category table, the report; a text-only model's rows and
    report say they cover the text-only subset. ``training_completions``: GRPO's completions
    table, a few of whose rows the report shows (none when the study has not trained yet)."""
    evaluation = plan.evaluation
    report_config, beta = evaluation.report, evaluation.metrics.beta
    subset_note = (plan.subset or {}).get("note", "")
    figures = {
        name: frame.drop(columns="variant", errors="ignore")
        for name, frame in partitions(metrics_by_category, plan).items()
    }
    measured, frames, notes = [], [], []
    if subset_note:
        notes.append(
            f"{subset_note[0].upper()}{subset_note[1:]}: the model takes no images, so it is "
            "evaluated, compared and trained on the questions without one, as the HLE paper "
            "evaluates text-only models."
        )
    for variant in STUDY_VARIANTS:
        frame = figures[variant]
        overall = frame.iloc[0].to_dict()
        label = plan.variant(variant).label
        measured.append({**overall, "model": label, "variant": variant, "note": subset_note})
        frames.append(frame.assign(variant=variant))
        note = small_sample_note(int(overall["judged"]), beta)
        if note:
            notes.append(f"{label}: {note}.")
        notes += _judging_notes(label, overall)
    sections = _comparison_parts(paired_comparison, evaluation)
    if plan.comparison_models:
        rows, others, other_notes = _comparison_model_rows(
            plan, figures, comparison_models_comparison
        )
        measured, frames, notes = measured + rows, frames + others, notes + other_notes
        section = comparison_models_section(
            comparison_models_comparison,
            finetuned_label=plan.variant("finetuned").label,
            confidence_level=evaluation.comparison.confidence_level,
        )
        sections["comparison"] = "\n\n".join(filter(None, [sections.get("comparison"), section]))
    table = report.table_1([row.to_dict() for row in report_config.paper_rows], measured)
    by_category = pd.concat(frames, ignore_index=True)
    by_category = by_category[["variant", *[c for c in by_category.columns if c != "variant"]]]
    markdown = report.report_markdown(
        table,
        by_category,
        paper_source=report_config.paper_source,
        test_set=report_config.test_set,
        judge=plan.judge_label(style="report"),
        beta=beta,
        p=evaluation.metrics.p,
        notes=notes,
        diagrams=[f"{v.slug}_reliability_diagram.png" for v in plan.variants],
        training=completions.report_markdown(training_completions, report_config.training_examples),
        **sections,
    )
    return table, by_category, markdown


def _comparison_model_rows(
    plan: EvaluationPlan, figures: dict[str, pd.DataFrame], comparison: pd.DataFrame
) -> tuple[list[dict[str, Any]], list[pd.DataFrame], list[str]]:
    """The comparison models' Table 1 rows, per-category figures and notes."""
    beta = plan.evaluation.metrics.beta
    rows, frames = [], []
    notes = [
        "Rows measured here (source: measured) answered the same test questions with the same "
        "prompt, judge and scoring code; the paper's rows are copied from the paper and were "
        "measured on a different question set (the whole release)."
    ]
    for entry in plan.comparison_models:
        frame = figures[entry.name]
        overall = frame.iloc[0].to_dict()
        paired = comparison[
            (comparison["model"] == entry.name) & (comparison["category"] == "All")
        ].iloc[0]
        asked = int(paired["n"]) + int(paired["unpaired"])
        note = (
            f"{asked} of {int(paired['finetuned_questions'])} test questions: text-only subset"
            if entry.text_only
            else ""
        )
        rows.append({**overall, "model": entry.name, "variant": entry.name, "note": note})
        frames.append(frame.assign(variant=entry.name))
        small = small_sample_note(int(overall["judged"]), beta)
        if small:
            notes.append(f"{entry.name}: {small}.")
        notes += _judging_notes(entry.name, overall)
    return rows, frames, notes


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
