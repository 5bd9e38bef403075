"""Nodes of the evaluation pipeline: thin adapters from config to hle_reasoning.hle and .modeling."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from hle_reasoning.datasets.evaluation import JudgeEndpoint
from hle_reasoning.hle import report, verdicts
from hle_reasoning.hle.llm_judge import DEFAULT_JUDGE_MODEL, LLMJudge
from hle_reasoning.hle.metrics import small_sample_note
from hle_reasoning.modeling import generation
from hle_reasoning.modeling.models import TINY

logger = logging.getLogger(__name__)


def answer_questions(
    questions: pd.DataFrame,
    base_model: str,
    previous_responses: pd.DataFrame,
    generation_params: dict[str, Any],
    model_params: dict[str, Any],
    adapter: str | None = None,
    *,
    variant: str = "",
) -> Iterator[pd.DataFrame]:
    """Answer the test questions batch by batch; stored answers of the same setup are kept.

    Yields first the reusable stored responses (replacing the store, which drops stale ones),
    then each new batch as soon as it is generated, so a killed run resumes where it stopped.
    """
    config = generation.GenerationConfig.from_params(generation_params)
    key = generation.generation_key(base_model, adapter, config, model_params)
    ids = set(questions["id"].astype(str))
    stored = previous_responses
    if len(stored):
        stored = stored[(stored["generation_key"] == key) & stored["id"].astype(str).isin(ids)]
        stored = stored.drop_duplicates("id", keep="last")
    kept = stored.reindex(columns=list(generation.RESPONSE_COLUMNS)).reset_index(drop=True)
    kept.attrs["replace"] = True
    todo = questions[~questions["id"].astype(str).isin(set(kept["id"]))]
    logger.info(
        "%s: %d stored response(s) reused, %d question(s) to answer (setup %s)",
        variant,
        len(kept),
        len(todo),
        key,
    )
    yield kept
    if todo.empty:
        return
    model, processor = generation.load_for_evaluation(base_model, adapter, model_params)
    for batch in generation.generate_responses(
        model, processor, todo, config, description=f"{variant} answers"
    ):
        batch["generation_key"] = key
        yield batch


def judge_responses(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    previous_verdicts: pd.DataFrame,
    judge_endpoint: JudgeEndpoint,
    judge_params: dict[str, Any],
    *,
    variant: str = "",
) -> Iterator[pd.DataFrame]:
    """Judge every response with the configured judge (``rules`` or ``llm``), reusing stored verdicts."""
    kind = judge_params.get("kind", "rules")
    rules_params = judge_params.get("rules") or {}
    rules = verdicts.RulesOptions(
        rel_tol=float(rules_params.get("rel_tol", verdicts.RulesOptions.rel_tol)),
        math_verify=bool(rules_params.get("math_verify", True)),
    )
    llm_params = judge_params.get("llm") or {}
    llm = None
    if kind == "llm":
        llm = LLMJudge(
            model=judge_endpoint.model or llm_params.get("model") or DEFAULT_JUDGE_MODEL,
            base_url=judge_endpoint.base_url or llm_params.get("base_url"),
            api_key=judge_endpoint.api_key,
            max_retries=int(llm_params.get("max_retries", 5)),
            backoff_s=float(llm_params.get("backoff_s", 2.0)),
            timeout_s=float(llm_params.get("timeout_s", 600)),
            max_completion_tokens=int(llm_params.get("max_completion_tokens", 4096)),
        )
        logger.info(
            "%s: judging with %r (key from %s)", variant, llm, judge_endpoint.api_key_source
        )
    yield from verdicts.judge_table(
        questions,
        responses,
        previous_verdicts,
        judge=kind,
        rules=rules,
        llm=llm,
        workers=int(llm_params.get("workers", 8)),
        description=f"{variant} verdicts",
    )


def score_answers(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    verdict_records: pd.DataFrame,
    metrics_params: dict[str, Any],
    *,
    variant: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predictions table (response + verdict per question) and the figures per category."""
    predictions = verdicts.predictions_table(questions, responses, verdict_records)
    by_category = report.variant_metrics(
        predictions, beta=int(metrics_params["beta"]), p=str(metrics_params["p"])
    )
    overall = by_category.iloc[0]
    unjudged = int(overall["n"] - overall["judged"])
    if unjudged:
        logger.warning("%s: %d question(s) have no verdict and count as wrong", variant, unjudged)
    note = small_sample_note(int(overall["judged"]), int(metrics_params["beta"]))
    if note:
        logger.warning("%s: %s", variant, note)
    logger.info(
        "%s: accuracy %.2f%% ± %.2f (n=%d), calibration error %s (official), %s (all bins)",
        variant,
        overall["accuracy"],
        overall["accuracy_ci"],
        overall["n"],
        _percent(overall["calibration_error"]),
        _percent(overall["calibration_error_all_bins"]),
    )
    return predictions, by_category


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}%"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def publish_variant(
    predictions: pd.DataFrame,
    metrics_by_category: pd.DataFrame,
    evaluation_params: dict[str, Any],
    model_params: dict[str, Any],
    base_model: str,
    adapter: str | None = None,
    *,
    variant: str = "",
) -> tuple[plt.Figure, dict[str, Any], dict[str, dict[str, float]]]:
    """The reliability diagram, the variant's MLflow child run, and its metrics for the parent run.

    The child run carries the same metric names for every variant (``accuracy``,
    ``accuracy_ci``, ``calibration_error``, ...) and the tags ``variant``, ``model``,
    ``adapter`` and ``judge``, so the MLflow UI compares variants side by side.
    """
    metrics_params = evaluation_params["metrics"]
    beta = int(metrics_params["beta"])
    judged = predictions[predictions["judged"]]
    label = variant_label(variant, model_params["name_or_path"], evaluation_params["report"])
    figure = report.reliability_diagram(
        judged["confidence"].astype(float),
        judged["correct"].astype(bool),
        title=label,
        n_bins=int(metrics_params.get("reliability_bins", 10)),
        beta=beta,
    )
    overall = metrics_by_category.iloc[0].drop("category").to_dict()
    extra = {
        "answered": 100.0 * float(predictions["extracted_answer"].notna().mean())
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
            metrics[f"{_slug(row.category)}.{name}"] = float(getattr(row, name))
    judge = evaluation_params["judge"]
    judge_name = judge["kind"] if judge["kind"] == "rules" else f"llm:{judge['llm'].get('model')}"
    generation_params = evaluation_params["generation"]
    payload = {
        "tags": {
            "variant": variant,
            "model": model_params["name_or_path"],
            "base_model": base_model,
            "adapter": adapter or "none",
            "judge": judge_name,
            "label": label,
        },
        "params": {
            **{f"generation.{k}": v for k, v in generation_params.items()},
            "judge.kind": judge["kind"],
            "metrics.beta": beta,
            "metrics.p": metrics_params["p"],
            "questions": len(predictions),
        },
        "metrics": metrics,
        "artifacts": {
            "predictions.csv": predictions,
            f"judged_{variant}.json": verdicts.official_judged_format(predictions, label),
            "metrics_by_category.csv": metrics_by_category,
            "reliability_diagram.png": figure,
        },
    }
    # NaN (an undefined official calibration error below beta answers) is logged as NaN, so
    # every run has the same metric names.
    parent_metrics = {name: {"value": value, "step": 0} for name, value in metrics.items()}
    return figure, payload, parent_metrics


def variant_label(variant: str, name_or_path: str, report_params: dict[str, Any]) -> str:
    """The Table 1 row label of a variant, from ``evaluation.report.labels``."""
    model = report_params.get("model_names", {}).get(name_or_path)
    if model is None:
        model = "Tiny Mllama (random init)" if name_or_path == TINY else Path(name_or_path).name
    template = report_params.get("labels", {}).get(variant, "{model} ({variant})")
    return template.format(model=model, variant=variant)


def report_evaluation(
    baseline_metrics: pd.DataFrame,
    finetuned_metrics: pd.DataFrame,
    evaluation_params: dict[str, Any],
    model_name_or_path: str,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Table 1 (paper rows, then both measured variants), the per-category table, the report."""
    report_params = evaluation_params["report"]
    metrics_params = evaluation_params["metrics"]
    measured, frames, notes = [], [], []
    for variant, frame in (("baseline", baseline_metrics), ("finetuned", finetuned_metrics)):
        overall = frame.iloc[0].to_dict()
        label = variant_label(variant, model_name_or_path, report_params)
        measured.append({**overall, "model": label, "variant": variant})
        frames.append(frame.assign(variant=variant))
        note = small_sample_note(int(overall["judged"]), int(metrics_params["beta"]))
        if note:
            notes.append(f"{label}: {note}.")
    table = report.table_1(report_params["paper_rows"], measured)
    by_category = pd.concat(frames, ignore_index=True)
    by_category = by_category[["variant", *[c for c in by_category.columns if c != "variant"]]]
    judge = evaluation_params["judge"]
    judge_name = judge["kind"] if judge["kind"] == "rules" else f"llm ({judge['llm'].get('model')})"
    markdown = report.report_markdown(
        table,
        by_category,
        paper_source=report_params["paper_source"],
        test_set=report_params.get("test_set", "the test split of the focus categories"),
        judge=judge_name,
        beta=int(metrics_params["beta"]),
        p=str(metrics_params["p"]),
        notes=notes,
        diagrams=[f"{v}_reliability_diagram.png" for v in ("baseline", "finetuned")],
    )
    return table, by_category, markdown
