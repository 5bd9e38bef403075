"""Baseline against fine-tuned on the same questions: is the difference beyond chance?

Both variants answer the same test questions, so the comparison is paired: two overlapping
per-variant intervals say nothing about the difference. On the questions both variants answered
and were judged on:

* the 2x2 table of (baseline correct, fine-tuned correct);
* the accuracy difference, fine-tuned minus baseline, in percentage points, with Newcombe's
  hybrid score interval for paired proportions (Newcombe 1998, Statistics in Medicine
  17:2635-2650, method 10: a Wilson score interval for each variant's accuracy, combined
  square-and-add with the continuity-corrected correlation of the pairs). It is analytical, so
  deterministic, keeps to [-100, 100] pp, stays informative with no discordant pair (where a
  bootstrap interval collapses to a point) and with HLE's accuracies near 0%, where Wald
  intervals fail; Newcombe found its coverage close to nominal for small samples;
* McNemar's exact two-sided test: the discordant pairs against a binomial(b + c, 1/2); 1.0
  when there is no discordant pair;
* what the test set can detect: the smallest difference whose interval would exclude zero, with
  the same questions, concordant pairs and number of discordant pairs;
* the calibration error difference, fine-tuned minus baseline, with a percentile interval from a
  seeded paired bootstrap over questions (each resample draws questions, and both variants'
  calibration errors are recomputed on the same draw). The official figure keeps its caveats:
  undefined (NaN) below beta paired answers, and 0 for both variants by construction with
  beta..2 x beta - 1 of them; the all-bins variant is given beside it.

Every figure is the one ``scipy.stats`` gives (``binomtest``'s p-value and Wilson interval,
``bootstrap(..., paired=True, method="percentile")`` with the same seed; tested), computed with
``scipy.special`` and numpy: importing ``scipy.stats`` costs more than a cached report.
Accuracies and differences are percentages, as in the rest of ``hle_reasoning.hle.scoring.metrics``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from hle_reasoning.hle.formatting import ALL, MISSING, format_number
from hle_reasoning.hle.scoring.metrics import (
    BETA,
    SmallSampleWarning,
    calibration_error,
    calibration_errors,
)

CONFIDENCE_LEVEL = 0.95


@dataclass(frozen=True)
class PairedTable:
    """Counts of the paired verdicts (the 2x2 table of baseline x fine-tuned correctness)."""

    both_correct: int
    baseline_only: int  # baseline correct, fine-tuned wrong
    finetuned_only: int  # fine-tuned correct, baseline wrong
    both_wrong: int

    @property
    def n(self) -> int:
        return self.both_correct + self.baseline_only + self.finetuned_only + self.both_wrong

    @property
    def discordant(self) -> int:
        return self.baseline_only + self.finetuned_only


def _as_bool(values: Sequence[bool], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of verdicts (got shape {array.shape})")
    return array.astype(bool)


def paired_table(
    baseline_correct: Sequence[bool], finetuned_correct: Sequence[bool]
) -> PairedTable:
    """The 2x2 table of two verdict sequences over the same questions, in the same order."""
    base = _as_bool(baseline_correct, "baseline_correct")
    tuned = _as_bool(finetuned_correct, "finetuned_correct")
    if base.shape != tuned.shape:
        raise ValueError(
            "baseline_correct and finetuned_correct must pair the same questions "
            f"(got {len(base)} and {len(tuned)} verdicts)"
        )
    return PairedTable(
        both_correct=int((base & tuned).sum()),
        baseline_only=int((base & ~tuned).sum()),
        finetuned_only=int((~base & tuned).sum()),
        both_wrong=int((~base & ~tuned).sum()),
    )


def mcnemar_p(table: PairedTable) -> float:
    """Exact two-sided McNemar p-value of a paired table (1.0 without discordant pairs).

    With m the smaller discordant count and X ~ binomial(n = b + c, 1/2): P(X <= m) +
    P(X >= n - m) = 2 I_1/2(n - m, m + 1) (``scipy.special.betainc``), capped at 1, as
    ``scipy.stats.binomtest(c, n).pvalue`` computes it.
    """
    n = table.discordant
    m = min(table.baseline_only, table.finetuned_only)
    if 2 * m >= n - 1:  # no discordant pair, or a split as even as it can be
        return 1.0
    from scipy.special import betainc

    return min(1.0, 2 * float(betainc(n - m, m + 1, 0.5)))


def mcnemar_test(baseline_correct: Sequence[bool], finetuned_correct: Sequence[bool]) -> float:
    """Exact two-sided McNemar p-value of paired verdicts (1.0 without discordant pairs).

    The discordant pairs (one variant right, the other wrong) are tested against a fair coin
    (see ``mcnemar_p``); the concordant pairs carry no information on the difference.
    """
    return mcnemar_p(paired_table(baseline_correct, finetuned_correct))


def wilson_interval(successes: int, n: int, confidence_level: float) -> tuple[float, float]:
    """Wilson's score interval of the proportion ``successes / n`` (n >= 1), as fractions.

    ``scipy.stats.binomtest(successes, n).proportion_ci(confidence_level, method="wilson")``:
    its closed form, operation for operation, with its ends (0 at no success, 1 at all).
    """
    from scipy.special import ndtri

    z = ndtri(0.5 + 0.5 * confidence_level)
    p = successes / n
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z**2)
    low = 0.0 if successes == 0 else float(center - delta)
    high = 1.0 if successes == n else float(center + delta)
    return low, high


def newcombe_interval(
    table: PairedTable, confidence_level: float = CONFIDENCE_LEVEL
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for fine-tuned minus baseline accuracy, in pp.

    In Newcombe's notation (e, f, g, h) = (both correct, fine-tuned only, baseline only, both
    wrong) and theta = (f - g) / n. The Wilson intervals come from ``wilson_interval``; phi is
    Newcombe's continuity-corrected correlation (0 when a margin is empty). NaN for an empty
    table.
    """
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1) (got {confidence_level})")
    n = table.n
    if n == 0:
        return math.nan, math.nan
    e, f, g, h = table.both_correct, table.finetuned_only, table.baseline_only, table.both_wrong
    p1, p2 = (e + f) / n, (e + g) / n
    l1, u1 = wilson_interval(e + f, n, confidence_level)
    l2, u2 = wilson_interval(e + g, n, confidence_level)
    margins = (e + f) * (g + h) * (e + g) * (f + h)
    numerator = e * h - f * g
    if numerator > n / 2:
        numerator -= n / 2
    elif numerator > 0:
        numerator = 0
    phi = numerator / math.sqrt(margins) if margins else 0.0
    theta = p1 - p2
    below = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    above = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    low = max(-1.0, theta - math.sqrt(max(below, 0.0)))
    high = min(1.0, theta + math.sqrt(max(above, 0.0)))
    return 100.0 * low, 100.0 * high


