"""The evaluation report: per-variant figures, the proposal's Table 1, and reliability diagrams."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hle_reasoning.hle.formatting import ALL, MISSING, format_number, markdown_table
from hle_reasoning.hle.scoring.metrics import (
    BETA,
    METRICS,
    SCORE_COLUMNS,
    SCORES,
    SmallSampleWarning,
    calibration_error,
    summarize,
)

# The columns of a per-category table: the registry's figures, then the questions answered
# (a count of the predictions table, not of the judged answers the metrics read).
METRIC_COLUMNS = (*(metric.name for metric in METRICS), "answered")


def variant_metrics(
    predictions: pd.DataFrame, *, beta: int = BETA, p: str | int = "2"
) -> pd.DataFrame:
    """Figures per category and overall (row ``All``), from a predictions table.

    Accuracy, its CI and calibration are computed over the judged answers only (``n`` =
    ``judged``): a judgement that failed is not a wrong answer. ``answered`` counts the
    questions with a response; ``judged < answered`` means the run is incomplete.
    """
    rows = []
    groups = [(ALL, predictions)] + [
        (category, group) for category, group in predictions.groupby("category", sort=True)
    ]
    for category, group in groups:
        judged = group[group["judged"]]
        figures = summarize(
            judged["correct"].astype(bool).to_numpy(),
            judged["confidence"].astype(float).to_numpy(),
            beta=beta,
            p=p,
        )
        answered = int(group["response"].notna().sum()) if "response" in group else len(group)
        rows.append({"category": category, **figures, "answered": float(answered)})
    return pd.DataFrame(rows, columns=["category", *METRIC_COLUMNS])


def table_1(
    paper_rows: Sequence[dict[str, Any]],
    measured: Sequence[dict[str, Any]],
) -> pd.DataFrame:
    """The proposal's Table 1: the HLE paper's rows as published, then the measured rows.

    Its figures are the registry's scores with their half-widths (``SCORE_COLUMNS``).
    ``paper_rows``: dicts with ``model``, ``note`` and the figures the paper gives
    (``accuracy``, ``calibration_error``; any other is None: not reported); ``measured``: dicts
    with ``model``, ``variant`` and the figures of ``variant_metrics``'s ``All`` row.
    """
    rows = []
    for row in paper_rows:
        rows.append(
            {
                "model": row["model"],
                "variant": "",
                "source": row.get("source", "HLE paper"),
                "n": row.get("n"),
                **{name: _reported(row.get(name)) for name in SCORE_COLUMNS},
                "note": row.get("note", ""),
            }
        )
    for row in measured:
        rows.append(
            {
                "model": row["model"],
                "variant": row["variant"],
                "source": "measured",
                "n": int(row["n"]),
                "answered": int(row.get("answered", row["n"])),
                **{name: row.get(name, math.nan) for name in SCORE_COLUMNS},
                "note": row.get("note", ""),
            }
        )
    table = pd.DataFrame(rows)
    table["n"] = table["n"].astype("Int64")
    table["answered"] = table.get("answered", pd.Series(index=table.index)).astype("Int64")
    return table


def _reported(value: Any) -> float | None:
    """A paper row's figure as a number; None where the paper does not give it."""
    return None if value is None else float(value)


def _missing(value: Any) -> bool:
    return value is None or pd.isna(value)


def table_1_markdown(table: pd.DataFrame) -> str:
    """Table 1 in Markdown: a column per score of the registry (with its ``± half-width`` and
    its arrow), one decimal fewer than the per-category table. A figure a paper row does not
    give is left empty; an undefined measured one reads ``n/a``."""
    header = ["Model", *(m.heading(arrow=True) for m in SCORES), "n (judged / answered)", "Source"]
    rows = []
    for row in table.to_dict("records"):
        n = "" if _missing(row["n"]) else str(int(row["n"]))
        answered = row.get("answered")
        if n and not _missing(answered):
            n = f"{n} / {int(answered)}"
        figures = [
            ""
            if _missing(row.get(m.name)) and row["source"] != "measured"
            else m.show(row, m.digits - 1)
            for m in SCORES
        ]
        note = f" ({row['note']})" if row["note"] else ""
        rows.append([f"{row['model']}{note}", *figures, n, row["source"]])
    return markdown_table(header, rows, "l" + "r" * (len(SCORES) + 1) + "l")


