import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hle_reasoning.hle.scoring.metrics import (
    BY_NAME,
    METRICS,
    SCORE_COLUMNS,
    SCORES,
    SmallSampleWarning,
    accuracy_with_ci,
    brier_score,
    calibration_bins,
    calibration_error,
    calibration_errors,
    small_sample_note,
    summarize,
)
from tests.conftest import anchor

# Five answers, bins of two: [10, 20] and [30, 40, 50] (the remainder joins the last bin).
CONF = [30, 10, 50, 20, 40]
CORRECT = [False, False, True, True, True]


class TestAccuracy:
    def test_hand_derived(self):
        accuracy, half = accuracy_with_ci([True, False, False, True], n=8)
        assert accuracy == 25.0
        assert half == pytest.approx(1.96 * math.sqrt(25 * 75 / 8))

    def test_missing_verdicts_count_as_wrong(self):
        assert accuracy_with_ci([True], n=4)[0] == 25.0
        with pytest.raises(ValueError, match="smaller than"):
            accuracy_with_ci([True, True], n=1)

    def test_extremes_and_empty(self):
        assert accuracy_with_ci([True] * 3) == (100.0, 0.0)
        assert all(math.isnan(x) for x in accuracy_with_ci([]))


class TestCalibration:
    def test_bins(self):
        bins = calibration_bins(CONF, CORRECT, beta=2)
        assert [(b.start, b.stop) for b in bins] == [(0, 2), (2, 5)]
        assert bins[0].mean_confidence == 15.0 and bins[0].accuracy == 50.0
        assert bins[1].mean_confidence == 40.0 and bins[1].accuracy == pytest.approx(200 / 3)
        assert [b.in_official_sum for b in bins] == [True, False]

    def test_official_leaves_the_last_bin_out(self):
        # sqrt(2/5 * 0.35^2) with weights over all five answers.
        value = calibration_error(CONF, CORRECT, beta=2, warn=False)
        assert value == pytest.approx(100 * math.sqrt(0.4 * 0.35**2))

    def test_all_bins(self):
        expected = math.sqrt(0.4 * 0.35**2 + 0.6 * (0.4 - 2 / 3) ** 2)
        value = calibration_error(CONF, CORRECT, beta=2, all_bins=True)
        assert value == pytest.approx(100 * expected)

    def test_p1_and_max(self):
        assert calibration_error(CONF, CORRECT, beta=2, p=1, warn=False) == pytest.approx(14.0)
        assert calibration_error(CONF, CORRECT, beta=2, p="max", warn=False) == pytest.approx(35.0)
        assert calibration_error(CONF, CORRECT, beta=2, p="infty", warn=False) == pytest.approx(
            35.0
        )
        with pytest.raises(ValueError, match="p must be"):
            calibration_error(CONF, CORRECT, p=3)

    def test_ties_keep_their_order(self):
        # All confidences tie: the stable sort keeps the given order, so bin 0 is the first two.
        assert calibration_error([50] * 4, [1, 0, 0, 0], beta=2, warn=False) == 0.0
        assert calibration_error([50] * 4, [0, 0, 0, 1], beta=2, warn=False) == pytest.approx(
            100 * math.sqrt(0.5 * 0.25)
        )

    def test_fewer_than_beta_answers_do_not_crash(self):
        conf, correct = [100] * 73, [False] * 73
        with pytest.warns(SmallSampleWarning, match=r"undefined \(the official code raises\)"):
            assert math.isnan(calibration_error(conf, correct))
        assert calibration_error(conf, correct, all_bins=True) == pytest.approx(100.0)

    def test_between_beta_and_two_beta_the_official_figure_is_zero(self):
        rng = np.random.default_rng(0)
        conf, correct = rng.integers(0, 101, 150), rng.random(150) < 0.3
        with pytest.warns(SmallSampleWarning, match="lowest-confidence 0 "):
            assert calibration_error(conf, correct) == 0.0
        assert calibration_error(conf, correct, all_bins=True) > 0

    def test_warns_while_the_left_out_bin_is_most_answers(self):
        # 218 answers (the paper's Math test split): only the lowest-confidence 100 are used.
        with pytest.warns(SmallSampleWarning, match="lowest-confidence 100"):
            calibration_error([90] * 218, [True] * 218)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            calibration_error([90] * 300, [True] * 300)
            calibration_error([90] * 218, [True] * 218, all_bins=True)

    def test_rejects_fractions_above_100_and_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"confidence must be a percentage in 0\.\.100"):
            calibration_error([150], [True])
        with pytest.raises(ValueError, match="from 0 to 100.5"):
            calibration_error([0, 100.5], [True, False])
        assert calibration_error([0, 100], [True, False], all_bins=True) == 0.0
        with pytest.raises(ValueError, match="same length"):
            calibration_error([50, 60], [True])

    def test_empty(self):
        assert math.isnan(calibration_error([], [], all_bins=True))


