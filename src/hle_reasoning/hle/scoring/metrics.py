"""HLE's metrics as plain functions (accuracy with its 95% interval, calibration error) and
``METRICS``, the registry that declares each figure once.

Both follow ``dump_metrics`` and ``calib_err`` in hle_eval/run_judge_results.py of
github.com/centerforaisafety/hle (``calib_err`` is itself from
github.com/hendrycks/outlier-exposure, utils/calibration_tools.py):

* accuracy = 100 * correct / n, where n counts every question (a missing answer is wrong);
  95% half-width = 1.96 * sqrt(acc * (100 - acc) / n) (Wald);
* calibration error: answers sorted by confidence, cut into bins of ``beta`` = 100 consecutive
  answers with the remainder merged into the last bin, per-bin |mean confidence - accuracy|
  combined as an RMS (p = 2) weighted by bin size / number of answers, and the **last
  (highest-confidence) bin left out of the sum**.

Differences from the official code, all deliberate and documented in docs/evaluation.md:

* the sort is stable (``numpy.argsort(kind="stable")``): the official default sort is not, so
  with tied confidences its figure depends on the numpy version and machine;
* figures are returned unrounded (the official code rounds accuracy to 2 decimals before the
  half-width, and the calibration error to 2 decimals of a fraction, i.e. whole percent);
* with fewer than ``beta`` answers the official code raises ``IndexError``; here the
  official-style figure is NaN (with a warning) and the all-bins variant is still defined;
* ``all_bins=True`` sums every bin, the last included, as inspect_evals does. The official
  figure leaves out beta + (n mod beta) answers: with 100..199 answers it is 0 (the only bin is
  left out), and below 3 x beta it rests on fewer than half of them (218 math questions: the
  lowest-confidence 100), so the all-bins figure is the informative one there.

``calibration_errors`` gives ``calibration_error`` for many resamples of the same answers at
once (the paired bootstrap's); ``calibration_error`` stays the reference it is tested against.

``METRICS`` lists every figure of a set of judged answers, in order: its name (the key in
``summarize``, the reports' CSV columns and MLflow), the function that computes it, its label,
unit, digits and direction. ``summarize``, Table 1, the per-category table, the report, the
MLflow metrics and saved view and the closing summary all read it: a new metric is a function
and one line there.

Confidences are percentages (0..100, as the judge reports them) and so are the results.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hle_reasoning.hle.formatting import format_number

BETA = 100
Z_95 = 1.96
P_CHOICES = ("1", "2", "max")


class SmallSampleWarning(UserWarning):
    """The official calibration error ignores most answers (fewer than 2 x beta of them)."""


def accuracy_with_ci(correct: Sequence[bool], n: int | None = None) -> tuple[float, float]:
    """Accuracy (%) and the half-width of its 95% Wald interval (percentage points).

    ``n`` is the number of questions (default: ``len(correct)``); questions without a verdict
    count as wrong, as in the official ``dump_metrics``.
    """
    correct = np.asarray(correct, dtype=bool)
    n = len(correct) if n is None else int(n)
    if n < len(correct):
        raise ValueError(f"n={n} is smaller than the {len(correct)} verdicts given")
    if n == 0:
        return math.nan, math.nan
    accuracy = 100.0 * float(correct.sum()) / n
    return accuracy, Z_95 * math.sqrt(accuracy * (100.0 - accuracy) / n)


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of sorted answers: rows ``start:stop`` of the confidence-sorted list."""

    start: int
    stop: int
    mean_confidence: float  # %
    accuracy: float  # %
    in_official_sum: bool  # False for the last bin, which the official figure leaves out

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def gap(self) -> float:
        return abs(self.mean_confidence - self.accuracy)


def _as_arrays(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, ...]:
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    if conf.shape != corr.shape or conf.ndim != 1:
        raise ValueError(
            f"confidence and correct must be 1-D of the same length (got {conf.shape} and {corr.shape})"
        )
    finite = conf[~np.isnan(conf)]
    if finite.size and (finite.min() < 0 or finite.max() > 100):
        raise ValueError(
            "confidence must be a percentage in 0..100 (got values from "
            f"{finite.min():g} to {finite.max():g})"
        )
    return conf, corr


