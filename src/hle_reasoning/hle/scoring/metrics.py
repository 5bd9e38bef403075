"""HLE's metrics as plain functions: accuracy with its 95% interval, and calibration error.

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

Confidences are percentages (0..100, as the judge reports them) and so are the results.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


def summarize(
    correct: Sequence[bool],
    confidence: Sequence[float],
    *,
    n: int | None = None,
    beta: int = BETA,
    p: str | int = "2",
) -> dict[str, float]:
    """All figures of one set of verdicts, under the names used in reports and MLflow.

    ``correct`` and ``confidence`` are the judged answers; ``n`` the number of questions
    (default: the number of judged answers; the difference counts as wrong and has no
    confidence, as in the official code).
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=float)
    n = len(correct) if n is None else int(n)
    accuracy, half_width = accuracy_with_ci(correct, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        official = calibration_error(confidence, correct, beta=beta, p=p)
        every_bin = calibration_error(confidence, correct, beta=beta, p=p, all_bins=True)
    return {
        "n": float(n),
        "judged": float(len(correct)),
        "correct": float(correct.sum()),
        "accuracy": accuracy,
        "accuracy_ci": half_width,
        "calibration_error": official,
        "calibration_error_all_bins": every_bin,
        "mean_confidence": float(confidence.mean()) if len(confidence) else math.nan,
    }