def test_summarize_names():
    figures = summarize(CORRECT, CONF, n=10, beta=2)
    assert figures["n"] == 10 and figures["judged"] == 5 and figures["correct"] == 3
    assert figures["accuracy"] == 30.0
    assert figures["accuracy_ci"] == pytest.approx(1.96 * math.sqrt(30 * 70 / 10))
    assert figures["calibration_error"] == pytest.approx(100 * math.sqrt(0.4 * 0.35**2))
    assert figures["mean_confidence"] == 30.0
    assert figures["brier_score"] == brier_score(CONF, CORRECT)


def _official_calib_err(confidence, correct, p="2", beta=100, last_bin=False):
    """The official calib_err with a stable sort, written out as a cross-check."""
    idxs = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[idxs], correct[idxs]
    bins = [[i * beta, (i + 1) * beta] for i in range(len(confidence) // beta)]
    bins[-1] = [bins[-1][0], len(confidence)]
    cerr = 0.0
    for start, stop in bins if last_bin else bins[:-1]:
        diff = abs(np.nanmean(confidence[start:stop]) - np.nanmean(correct[start:stop]))
        weight = (stop - start) / len(confidence)
        if p == "2":
            cerr += weight * diff**2
        elif p == "1":
            cerr += weight * diff
        else:
            cerr = max(cerr, diff)
    return math.sqrt(cerr) if p == "2" else cerr


class TestRealJudgedPredictions:
    """DeepWriter (Gemini 3 Pro) on 878 text-only HLE questions, judged (the real HLE data)."""

    @pytest.fixture(scope="class")
    def judged(self):
        frame = pd.read_csv(anchor("deepwriter_gemini3pro_hle_text878.csv"))
        frame = frame[frame["id"] != "Totals:"]
        confidence = frame["confidence"].str.rstrip("%").astype(float)
        assert confidence.isna().sum() == 4  # no confidence: 100, as HLE's judge is told
        return confidence.fillna(100).to_numpy(), frame["score"].astype(bool).to_numpy()

    def test_accuracy(self, judged):
        confidence, correct = judged
        accuracy, half = accuracy_with_ci(correct)
        assert len(correct) == 878 and correct.sum() == 447
        assert accuracy == pytest.approx(50.911, abs=5e-4)
        assert half == pytest.approx(1.96 * math.sqrt(accuracy * (100 - accuracy) / 878))
        assert round(half, 2) == 3.31

    def test_calibration_matches_the_stable_sort_figure(self, judged):
        confidence, correct = judged
        value = calibration_error(confidence, correct)
        assert value == pytest.approx(36.66, abs=0.005)  # the anchors' README: 0.3666 stable
        assert value == pytest.approx(100 * _official_calib_err(confidence / 100, correct))
        # Inside the 0.353-0.381 range that random tie orders give.
        assert 35.3 <= value <= 38.1

    def test_variants(self, judged):
        confidence, correct = judged
        fractions = confidence / 100
        every = calibration_error(confidence, correct, all_bins=True)
        assert every == pytest.approx(100 * _official_calib_err(fractions, correct, last_bin=True))
        assert every == pytest.approx(39.878, abs=1e-3)
        for p, expected in (("1", 32.246), ("max", 47.81)):
            value = calibration_error(confidence, correct, p=p)
            assert value == pytest.approx(100 * _official_calib_err(fractions, correct, p=p))
            assert value == pytest.approx(expected, abs=1e-3)
        # The last bin (178 answers, all at 100%) is the worst calibrated one.
        bins = calibration_bins(confidence, correct)
        assert len(bins) == 8 and bins[-1].size == 178 and bins[-1].mean_confidence == 100.0


def _stable_reference(confidence, correct, beta, all_bins):
    """The official RMS with Python's (stable) ``sorted``, from the definition."""
    pairs = sorted(zip(confidence, correct, strict=True), key=lambda pair: pair[0])
    n = len(pairs)
    bins = [pairs[i * beta : (i + 1) * beta] for i in range(n // beta)]
    bins[-1] = pairs[(n // beta - 1) * beta :]
    total = 0.0
    for members in bins if all_bins else bins[:-1]:
        mean_conf = sum(c for c, _ in members) / len(members) / 100
        acc = sum(1 for _, ok in members if ok) / len(members)
        total += len(members) / n * (mean_conf - acc) ** 2
    return 100 * math.sqrt(total)


def test_ties_keep_their_order_where_numpys_default_sort_would_not():
    # 400 answers on five confidence levels, correctness drawn independently of them: large
    # enough that numpy's default (introsort) argsort reorders tied confidences, so the bins,
    # and the figure, would differ with an unstable sort.
    rng = np.random.default_rng(3)
    confidence = rng.choice([20.0, 50.0, 80.0, 95.0, 100.0], size=400)
    correct = rng.random(400) < 0.5
    stable = np.argsort(confidence, kind="stable")
    assert not np.array_equal(np.argsort(confidence), stable)  # the data can tell them apart
    for all_bins in (False, True):
        expected = _stable_reference(confidence.tolist(), correct.tolist(), 100, all_bins)
        value = calibration_error(confidence, correct, all_bins=all_bins, warn=False)
        assert value == pytest.approx(expected, rel=1e-12)
    unstable_bins = [correct[np.argsort(confidence)][i : i + 100].mean() for i in (0, 100, 200)]
    stable_bins = [b.accuracy / 100 for b in calibration_bins(confidence, correct)[:3]]
    assert unstable_bins != pytest.approx(stable_bins)  # an unstable sort would change them


class TestEdges:
    """Boundaries of the binning and of the small-sample note, each against hand values."""

    def test_beta_of_one_is_one_answer_per_bin_and_zero_is_refused(self):
        bins = calibration_bins([30, 10, 20], [True, False, True], beta=1)
        assert [(b.mean_confidence, b.accuracy) for b in bins] == [
            (10.0, 0.0),
            (20.0, 100.0),
            (30.0, 100.0),
        ]
        with pytest.raises(ValueError, match=r"beta \(answers per bin\) must be at least 1"):
            calibration_bins([30], [True], beta=0)

    def test_no_answers_no_bins(self):
        assert calibration_bins([], []) == []

    def test_exactly_beta_answers_is_one_bin_left_out(self):
        # 100 answers: defined (the official code does not raise), and 0 by construction.
        with pytest.warns(SmallSampleWarning, match="lowest-confidence 0 "):
            assert calibration_error([70] * 100, [True] * 100) == 0.0

    def test_largest_gap_with_no_bin_in_the_official_sum_is_zero(self):
        assert calibration_error([70] * 150, [True] * 150, p="max", warn=False) == 0.0

    def test_infinity_spellings_are_the_largest_gap(self):
        for p in ("inf", "infinity", "Infinity", "INF"):
            assert calibration_error(CONF, CORRECT, beta=2, p=p, warn=False) == pytest.approx(35.0)

    def test_the_warning_names_the_beta_and_points_at_the_caller(self):
        with pytest.warns(
            SmallSampleWarning, match="5 answers with beta = 2: .* lowest-confidence 2 "
        ) as record:
            calibration_error(CONF, CORRECT, beta=2)
        if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampoline adds a stack frame
            assert record[0].filename == __file__

    def test_small_sample_note_boundaries(self):
        assert small_sample_note(0) is None
        assert "1 answers < beta = 100" in small_sample_note(1)
        assert "99 answers < beta = 100" in small_sample_note(99)
        assert "lowest-confidence 0 " in small_sample_note(100)
        assert "lowest-confidence 100 " in small_sample_note(299)
        assert small_sample_note(300) is None


def test_summarize_passes_p_and_beta_to_both_figures():
    # Hand values for CONF/CORRECT with beta = 2 and p = 1: gaps 0.35 (weight 0.4) and
    # |0.4 - 2/3| (weight 0.6): official 0.4 * 0.35 = 14%, all bins 14% + 0.6 * 0.2667 = 30%.
    figures = summarize(CORRECT, CONF, beta=2, p="1")
    assert figures["calibration_error"] == pytest.approx(14.0)
    assert figures["calibration_error_all_bins"] == pytest.approx(30.0)
    assert figures["n"] == 5 and figures["accuracy"] == 60.0  # n defaults to the verdicts
    rms_all = summarize(CORRECT, CONF, beta=2)["calibration_error_all_bins"]
    assert rms_all == pytest.approx(100 * math.sqrt(0.4 * 0.35**2 + 0.6 * (0.4 - 2 / 3) ** 2))


def test_summarize_without_judged_answers_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = summarize([], [], n=5)
    assert figures["accuracy"] == 0.0 and figures["judged"] == 0
    assert math.isnan(figures["mean_confidence"]) and math.isnan(figures["calibration_error"])
    assert math.isnan(figures["brier_score"])


class TestBrierScore:
    """The mean of (confidence / 100 - correct)^2: sklearn's ``brier_score_loss``."""

    def test_hand_derived(self):
        # (1 - 0)^2 + (0 - 0)^2 + (0.5 - 1)^2 + (0.8 - 1)^2 = 1 + 0 + 0.25 + 0.04, over 4.
        value = brier_score([100, 0, 50, 80], [False, False, True, True])
        assert value == pytest.approx(1.29 / 4, rel=1e-15)
        assert brier_score(CONF, CORRECT) == pytest.approx(
            (0.3**2 + 0.1**2 + 0.5**2 + 0.8**2 + 0.6**2) / 5, rel=1e-15
        )

    def test_extremes(self):
        assert brier_score([100] * 73, [False] * 73) == 1.0  # the tiny model: certain, wrong
        assert brier_score([100, 0], [True, False]) == 0.0
        assert brier_score([50] * 4, [True, False, False, False]) == 0.25
        assert math.isnan(brier_score([], []))

    def test_refuses_what_calibration_refuses(self):
        with pytest.raises(ValueError, match=r"percentage in 0\.\.100"):
            brier_score([0.5, 150], [True, False])
        with pytest.raises(ValueError, match="same length"):
            brier_score([50, 60], [True])

    def test_real_judged_predictions(self):
        frame = pd.read_csv(anchor("deepwriter_gemini3pro_hle_text878.csv"))
        frame = frame[frame["id"] != "Totals:"]
        confidence = frame["confidence"].str.rstrip("%").astype(float).fillna(100).to_numpy()
        correct = frame["score"].astype(bool).to_numpy()
        value = brier_score(confidence, correct)
        by_hand = sum((c / 100 - ok) ** 2 for c, ok in zip(confidence, correct, strict=True)) / len(
            correct
        )
        assert value == pytest.approx(by_hand, rel=1e-12)
        assert summarize(correct, confidence)["brier_score"] == value


# A module-level function, not a method: hypothesis refuses a method that mutmut's runs call
# from several instances of its class (HealthCheck.differing_executors).
@given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_brier_score_equals_sklearn(answers):
    metrics = pytest.importorskip("sklearn.metrics")
    confidence = np.array([a[0] for a in answers])
    correct = np.array([a[1] for a in answers])
    expected = metrics.brier_score_loss(correct, confidence / 100, labels=[False, True])
    value = brier_score(confidence, correct)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert 0.0 <= value <= 1.0


class TestRegistry:
    """``METRICS`` declares each figure once; ``summarize`` and every report read it."""

    def test_summarize_gives_every_registered_figure_in_order(self):
        figures = summarize(CORRECT, CONF, n=10, beta=2)
        assert list(figures) == [metric.name for metric in METRICS]
        assert len(BY_NAME) == len(METRICS)  # each name once
        assert all(isinstance(value, float) for value in figures.values())

    def test_scores_are_the_figures_with_a_direction(self):
        assert [m.name for m in SCORES][:3] == [
            "accuracy",
            "calibration_error",
            "calibration_error_all_bins",
        ]
        assert BY_NAME["accuracy"].higher_is_better is True
        assert BY_NAME["calibration_error"].higher_is_better is False
        assert all(BY_NAME[name].higher_is_better is None for name in ("n", "accuracy_ci"))
        # A score's half-width follows it; a half-width is a registered figure, not a score.
        assert SCORE_COLUMNS[:4] == (
            "accuracy",
            "accuracy_ci",
            "calibration_error",
            "calibration_error_all_bins",
        )
        for metric in SCORES:
            if metric.interval:
                assert BY_NAME[metric.interval].higher_is_better is None
        assert [m.name for m in METRICS if m.count] == ["n", "judged", "correct"]

    def test_headings_carry_the_unit_the_short_name_and_the_direction(self):
        accuracy, official = BY_NAME["accuracy"], BY_NAME["calibration_error"]
        every = BY_NAME["calibration_error_all_bins"]
        assert accuracy.heading() == "Accuracy (%)"
        assert accuracy.heading(arrow=True) == "Accuracy (%) ↑"
        assert official.heading(arrow=True) == "Calibration error (%) ↓"
        assert every.heading() == "Calibration error, all bins (%)"
        assert every.heading(short=True) == "all bins (%)"
        assert accuracy.heading(short=True) == "Accuracy (%)"  # no short name: the label
        assert BY_NAME["n"].heading(arrow=True) == "Questions"  # no unit, no direction
        assert BY_NAME["accuracy_ci"].heading(short=True, arrow=True) == "95% half-width"

    def test_a_figure_is_shown_with_its_digits_and_half_width(self):
        accuracy, official = BY_NAME["accuracy"], BY_NAME["calibration_error"]
        figures = {"accuracy": 12.345, "accuracy_ci": 1.5, "calibration_error": math.nan}
        assert accuracy.show(figures) == "12.35 ± 1.50"
        assert accuracy.show(figures, 1) == "12.3 ± 1.5"
        assert accuracy.show({"accuracy": 4.0, "accuracy_ci": math.nan}) == "4.00"
        assert accuracy.show({"accuracy": 4.0}) == "4.00"
        assert official.show(figures) == "n/a"  # undefined
        assert official.show({}) == "n/a"
        assert BY_NAME["mean_confidence"].show({"mean_confidence": 87.25}) == "87.2"

    def test_the_descriptions_fill_in_beta_and_p(self):
        text = BY_NAME["calibration_error"].description.format(beta=7, p="1")
        assert "p = 1, bins of beta = 7 answers" in text
        assert "{" not in BY_NAME["accuracy"].description.format(beta=7, p="1")


# Confidences as judges state them: piled at 0 and 100, any other percentage, or missing.
stated_confidence = st.one_of(
    st.sampled_from([0.0, 100.0, 50.0, 100.0]), st.floats(0, 100), st.just(math.nan)
)


class TestCalibrationErrorsOfResamples:
    @given(
        st.lists(st.tuples(stated_confidence, st.booleans()), max_size=40),
        st.integers(0, 45),  # answers per resample
        st.integers(1, 5),  # resamples
        st.integers(1, 12),  # beta
        st.sampled_from(["2", "1", "max"]),
        st.booleans(),
        st.integers(0, 2**32 - 1),
    )
    @settings(max_examples=300, deadline=None)
    def test_each_resample_is_the_scalar_figure(self, answers, m, rows, beta, p, every, seed):
        confidence = np.array([a[0] for a in answers], dtype=float)
        correct = np.array([a[1] for a in answers], dtype=bool)
        m = m if len(answers) else 0
        resamples = np.random.default_rng(seed).integers(0, max(len(answers), 1), (rows, m))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "Mean of empty slice"
            expected = [
                calibration_error(
                    confidence[r], correct[r], beta=beta, p=p, all_bins=every, warn=False
                )
                for r in resamples
            ]
        got = calibration_errors(confidence, correct, resamples, beta=beta, p=p, all_bins=every)
        assert got.shape == (rows,)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)

    def test_real_judged_answers_resampled(self):
        frame = pd.read_csv(anchor("deepwriter_gemini3pro_hle_text878.csv"))
        frame = frame[frame["id"] != "Totals:"]
        confidence = frame["confidence"].str.rstrip("%").astype(float).fillna(100).to_numpy()
        correct = frame["score"].astype(bool).to_numpy()
        resamples = np.random.default_rng(0).integers(0, len(frame), (20, len(frame)))
        for every in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SmallSampleWarning)
                expected = [
                    calibration_error(confidence[r], correct[r], all_bins=every) for r in resamples
                ]
            got = calibration_errors(confidence, correct, resamples, all_bins=every)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)

    def test_bad_input_is_refused_as_the_scalar_refuses_it(self):
        with pytest.raises(ValueError, match="percentage in 0..100"):
            calibration_errors([0.5, 120.0], [True, False], np.zeros((2, 2), dtype=int))
        with pytest.raises(ValueError, match="2-D, one row per resample"):
            calibration_errors([50.0, 60.0], [True, False], np.array([0, 1]))
        with pytest.raises(ValueError, match="p must be one of"):
            calibration_errors([50.0], [True], np.zeros((1, 1), dtype=int), p="3")