def category_markdown(by_category: pd.DataFrame) -> str:
    """The per-category table: a column per figure of the registry (counts as "judged /
    answered")."""
    shown = [metric for metric in METRICS if not metric.count]
    header = [
        "Variant",
        "Category",
        "judged / answered",
        *(metric.heading(short=True) for metric in shown),
    ]
    rows = [
        [
            row["variant"],
            row["category"],
            f"{int(row['n'])} / {int(row.get('answered', row['n']))}",
            *(format_number(row.get(metric.name), metric.digits) for metric in shown),
        ]
        for row in by_category.to_dict("records")
    ]
    return markdown_table(header, rows, "ll" + "r" * (len(shown) + 1))


def report_markdown(
    table: pd.DataFrame,
    by_category: pd.DataFrame,
    *,
    paper_source: str,
    test_set: str,
    judge: str,
    beta: int,
    p: str,
    notes: Sequence[str] = (),
    diagrams: Sequence[str] = (),
    comparison_row: str | None = None,
    comparison: str | None = None,
    training: str | None = None,
) -> str:
    """The evaluation report in Markdown: Table 1, notes, the paired comparison, per-category
    figures, diagrams. ``comparison_row`` (``comparison_row_markdown``) goes under Table 1,
    ``comparison`` (``comparison_section``) after the notes, ``training`` (what GRPO generated)
    at the end."""
    described = "; ".join(
        metric.description.format(beta=beta, p=p) for metric in SCORES if metric.description
    )
    parts = [
        "# Evaluation: baseline against GRPO fine-tuned",
        "",
        "## Table 1. Comparative evaluation on Humanity's Last Exam",
        "",
        table_1_markdown(table) + (f"\n{comparison_row}" if comparison_row else ""),
        "",
        f"Paper rows: {paper_source}",
        "",
        f"Measured rows: {test_set}; judge `{judge}`; {described}. The paper's rows cover all "
        "HLE categories, the measured rows the test split of the focus categories only.",
    ]
    if notes:
        parts += ["", *[f"* {note}" for note in notes]]
    if comparison:
        parts += ["", comparison]
    parts += ["", "## Per category", "", category_markdown(by_category)]
    if diagrams:
        parts += ["", "## Reliability diagrams", ""]
        parts += [f"![{name}]({name})" for name in diagrams]
    if training:
        parts += ["", training]
    return "\n".join(parts) + "\n"


