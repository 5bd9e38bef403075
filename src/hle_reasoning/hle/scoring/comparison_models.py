"""Other models against the fine-tuned one, paired on the test questions both answered: the
paired comparison of ``comparison.compare_predictions`` with the other model in the baseline's
place, and its section of the evaluation report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from hle_reasoning.hle.formatting import MISSING, format_number, markdown_table
from hle_reasoning.hle.scoring.comparison import compare_predictions

# compare_predictions names its first side "baseline"; here that side is the comparison model.
RENAMED = {"baseline_only": "model_only", "baseline_accuracy": "model_accuracy"}


def compare_with_finetuned(
    model: str,
    model_predictions: pd.DataFrame,
    finetuned_predictions: pd.DataFrame,
    *,
    text_only: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """Fine-tuned minus ``model`` per category (``All`` first), on the questions ``model`` was
    asked (a text-only model: the fine-tuned model's questions without an image).

    Columns: ``model``, ``subset`` (``all`` or ``text-only``), ``finetuned_questions`` (the
    fine-tuned model's questions of the category, before the subset), then the figures of
    ``PairedComparison.record`` with ``model_only`` / ``model_accuracy`` for the baseline's.
    ``options`` go to ``compare_predictions`` (confidence level, resamples, seed, beta, p).
    """
    asked = set(model_predictions["id"].astype(str))
    finetuned = finetuned_predictions[finetuned_predictions["id"].astype(str).isin(asked)]
    results = compare_predictions(model_predictions, finetuned, **options)
    table = pd.DataFrame([r.record() for r in results]).rename(columns=RENAMED)
    counts = finetuned_predictions.groupby(finetuned_predictions["category"].astype(str)).size()
    table.insert(0, "model", model)
    table.insert(1, "subset", "text-only" if text_only else "all")
    table.insert(
        2,
        "finetuned_questions",
        [
            len(finetuned_predictions) if c == "All" else int(counts.get(c, 0))
            for c in table["category"]
        ],
    )
    return table


def _interval(row: dict[str, Any], name: str) -> str:
    value = format_number(row[name], 1, signed=True)
    low = format_number(row[f"{name}_ci_low"], 1, signed=True)
    high = format_number(row[f"{name}_ci_high"], 1, signed=True)
    return value if MISSING in (value, low, high) else f"{value} [{low}, {high}]"


def paired_on(row: dict[str, Any]) -> str:
    """Which questions a comparison was paired on, in words with the counts."""
    n, total = int(row["n"]), int(row["finetuned_questions"])
    where = f"{n} paired questions"
    if row["subset"] == "text-only":
        where += (
            f" of the text-only subset ({total - n - int(row['unpaired'])} of the fine-tuned "
            f"model's {total} questions have an image and are left out)"
        )
    if int(row["unpaired"]):
        where += f"; {int(row['unpaired'])} not answered and judged by both, left out"
    return where


def comparison_models_section(
    comparison: pd.DataFrame, *, finetuned_label: str, confidence_level: float
) -> str:
    """The report's "Comparison models against fine-tuned" section (overall rows)."""
    level = f"{100 * confidence_level:g}%"
    overall = comparison[comparison["category"] == "All"].to_dict("records")
    header = [
        "Model",
        "Paired n",
        "Both correct",
        "Model only",
        "Fine-tuned only",
        "Both wrong",
        "Model (%)",
        "Fine-tuned (%)",
        f"Fine-tuned − model (pp) [{level} CI]",
        "McNemar p",
        f"Calibration error, all bins, diff (pp) [{level} CI]",
    ]
    rows = [
        [
            row["model"],
            int(row["n"]),
            int(row["both_correct"]),
            int(row["model_only"]),
            int(row["finetuned_only"]),
            int(row["both_wrong"]),
            format_number(row["model_accuracy"], 1),
            format_number(row["finetuned_accuracy"], 1),
            _interval(row, "accuracy_diff"),
            format_number(row["mcnemar_p"], 3),
            _interval(row, "calibration_error_all_bins_diff"),
        ]
        for row in overall
    ]
    lines: Sequence[str] = [f"* {row['model']}: {paired_on(row)}." for row in overall]
    return "\n".join(
        [
            f"## Comparison models against {finetuned_label}",
            "",
            "Each comparison model answered the same test questions through its "
            "OpenAI-compatible endpoint, with the same prompt, judge and scoring code; each is "
            "paired with the fine-tuned model on the questions both answered and were judged on "
            "(the same tests as baseline against fine-tuned: Newcombe's interval, McNemar's "
            "exact test, the paired bootstrap of the calibration error).",
            "",
            markdown_table(header, rows, "l" + "r" * 10),
            "",
            *lines,
        ]
    )
