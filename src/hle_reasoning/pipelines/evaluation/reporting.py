"""Nodes that publish the evaluation: a variant's reliability diagram and MLflow run, Table 1
and the report."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from hle_reasoning.config import EvaluationConfig, ModelConfig
from hle_reasoning.datasets.evaluation import JudgeEndpoint
from hle_reasoning.hle.formatting import slug
from hle_reasoning.hle.judge import table as verdicts
from hle_reasoning.hle.scoring import report
from hle_reasoning.hle.scoring.metrics import small_sample_note
from hle_reasoning.summaries import VariantRun


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