def detectable_difference(table: PairedTable, confidence_level: float = CONFIDENCE_LEVEL) -> float:
    """The smallest difference (pp) whose interval excludes zero, the discordance held fixed.

    Keeps the questions, the concordant pairs and the number of discordant pairs as observed and
    moves the discordant pairs to one side, one at a time, until Newcombe's interval excludes
    zero. NaN when even all of them on one side would not (too few discordant pairs to show
    any difference). The interval is symmetric under swapping the variants, so one side is
    enough.
    """
    m = table.discordant
    for favoured in range((m + 1) // 2, m + 1):
        shifted = PairedTable(table.both_correct, m - favoured, favoured, table.both_wrong)
        low, _ = newcombe_interval(shifted, confidence_level)
        if low > 0:
            return 100.0 * (2 * favoured - m) / table.n
    return math.nan


def smallest_detectable_difference(
    table: PairedTable, confidence_level: float = CONFIDENCE_LEVEL
) -> float:
    """The smallest difference (pp) that this many questions could show at all.

    k questions right for one variant only, none for the other, the observed both-correct
    questions kept (as far as they fit) and the rest wrong for both; k grows until Newcombe's
    interval excludes zero. It reads a result with few discordant pairs: below it, no
    comparison on this many questions could tell the variants apart. NaN when none would.
    """
    n = table.n
    for k in range(1, n + 1):
        correct = min(table.both_correct, n - k)
        low, _ = newcombe_interval(PairedTable(correct, 0, k, n - k - correct), confidence_level)
        if low > 0:
            return 100.0 * k / n
    return math.nan


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (percentage points)."""

    value: float
    low: float
    high: float


def calibration_difference(
    baseline_confidence: Sequence[float],
    baseline_correct: Sequence[bool],
    finetuned_confidence: Sequence[float],
    finetuned_correct: Sequence[bool],
    *,
    beta: int = BETA,
    p: str | int = "2",
    n_resamples: int = 2000,
    seed: int = 0,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> dict[str, Interval]:
    """Fine-tuned minus baseline calibration error (pp), official and all bins, with intervals.

    The answers are paired (row i of every sequence is the same question). A seeded paired
    percentile bootstrap resamples questions and recomputes both variants' calibration errors
    on each resample (``calibration_errors``: all resamples at once), drawn as
    ``scipy.stats.bootstrap(..., paired=True, method="percentile")`` draws them from
    ``numpy.random.default_rng(seed)``: its interval for the seed. The official figure is NaN,
    with its interval, below ``beta`` paired answers, as the official figure itself is.
    """
    arrays = [
        np.asarray(baseline_confidence, dtype=float),
        np.asarray(baseline_correct, dtype=bool),
        np.asarray(finetuned_confidence, dtype=float),
        np.asarray(finetuned_correct, dtype=bool),
    ]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(
            "the confidences and verdicts of both variants must pair the same questions "
            f"(got lengths {[len(a) for a in arrays]})"
        )
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1 (got {n_resamples})")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1) (got {confidence_level})")
    n = len(arrays[0])
    variants = [True] + ([False] if n >= beta else [])  # all bins; official when defined
    nan = Interval(math.nan, math.nan, math.nan)
    if n == 0:
        return {"calibration_error_diff": nan, "calibration_error_all_bins_diff": nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        point = [
            calibration_error(arrays[2], arrays[3], beta=beta, p=p, all_bins=all_bins)
            - calibration_error(arrays[0], arrays[1], beta=beta, p=p, all_bins=all_bins)
            for all_bins in variants
        ]
    # Every resample's question indices in one draw, as scipy.stats.bootstrap makes it.
    draws = np.random.default_rng(seed).integers(0, n, (int(n_resamples), n))
    distribution = np.array(
        [
            calibration_errors(arrays[2], arrays[3], draws, beta=beta, p=p, all_bins=all_bins)
            - calibration_errors(arrays[0], arrays[1], draws, beta=beta, p=p, all_bins=all_bins)
            for all_bins in variants
        ]
    )
    alpha = (1 - confidence_level) / 2
    lows, highs = np.quantile(distribution, [alpha, 1 - alpha], axis=-1)
    every = Interval(point[0], float(lows[0]), float(highs[0]))
    official = Interval(point[1], float(lows[1]), float(highs[1])) if n >= beta else nan
    return {"calibration_error_diff": official, "calibration_error_all_bins_diff": every}


@dataclass(frozen=True)
class PairedComparison:
    """Fine-tuned against baseline on the paired questions of one category (or ``All``)."""

    category: str
    table: PairedTable
    unpaired: int  # questions left out: not answered and judged by both variants
    baseline_accuracy: float  # % of the paired questions
    finetuned_accuracy: float
    accuracy_diff: float  # fine-tuned minus baseline, pp
    accuracy_diff_ci_low: float
    accuracy_diff_ci_high: float
    mcnemar_p: float
    detectable_diff: float  # pp; NaN: no split of these discordant pairs would exclude zero
    smallest_detectable_diff: float  # pp: every discordant pair on one side, as few as possible
    calibration_error_diff: Interval
    calibration_error_all_bins_diff: Interval
    confidence_level: float = CONFIDENCE_LEVEL

    def headline(self) -> str:
        """One line of the run's closing summary: the difference, its interval, McNemar's p."""
        every = self.calibration_error_all_bins_diff
        calibration = (
            MISSING
            if math.isnan(every.value)
            else f"{format_number(every.value, signed=True)} pp "
            f"[{format_number(every.low, signed=True)}, {format_number(every.high, signed=True)}]"
        )
        return (
            f"  finetuned - baseline: {format_number(self.accuracy_diff, signed=True)} pp "
            f"[{format_number(self.accuracy_diff_ci_low, signed=True)}, "
            f"{format_number(self.accuracy_diff_ci_high, signed=True)}] "
            f"({100 * self.confidence_level:g}%, {self.table.n} paired), McNemar p = "
            f"{format_number(self.mcnemar_p, 3)} ({self.table.finetuned_only} fine-tuned only, "
            f"{self.table.baseline_only} baseline only); calibration error, all bins: {calibration}"
        )

    def record(self) -> dict[str, float | str]:
        """One flat row: the category, the counts and every figure (reports, CSV, MLflow)."""
        row: dict[str, float | str] = {"category": self.category, "n": self.table.n}
        row.update(asdict(self.table), discordant=self.table.discordant, unpaired=self.unpaired)
        for field in fields(self):
            if field.name in ("category", "table", "unpaired", "confidence_level"):
                continue
            value = getattr(self, field.name)
            if isinstance(value, Interval):
                row[field.name] = value.value
                row[f"{field.name}_ci_low"], row[f"{field.name}_ci_high"] = value.low, value.high
            else:
                row[field.name] = value
        return row


def compare_paired(
    baseline_correct: Sequence[bool],
    finetuned_correct: Sequence[bool],
    baseline_confidence: Sequence[float] | None = None,
    finetuned_confidence: Sequence[float] | None = None,
    *,
    category: str = "All",
    unpaired: int = 0,
    confidence_level: float = CONFIDENCE_LEVEL,
    beta: int = BETA,
    p: str | int = "2",
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """The whole paired comparison of verdicts (and confidences) on the same questions.

    The 2x2 table, the accuracy difference (fine-tuned minus baseline, pp) with Newcombe's
    interval, McNemar's exact p-value, the detectable difference and, when confidences are
    given, the calibration error differences with their paired bootstrap intervals.
    """
    table = paired_table(baseline_correct, finetuned_correct)
    n = table.n
    base_acc = 100.0 * (table.both_correct + table.baseline_only) / n if n else math.nan
    tuned_acc = 100.0 * (table.both_correct + table.finetuned_only) / n if n else math.nan
    low, high = newcombe_interval(table, confidence_level)
    if baseline_confidence is None or finetuned_confidence is None:
        nan = Interval(math.nan, math.nan, math.nan)
        calibration = {"calibration_error_diff": nan, "calibration_error_all_bins_diff": nan}
    else:
        calibration = calibration_difference(
            baseline_confidence,
            baseline_correct,
            finetuned_confidence,
            finetuned_correct,
            beta=beta,
            p=p,
            n_resamples=n_resamples,
            seed=seed,
            confidence_level=confidence_level,
        )
    return PairedComparison(
        category=category,
        table=table,
        unpaired=int(unpaired),
        baseline_accuracy=base_acc,
        finetuned_accuracy=tuned_acc,
        accuracy_diff=tuned_acc - base_acc,
        accuracy_diff_ci_low=low,
        accuracy_diff_ci_high=high,
        mcnemar_p=mcnemar_p(table),
        detectable_diff=detectable_difference(table, confidence_level) if n else math.nan,
        smallest_detectable_diff=smallest_detectable_difference(table, confidence_level),
        confidence_level=confidence_level,
        **calibration,
    )


def _judged(predictions: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The questions a variant answered and was judged on (``judged`` true, a verdict present)."""
    missing = {"id", "category", "correct", "confidence", "judged"} - set(predictions.columns)
    if missing:
        raise ValueError(
            f"the {variant} predictions table lacks the column(s) {sorted(missing)}; it should be "
            "the evaluation's predictions (data/07_model_output/<variant>/predictions.csv)"
        )
    judged = predictions["judged"].astype("boolean").fillna(False).astype(bool)
    kept = predictions[judged & predictions["correct"].notna()]
    return kept.drop_duplicates("id", keep="last")


def compare_predictions(
    baseline: pd.DataFrame,
    finetuned: pd.DataFrame,
    *,
    confidence_level: float = CONFIDENCE_LEVEL,
    n_resamples: int = 2000,
    seed: int = 0,
    beta: int = BETA,
    p: str | int = "2",
) -> list[PairedComparison]:
    """Fine-tuned against baseline, overall (``All``, first) and per category.

    Only the questions that both variants answered and were judged on are paired; a question
    without a verdict on either side (a failed LLM judgement, a missing answer) is left out of
    both, and counted as ``unpaired``. Each category's bootstrap uses the same seed.
    """
    base = _judged(baseline, "baseline")
    tuned = _judged(finetuned, "finetuned")
    paired = base[["id", "category", "correct", "confidence"]].merge(
        tuned[["id", "correct", "confidence"]], on="id", suffixes=("_b", "_f")
    )
    categories = pd.concat([baseline[["id", "category"]], finetuned[["id", "category"]]])
    categories = categories.drop_duplicates("id")
    groups = [(ALL, paired, categories)] + [
        (name, paired[paired["category"] == name], categories[categories["category"] == name])
        for name in sorted(categories["category"].astype(str).unique())
    ]
    return [
        compare_paired(
            group["correct_b"].astype(bool).to_numpy(),
            group["correct_f"].astype(bool).to_numpy(),
            group["confidence_b"].astype(float).to_numpy(),
            group["confidence_f"].astype(float).to_numpy(),
            category=name,
            unpaired=len(questions) - len(group),
            confidence_level=confidence_level,
            beta=beta,
            p=p,
            n_resamples=n_resamples,
            seed=seed,
        )
        for name, group, questions in groups
    ]