def reliability_diagram(
    confidence: Sequence[float],
    correct: Sequence[bool],
    *,
    title: str,
    n_bins: int = 10,
    beta: int = BETA,
) -> plt.Figure:
    """Accuracy against stated confidence in ``n_bins`` equal-width bins, with the counts.

    The title carries the calibration errors (official and all bins) for reference; the bars
    use equal-width bins, the usual reading of a reliability diagram, not the equal-count bins
    of the metric.
    """
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=bool)
    edges = np.linspace(0, 100, n_bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    hits = np.bincount(index, weights=corr.astype(float), minlength=n_bins)
    accuracy = np.divide(100 * hits, counts, out=np.full(n_bins, np.nan), where=counts > 0)
    centers = (edges[:-1] + edges[1:]) / 2
    width = 100 / n_bins

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 100], [0, 100], linestyle="--", color="grey", label="perfect calibration")
    top.bar(centers, np.nan_to_num(accuracy), width=width * 0.9, color="tab:blue", label="accuracy")
    filled = counts > 0  # a marker tells an accuracy of 0 from an empty bin
    top.plot(centers[filled], accuracy[filled], "o", color="tab:blue", markersize=4)
    top.set_ylabel("Accuracy (%)")
    top.set_ylim(0, 100)
    top.legend(loc="upper left", fontsize=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        official = calibration_error(conf, corr, beta=beta) if len(conf) else math.nan
        every = calibration_error(conf, corr, beta=beta, all_bins=True) if len(conf) else math.nan
    top.set_title(
        f"{title}\ncalibration error {format_number(official, 1, '%')} (official), {format_number(every, 1, '%')} (all bins), "
        f"n={len(conf)}",
        fontsize=9,
    )
    bottom.bar(centers, counts, width=width * 0.9, color="tab:grey")
    bottom.set_ylabel("Answers")
    bottom.set_xlabel("Stated confidence (%)")
    bottom.set_xlim(0, 100)
    fig.tight_layout()
    return fig


def _interval(value: float, low: float, high: float, digits: int = 1) -> str:
    if math.isnan(value):
        return MISSING
    low, high = format_number(low, digits, signed=True), format_number(high, digits, signed=True)
    return f"{format_number(value, digits, signed=True)} [{low}, {high}]"


def _p_value(p: float) -> str:
    return MISSING if math.isnan(p) else f"{p:.3g}"


def comparison_row_markdown(overall: dict[str, Any]) -> str:
    """The row under Table 1: fine-tuned minus baseline on the paired questions."""
    return (
        f"| **Fine-tuned − baseline** (paired; McNemar p = {_p_value(overall['mcnemar_p'])}; "
        f"discordant: {int(overall['finetuned_only'])} fine-tuned only, "
        f"{int(overall['baseline_only'])} baseline only) "
        f"| {_interval(overall['accuracy_diff'], overall['accuracy_diff_ci_low'], overall['accuracy_diff_ci_high'])} "
        f"| {_interval(overall['calibration_error_diff'], overall['calibration_error_diff_ci_low'], overall['calibration_error_diff_ci_high'])} "
        f"| {_interval(overall['calibration_error_all_bins_diff'], overall['calibration_error_all_bins_diff_ci_low'], overall['calibration_error_all_bins_diff_ci_high'])} "
        f"| {int(overall['n'])} | paired difference |"
    )


def detectability_note(overall: dict[str, Any], confidence_level: float = 0.95) -> str:
    """What the test set can detect: the reading of a null (or not null) result, in words."""
    n, m = int(overall["n"]), int(overall["discordant"])
    level = f"{100 * confidence_level:g}%"
    if n == 0:
        return "No question was answered and judged by both variants: nothing can be compared."
    observed = (
        f"The observed difference is {_interval(overall['accuracy_diff'], overall['accuracy_diff_ci_low'], overall['accuracy_diff_ci_high'])} pp "
        f"(McNemar p = {_p_value(overall['mcnemar_p'])}): "
    )
    excludes = overall["accuracy_diff_ci_low"] > 0 or overall["accuracy_diff_ci_high"] < 0
    observed += (
        f"its {level} interval excludes zero, a difference beyond chance."
        if excludes
        else f"its {level} interval includes zero, so it is consistent with no difference."
    )
    detectable = overall["detectable_diff"]
    smallest = overall.get("smallest_detectable_diff", math.nan)
    one_way = (
        f" The smallest difference {n} questions could show at all is {smallest:.1f} pp "
        f"({round(smallest * n / 100)} questions right for one variant only, none for the "
        "other)."
        if not math.isnan(smallest)
        else ""
    )
    if math.isnan(detectable):
        if m == 0:
            limit = (
                f"With {n} paired questions and no discordant pair (both variants gave the same "
                f"verdict on every question), there is no difference to test.{one_way}"
            )
        else:
            limit = (
                f"With {n} paired questions and only {m} discordant pair(s), no difference can "
                f"be told from chance: even all {m} favouring one variant would leave zero "
                f"inside the {level} interval.{one_way}"
            )
    else:
        needed = round((detectable * n / 100 + m) / 2)
        limit = (
            f"With {n} paired questions and these {m} discordant pairs, differences under "
            f"{detectable:.1f} pp are indistinguishable from chance: the {level} interval "
            f"excludes zero only when at least {needed} of the {m} discordant pairs favour one "
            f"variant (observed: {int(overall['finetuned_only'])} fine-tuned only, "
            f"{int(overall['baseline_only'])} baseline only).{one_way}"
        )
    return f"{observed} {limit}"


def _detectable(row: dict[str, Any]) -> str:
    smallest = row.get("smallest_detectable_diff", math.nan)
    if math.isnan(row["detectable_diff"]):
        return MISSING if math.isnan(smallest) else f"{MISSING} (at least {smallest:.1f})"
    return format_number(row["detectable_diff"], 1)


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """The per-category table of the paired comparison (``All`` first)."""
    header = [
        "Category",
        "Paired n",
        "Both correct",
        "Baseline only",
        "Fine-tuned only",
        "Both wrong",
        "Baseline (%)",
        "Fine-tuned (%)",
        "Difference (pp) [95% CI]",
        "McNemar p",
        "Detectable (pp)",
        "Calibration error diff (pp) [95% CI]",
        "all bins (pp) [95% CI]",
        "Left out",
    ]

    def interval(row: dict[str, Any], name: str) -> str:
        return _interval(row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"])

    rows = [
        [
            row["category"],
            int(row["n"]),
            int(row["both_correct"]),
            int(row["baseline_only"]),
            int(row["finetuned_only"]),
            int(row["both_wrong"]),
            format_number(row["baseline_accuracy"], 1),
            format_number(row["finetuned_accuracy"], 1),
            interval(row, "accuracy_diff"),
            _p_value(row["mcnemar_p"]),
            _detectable(row),
            interval(row, "calibration_error_diff"),
            interval(row, "calibration_error_all_bins_diff"),
            int(row["unpaired"]),
        ]
        for row in comparison.to_dict("records")
    ]
    return markdown_table(header, rows, "l" + "r" * 13)


def comparison_section(
    comparison: pd.DataFrame,
    *,
    confidence_level: float,
    bootstrap_resamples: int,
    seed: int,
    beta: int,
) -> str:
    """The report's "Baseline against fine-tuned" section."""
    overall = comparison.iloc[0].to_dict()
    level = f"{100 * confidence_level:g}%"
    parts = [
        "## Baseline against fine-tuned",
        "",
        "Both variants answer the same questions, so the comparison is paired: on the "
        f"{int(overall['n'])} questions both answered and were judged on "
        f"({int(overall['unpaired'])} left out), fine-tuned minus baseline.",
        "",
        comparison_markdown(comparison),
        "",
        f"**What the test set can detect.** {detectability_note(overall, confidence_level)}",
        "",
        f"* Accuracy difference: {level} interval by Newcombe's hybrid score method for paired "
        "proportions (Newcombe 1998, Statistics in Medicine 17:2635-2650, method 10: Wilson "
        "intervals of both accuracies combined with the correlation of the pairs). McNemar: "
        "exact two-sided binomial test on the discordant pairs (1 when there are none). "
        "Detectable: the smallest difference whose interval would exclude zero with these "
        "questions and this many discordant pairs (n/a: none would; in brackets the smallest "
        "difference this many questions could show, every discordant pair favouring one "
        "variant).",
        f"* Calibration error difference: {level} percentile interval of a paired bootstrap "
        f"over questions ({bootstrap_resamples} resamples, seed {seed}; both variants' "
        "calibration errors recomputed on each resample). The official figure is n/a below "
        f"beta = {beta} paired answers and 0 for both variants by construction from {beta} to "
        f"{2 * beta - 1}: read the all-bins difference there.",
    ]
    return "\n".join(parts)