def calibration_bins(
    confidence: Sequence[float], correct: Sequence[bool], beta: int = BETA
) -> list[CalibrationBin]:
    """The official equal-count bins: sorted by confidence (stably), ``beta`` answers each.

    The remainder joins the last bin; with fewer than ``beta`` answers there is one bin of all
    of them. Every bin but the last is ``in_official_sum``.
    """
    if beta < 1:
        raise ValueError(f"beta (answers per bin) must be at least 1 (got {beta})")
    conf, corr = _as_arrays(confidence, correct)
    n = len(conf)
    if n == 0:
        return []
    order = np.argsort(conf, kind="stable")
    conf, corr = conf[order], corr[order]
    edges = [(i * beta, (i + 1) * beta) for i in range(max(n // beta, 1))]
    edges[-1] = (edges[-1][0], n)
    return [
        CalibrationBin(
            start=start,
            stop=stop,
            mean_confidence=float(np.nanmean(conf[start:stop])),
            accuracy=100.0 * float(np.nanmean(corr[start:stop])),
            in_official_sum=i < len(edges) - 1,
        )
        for i, (start, stop) in enumerate(edges)
    ]


def calibration_error(
    confidence: Sequence[float],
    correct: Sequence[bool],
    *,
    beta: int = BETA,
    p: str | int = "2",
    all_bins: bool = False,
    warn: bool = True,
) -> float:
    """HLE's calibration error (%) of answers with ``confidence`` (%) and ``correct`` flags.

    ``p``: ``"2"`` (RMS, the official default), ``"1"`` (mean absolute gap) or ``"max"``
    (largest gap). ``all_bins=False`` leaves the last bin out as the official code does;
    ``True`` sums every bin. Weights are bin size / number of answers. Returns NaN for no
    answers, and for the official variant with fewer than ``beta`` answers (the official code
    raises there); warns with ``SmallSampleWarning`` while the left-out last bin holds more than
    half of the answers (fewer than 3 x ``beta``; see ``small_sample_note``).
    """
    p = _check_p(p)
    bins = calibration_bins(confidence, correct, beta)
    n = sum(b.size for b in bins)
    if warn and not all_bins:
        note = small_sample_note(n, beta)
        if note:
            warnings.warn(note, SmallSampleWarning, stacklevel=2)
    if n == 0 or (n < beta and not all_bins):
        return math.nan
    used = bins if all_bins else [b for b in bins if b.in_official_sum]
    gaps = np.array([b.gap / 100.0 for b in used])
    weights = np.array([b.size / n for b in used])
    if p == "2":
        value = math.sqrt(float((weights * gaps**2).sum()))
    elif p == "1":
        value = float((weights * gaps).sum())
    else:
        value = float(gaps.max()) if len(gaps) else 0.0
    return 100.0 * value


def calibration_errors(
    confidence: Sequence[float],
    correct: Sequence[bool],
    resamples: np.ndarray,
    *,
    beta: int = BETA,
    p: str | int = "2",
    all_bins: bool = False,
) -> np.ndarray:
    """``calibration_error`` of many resamples of the same answers, all at once.

    ``resamples`` is a 2-D array of indices into ``confidence`` and ``correct``; entry i is
    ``calibration_error(confidence[resamples[i]], correct[resamples[i]], ..., warn=False)``, the
    same figure up to floating-point rounding: the same stable sort (ties keep their order in
    the resample; through the dense rank of each confidence, a fast integer sort), bins,
    NaN-ignoring bin means and sums, with no Python call per resample.
    """
    p = _check_p(p)
    if beta < 1:
        raise ValueError(f"beta (answers per bin) must be at least 1 (got {beta})")
    conf, corr = _as_arrays(confidence, correct)
    resamples = np.asarray(resamples, dtype=np.intp)
    if resamples.ndim != 2:
        raise ValueError(f"resamples must be 2-D, one row per resample (got {resamples.shape})")
    rows, n = resamples.shape
    if n == 0 or (n < beta and not all_bins):
        return np.full(rows, math.nan)
    ranks = np.unique(conf, return_inverse=True)[1]  # NaN ranks last, as it sorts last
    ranks = ranks.astype(np.uint16) if len(conf) <= np.iinfo(np.uint16).max else ranks
    bins = max(n // beta, 1)
    cut = (bins - 1) * beta  # the last bin: rows cut..n (beta answers and the remainder)
    used = bins if all_bins else bins - 1
    weights = np.full(used, beta) / n
    if all_bins:
        weights[-1] = (n - cut) / n
    value = np.empty(rows)
    step = max(1, 1_000_000 // n)  # resamples at a time: bounded memory for big test sets
    for first in range(0, rows, step):
        drawn = resamples[first : first + step]
        drawn = np.take_along_axis(drawn, np.argsort(ranks[drawn], axis=-1, kind="stable"), -1)
        means = [
            np.concatenate(
                [
                    _nanmean(values[:, :cut].reshape(len(drawn), bins - 1, beta)),
                    _nanmean(values[:, cut:])[:, None],
                ],
                axis=-1,
            )
            for values in (conf[drawn], corr[drawn])
        ]
        gaps = (np.abs(means[0] - 100.0 * means[1]) / 100.0)[:, :used]
        if p == "2":
            value[first : first + step] = np.sqrt((weights * gaps**2).sum(axis=-1))
        elif p == "1":
            value[first : first + step] = (weights * gaps).sum(axis=-1)
        else:
            value[first : first + step] = gaps.max(axis=-1) if used else 0.0
    return 100.0 * value


def _nanmean(values: np.ndarray) -> np.ndarray:
    """``numpy.nanmean`` over the last axis (NaN, without a warning, where all are NaN)."""
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, values, 0.0).sum(axis=-1) / present.sum(axis=-1)


def brier_score(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """The Brier score of the stated confidences: the mean of (confidence / 100 - correct)^2.

    ``sklearn.metrics.brier_score_loss`` with the confidence as the probability of a correct
    answer: a proper scoring rule, lower is better, from 0 (certain and right every time) to 1
    (certain and wrong every time); a constant 50% scores 0.25. Unlike the calibration error it
    needs no bins, so it is defined for any number of answers (NaN for none).
    """
    conf, corr = _as_arrays(confidence, correct)
    if len(conf) == 0:
        return math.nan
    return float(np.mean((conf / 100.0 - corr) ** 2))


def small_sample_note(n: int, beta: int = BETA) -> str | None:
    """Why the official calibration error says little about ``n`` answers (None when it does).

    The official figure leaves out the last bin, which holds beta + (n mod beta) answers: below
    beta answers it is undefined, below 2 x beta it uses none, and below 3 x beta the left-out
    bin still holds more than half of them (218 math questions: only the lowest-confidence 100
    are used).
    """
    if n == 0 or n >= 3 * beta:
        return None
    if n < beta:
        return (
            f"{n} answers < beta = {beta}: the official calibration error is undefined (the "
            "official code raises); the all-bins variant treats them as one bin"
        )
    used = beta * (n // beta - 1)
    return (
        f"{n} answers with beta = {beta}: the official calibration error uses only the "
        f"lowest-confidence {used} (the last bin is left out); see the all-bins variant"
    )


def _check_p(p: str | int) -> str:
    p = str(p).lower()
    if p in ("infty", "infinity", "inf"):
        p = "max"
    if p not in P_CHOICES:
        raise ValueError(f"p must be one of {P_CHOICES} (got {p!r})")
    return p


@dataclass(frozen=True)
class Answers:
    """The judged answers of one variant (or one category of it) that every metric reads."""

    correct: np.ndarray  # bool, one per judged answer
    confidence: np.ndarray  # the stated confidence (%), one per judged answer
    n: int  # the questions: the judged answers, and any others counted as wrong
    beta: int = BETA
    p: str | int = "2"


@dataclass(frozen=True)
class Metric:
    """One figure of ``METRICS``: how it is computed, named and shown.

    * ``name``: its key in ``summarize``, the CSV columns and MLflow;
    * ``function``: the figure of an ``Answers`` (NaN where undefined);
    * ``label`` and ``unit``: its column heading, ``label (unit)``; ``short``, where a narrow
      table (per category, the console summary) names it otherwise;
    * ``digits``: decimals in the per-category table, the log and the console summary; Table 1
      shows one fewer, as the HLE paper's Table 1 does (one decimal for a percentage);
    * ``higher_is_better``: True or False makes it a score, shown in Table 1, the console
      summary, MLflow per category and the runs-table view, with its arrow; None (counts,
      interval widths, descriptions) shows it in the per-category table and MLflow only;
    * ``interval``: the metric that holds its 95% half-width, shown as ``± ...`` beside it;
    * ``count``: a number of answers, shown as "judged / answered" rather than as a column;
    * ``description``: what the report says of it under Table 1 (``{beta}`` and ``{p}``
      filled in).
    """

    name: str
    function: Callable[[Answers], float]
    label: str
    unit: str = "%"
    digits: int = 2
    higher_is_better: bool | None = None
    interval: str | None = None
    short: str | None = None
    count: bool = False
    description: str = ""

    def heading(self, *, short: bool = False, arrow: bool = False) -> str:
        """The column heading: ``Accuracy (%)``; with ``arrow``, ``↑`` or ``↓`` for a score."""
        text = (self.short if short and self.short else self.label) + (
            f" ({self.unit})" if self.unit else ""
        )
        if arrow and self.higher_is_better is not None:
            text += " ↑" if self.higher_is_better else " ↓"
        return text

    def show(self, figures: Mapping[str, float], digits: int | None = None) -> str:
        """Its value in ``figures`` with ``digits`` decimals (default ``self.digits``), and
        ``± half-width`` where it has an interval and ``figures`` holds it (``n/a``: undefined)."""
        digits = self.digits if digits is None else digits
        text = format_number(figures.get(self.name), digits)
        half = figures.get(self.interval) if self.interval else None
        if half is not None and not math.isnan(float(half)):
            text += f" ± {format_number(half, digits)}"
        return text


def summarize(
    correct: Sequence[bool],
    confidence: Sequence[float],
    *,
    n: int | None = None,
    beta: int = BETA,
    p: str | int = "2",
) -> dict[str, float]:
    """Every figure of ``METRICS`` for one set of verdicts, by name, in the registry's order.

    ``correct`` and ``confidence`` are the judged answers; ``n`` the number of questions
    (default: the number of judged answers; the difference counts as wrong and has no
    confidence, as in the official code).
    """
    correct = np.asarray(correct, dtype=bool)
    answers = Answers(
        correct=correct,
        confidence=np.asarray(confidence, dtype=float),
        n=len(correct) if n is None else int(n),
        beta=beta,
        p=p,
    )
    return {metric.name: float(metric.function(answers)) for metric in METRICS}


def _mean_confidence(answers: Answers) -> float:
    return float(answers.confidence.mean()) if len(answers.confidence) else math.nan


# The registry: every figure of a set of judged answers, in the order of the reports' columns.
# The official calibration error warns where it says little: the report and the log say it
# once per variant (small_sample_note), so the registry computes it without the warning.
METRICS: tuple[Metric, ...] = (
    Metric("n", lambda a: float(a.n), "Questions", unit="", digits=0, count=True),
    Metric("judged", lambda a: float(len(a.correct)), "Judged", unit="", digits=0, count=True),
    Metric("correct", lambda a: float(a.correct.sum()), "Correct", unit="", digits=0, count=True),
    Metric(
        "accuracy",
        lambda a: accuracy_with_ci(a.correct, a.n)[0],
        "Accuracy",
        higher_is_better=True,
        interval="accuracy_ci",
        description="accuracy ± the 95% Wald half-width 1.96·sqrt(acc·(100 − acc)/n)",
    ),
    Metric("accuracy_ci", lambda a: accuracy_with_ci(a.correct, a.n)[1], "95% half-width", unit=""),
    Metric(
        "calibration_error",
        lambda a: calibration_error(a.confidence, a.correct, beta=a.beta, p=a.p, warn=False),
        "Calibration error",
        higher_is_better=False,
        description="calibration error as the official code computes it (p = {p}, bins of beta "
        "= {beta} answers sorted by confidence with a stable sort, remainder in the last bin, "
        "last bin left out, weights over all answers)",
    ),
    Metric(
        "calibration_error_all_bins",
        lambda a: calibration_error(a.confidence, a.correct, beta=a.beta, p=a.p, all_bins=True),
        "Calibration error, all bins",
        short="all bins",
        higher_is_better=False,
        description="the all-bins column sums every bin",
    ),
    Metric("mean_confidence", _mean_confidence, "Mean confidence", digits=1),
    Metric(
        "brier_score",
        lambda a: brier_score(a.confidence, a.correct),
        "Brier score",
        unit="",
        digits=3,
        higher_is_better=False,
        description="the Brier score is the mean of (confidence/100 − correct)² (0 best, 1 worst)",
    ),
)

BY_NAME = {metric.name: metric for metric in METRICS}
# The scores (a metric with a direction): Table 1's, the console summary's and the view's figures.
SCORES = tuple(metric for metric in METRICS if metric.higher_is_better is not None)
# The scores with their half-widths: Table 1's columns, the MLflow metrics per category and the
# columns of the MLflow runs-table view, in the registry's order.
SCORE_COLUMNS = tuple(name for m in SCORES for name in (m.name, m.interval) if name)
