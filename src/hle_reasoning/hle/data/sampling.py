"""Test-set sizes from Cochran's formula and the proposal's seeded, stratified split."""

from __future__ import annotations

import logging
from statistics import NormalDist

import numpy as np
import pandas as pd

from hle_reasoning.hle.data.schema import has_image

logger = logging.getLogger(__name__)

# The proposal's split: 90% confidence, a 5% margin of error, the most conservative proportion.
CONFIDENCE_LEVEL = 0.90
MARGIN_OF_ERROR = 0.05
PROPORTION = 0.5


def z_score(confidence_level: float) -> float:
    """Two-sided standard-normal quantile: 0.90 -> 1.6449, 0.95 -> 1.9600."""
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(
            f"confidence_level must lie strictly between 0 and 1 (got {confidence_level}); "
            "the proposal uses 0.90."
        )
    return NormalDist().inv_cdf(0.5 + confidence_level / 2.0)


def cochran_n(
    population: int,
    confidence_level: float = CONFIDENCE_LEVEL,
    margin_of_error: float = MARGIN_OF_ERROR,
    proportion: float = PROPORTION,
    z: float | None = None,
) -> float:
    """Unrounded n = n0 / (1 + (n0 - 1) / N), n0 = z^2 p (1 - p) / e^2 (Table 2's "Min test").

    ``z`` defaults to the exact quantile of ``confidence_level`` (0.90 -> 1.6449); the proposal's
    Table 2 percentages come from the rounded table value z = 1.645 (same rounded sizes).
    """
    if population < 0:
        raise ValueError(f"population must be >= 0 (got {population})")
    if not 0.0 < margin_of_error < 1.0:
        raise ValueError(f"margin_of_error must lie in (0, 1) (got {margin_of_error})")
    if not 0.0 < proportion < 1.0:
        raise ValueError(f"proportion must lie in (0, 1) (got {proportion})")
    if population == 0:
        return 0.0
    if z is None:
        z = z_score(confidence_level)
    elif z <= 0:
        raise ValueError(
            f"z must be positive (got {z}); leave it null to derive it from confidence_level"
        )
    n0 = z**2 * proportion * (1.0 - proportion) / margin_of_error**2
    return n0 / (1.0 + (n0 - 1.0) / population)


def cochran_sample_size(
    population: int,
    confidence_level: float = CONFIDENCE_LEVEL,
    margin_of_error: float = MARGIN_OF_ERROR,
    proportion: float = PROPORTION,
    z: float | None = None,
) -> int:
    """Cochran's test size rounded to the nearest integer: Math's 1,106 questions give 218."""
    n = cochran_n(population, confidence_level, margin_of_error, proportion, z)
    # Round half up, as the proposal's "rounded to the nearest integer" (Python's round() is
    # banker's rounding).
    return min(population, int(np.floor(n + 0.5)))


def strata_labels(df: pd.DataFrame) -> pd.Series:
    """Stratum of each question inside its category: answer type x image presence."""
    image = df["image"].map(lambda v: "image" if has_image(v) else "text")
    return df["answer_type"].astype(str) + "|" + image


def _allocate(sizes: pd.Series, total: int) -> pd.Series:
    """Split ``total`` over strata proportionally to ``sizes`` (largest remainders)."""
    quota = sizes / sizes.sum() * total
    base = np.floor(quota).astype(int)
    remainder = total - int(base.sum())
    # Ties between equal remainders go to the larger stratum, then to the stratum name, so the
    # allocation never depends on dict or hash order.
    order = sorted(sizes.index, key=lambda k: (-(quota[k] - base[k]), -sizes[k], k))
    for key in order[:remainder]:
        base[key] += 1
    return base.clip(upper=sizes)


