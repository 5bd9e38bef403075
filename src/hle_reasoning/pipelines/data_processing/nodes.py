"""Nodes of the data_processing pipeline: thin adapters from config to hle_reasoning.hle."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from hle_reasoning.config import DataProcessingConfig
from hle_reasoning.config.data_processing import FocusSplitError
from hle_reasoning.hle.data import sampling, statistics
from hle_reasoning.hle.formatting import slug
from hle_reasoning.tracking import metric_value

logger = logging.getLogger(__name__)


def split_questions(
    questions: pd.DataFrame, config: DataProcessingConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per category, a Cochran-sized test set drawn stratified by answer type and image."""
    split = config.split
    return sampling.stratified_split(
        questions,
        confidence_level=split.confidence_level,
        margin_of_error=split.margin_of_error,
        proportion=split.proportion,
        seed=split.seed,
        z=split.z,
    )


def select_focus(
    train: pd.DataFrame, test: pd.DataFrame, focus_categories: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test questions of the focus categories (the proposal: Math); refused
    (nothing returned, so nothing written) when a category is missing or a side is empty.
    ``focus_categories``: the field of the ``data_processing`` block Kedro built for
    ``split_questions``."""
    sizes = {str(c): int(n) for c, n in test["category"].value_counts().items()}
    problems = sampling.focus_problems(
        pd.concat([train["category"], test["category"]]), focus_categories, sizes
    )
    if problems:
        raise FocusSplitError(problems)
    focus_train = train[train["category"].isin(focus_categories)].reset_index(drop=True)
    focus_test = test[test["category"].isin(focus_categories)].reset_index(drop=True)
    logger.info(
        "Focus %s: %d train / %d test questions (%d / %d with images)",
        list(focus_categories),
        len(focus_train),
        len(focus_test),
        int((focus_train["image"] != "").sum()),
        int((focus_test["image"] != "").sum()),
    )
    return focus_train, focus_test


def report_leaks(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Identical question texts on both sides of the split (HLE holds a few duplicates)."""
    leaks = sampling.find_leaks(train, test)
    if len(leaks):
        logger.warning(
            "%d question text(s) appear in both train and test (ids %s); see split_leaks.csv",
            len(leaks),
            ", ".join(f"{a}/{b}" for a, b in leaks[["train_id", "test_id"]].values[:5]),
        )
    return leaks


def compute_statistics(questions: pd.DataFrame, test: pd.DataFrame, tokenizer: Any) -> pd.DataFrame:
    """The proposal's Tables 3 and 4, per category and overall."""

    from hle_reasoning.modeling.models import count_tokens

    tokens = statistics.token_lengths(questions["question"], lambda t: count_tokens(tokenizer, t))
    return statistics.dataset_statistics(questions, tokens, set(test["id"].astype(str)))


def render_statistics_report(
    hle_statistics: pd.DataFrame, split_sizes: pd.DataFrame, hle_source: str, tokenizer_name: str
) -> str:
    """Tables 2, 3 and 4 as Markdown."""
    return statistics.statistics_markdown(hle_statistics, split_sizes, hle_source, tokenizer_name)


def plot_category_counts(hle_statistics: pd.DataFrame, hle_source: str) -> plt.Figure:
    """Figure 1: questions per category."""
    return statistics.category_bar_chart(hle_statistics, f"Questions per category ({hle_source})")


def statistics_metrics(
    hle_statistics: pd.DataFrame, split_sizes: pd.DataFrame, split_leaks: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """The statistics as MLflow metrics: ``<category>.<statistic>`` (an undefined one, e.g. the
    standard deviation of a single question, as NaN: ``hle_reasoning.tracking``'s rule)."""
    metrics: dict[str, dict[str, float]] = {}
    for _, row in hle_statistics.iterrows():
        for column, value in row.items():
            if column != "category":
                metrics[f"{slug(row['category'])}.{column}"] = {
                    "value": metric_value(value),
                    "step": 0,
                }
    for _, row in split_sizes.iterrows():
        for column in ("test_size", "train_size"):
            metrics[f"{slug(row['category'])}.{column}"] = {"value": float(row[column]), "step": 0}
    metrics["split.leaks"] = {"value": float(len(split_leaks)), "step": 0}
    return metrics