def stratified_split(
    df: pd.DataFrame,
    confidence_level: float = CONFIDENCE_LEVEL,
    margin_of_error: float = MARGIN_OF_ERROR,
    proportion: float = PROPORTION,
    seed: int = 42,
    z: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split every category into train and test, the test size from Cochran's formula.

    Inside a category the test questions are spread over answer type x image presence in
    proportion to their sizes (largest remainders) and drawn at random with ``seed``.
    Returns ``(train, test, sizes)``; ``sizes`` has one row per category.
    """
    rng = np.random.default_rng(seed)
    strata = strata_labels(df)
    test_ids: list[str] = []
    rows = []
    for category in sorted(df["category"].unique()):
        in_cat = df["category"] == category
        population = int(in_cat.sum())
        n_test = cochran_sample_size(population, confidence_level, margin_of_error, proportion, z)
        cat_strata = strata[in_cat]
        sizes = cat_strata.value_counts().sort_index()
        allocation = _allocate(sizes, n_test)
        for stratum in sizes.index:
            ids = np.sort(df.loc[in_cat & (strata == stratum), "id"].astype(str).to_numpy())
            chosen = rng.choice(ids, size=int(allocation[stratum]), replace=False)
            test_ids.extend(chosen.tolist())
        rows.append(
            {
                "category": category,
                "questions": population,
                "cochran_n": cochran_n(
                    population, confidence_level, margin_of_error, proportion, z
                ),
                "test_size": n_test,
                "train_size": population - n_test,
                "test_pct": 100.0 * n_test / population,
                "train_pct": 100.0 * (population - n_test) / population,
                "min_test_pct": 100.0
                * cochran_n(population, confidence_level, margin_of_error, proportion, z)
                / population,
            }
        )
    is_test = df["id"].astype(str).isin(set(test_ids))
    train = df.loc[~is_test].reset_index(drop=True)
    test = df.loc[is_test].reset_index(drop=True)
    sizes = pd.DataFrame(rows)
    logger.info(
        "Split %d questions into %d train / %d test over %d categories",
        len(df),
        len(train),
        len(test),
        len(sizes),
    )
    return train, test, sizes


def find_leaks(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Questions in both train and test: same normalised text and the same image (or none)."""

    def keys(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
        # Two key columns, not one joined string: pandas 3's string dtype drops a "\x00"
        # separator, which glued the image onto the reported text.
        return pd.DataFrame(
            {
                id_column: frame["id"],
                "text": frame["question"].astype(str).str.lower().str.split().str.join(" "),
                "image": frame["image"].astype(str),
            }
        )

    leaks = keys(train, "train_id").merge(keys(test, "test_id"), on=["text", "image"])
    return leaks[["train_id", "test_id", "text"]].reset_index(drop=True)


def focus_problems(
    categories: pd.Series,
    focus_categories: list[str] | tuple[str, ...],
    test_sizes: dict[str, int],
    min_train: int = 1,
) -> list[str]:
    """Why the focus categories' split cannot feed training and evaluation (empty if it can).

    ``categories``: every question's category; ``test_sizes``: each category's test size;
    ``min_train``: the training questions one optimizer step needs.
    """
    counts = categories.value_counts()
    missing = [c for c in focus_categories if c not in counts.index]
    if missing:
        return [
            f"data_processing.focus_categories names {missing}, which the data does not contain; "
            f"choose from {sorted(counts.index)}."
        ]
    total = int(sum(counts[c] for c in focus_categories))
    n_test = int(sum(test_sizes.get(c, 0) for c in focus_categories))
    n_train = total - n_test
    where = f"data_processing.focus_categories {list(focus_categories)} ({total} question(s))"
    problems = []
    if n_train < min_train:
        problems.append(
            f"{where} leaves {n_train} training question(s), fewer than one optimizer step's "
            f"{min_train} (training.grpo.batch_size): add categories, use a larger export "
            "(hle_source), or lower training.grpo.batch_size."
        )
    if n_test == 0:
        problems.append(
            f"{where} leaves no test question to evaluate: add categories or use a larger export "
            "(hle_source)."
        )
    return problems


def category_test_sizes(
    df: pd.DataFrame,
    confidence_level: float = 0.90,
    margin_of_error: float = 0.05,
    proportion: float = 0.5,
    z: float | None = None,
) -> dict[str, int]:
    """Each category's test size, as :func:`stratified_split` draws it."""
    counts = df["category"].value_counts()
    return {
        str(c): cochran_sample_size(int(n), confidence_level, margin_of_error, proportion, z)
        for c, n in counts.items()
    }
