"""The paired comparison of baseline and fine-tuned: McNemar, Newcombe's interval, the bootstrap."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from hle_reasoning.config import ComparisonConfig, ConfigError
from hle_reasoning.hle.scoring.comparison import (
    PairedTable,
    calibration_difference,
    compare_paired,
    compare_predictions,
    detectable_difference,
    mcnemar_test,
    newcombe_interval,
    smallest_detectable_difference,
)
from hle_reasoning.hle.scoring.metrics import SmallSampleWarning, calibration_error
from hle_reasoning.hle.scoring.report import comparison_row_markdown, comparison_section
from tests.conftest import anchor


def verdicts(both_correct: int, baseline_only: int, finetuned_only: int, both_wrong: int):
    """Two verdict sequences over the same questions with the given 2x2 counts."""
    baseline = [True] * both_correct + [True] * baseline_only + [False] * finetuned_only
    finetuned = [True] * both_correct + [False] * baseline_only + [True] * finetuned_only
    return baseline + [False] * both_wrong, finetuned + [False] * both_wrong


class TestMcNemar:
    def test_the_exact_binomial_on_the_discordant_pairs(self):
        # 2 baseline-only and 12 fine-tuned-only pairs: 2 * P(X <= 2), X ~ Bin(14, 1/2).
        baseline, finetuned = verdicts(36, 2, 12, 0)
        by_hand = 2 * (math.comb(14, 0) + math.comb(14, 1) + math.comb(14, 2)) / 2**14
        assert mcnemar_test(baseline, finetuned) == pytest.approx(by_hand, rel=1e-12)
        assert by_hand == pytest.approx(0.0129394531)

    @pytest.mark.parametrize(
        "table", [(10, 3, 9, 40), (0, 5, 0, 68), (1, 6, 0, 66), (5, 20, 21, 2), (0, 1, 0, 0)]
    )
    def test_matches_scipy_and_ignores_concordant_pairs(self, table):
        a, b, c, d = table
        expected = binomtest(c, b + c, 0.5).pvalue
        assert mcnemar_test(*verdicts(*table)) == pytest.approx(expected, rel=1e-12)
        # The concordant pairs carry no information on the difference.
        assert mcnemar_test(*verdicts(a + 50, b, c, d + 7)) == pytest.approx(expected, rel=1e-12)
        # Two-sided: swapping the variants gives the same p-value.
        assert mcnemar_test(*reversed(verdicts(*table))) == pytest.approx(expected, rel=1e-12)

    def test_five_one_sided_pairs_are_not_enough_six_are(self):
        assert mcnemar_test(*verdicts(0, 0, 5, 68)) == pytest.approx(2 / 2**5)  # 0.0625
        assert mcnemar_test(*verdicts(0, 0, 6, 67)) == pytest.approx(2 / 2**6)  # 0.03125

    @pytest.mark.parametrize("table", [(0, 0, 0, 73), (73, 0, 0, 0), (30, 0, 0, 43), (0, 0, 0, 0)])
    def test_no_discordant_pair_gives_one(self, table):
        assert mcnemar_test(*verdicts(*table)) == 1.0

    def test_unequal_lengths_are_an_error(self):
        with pytest.raises(ValueError, match="pair the same questions"):
            mcnemar_test([True, False], [True])


# Newcombe RG (1998), "Improved confidence intervals for the difference between binomial
# proportions based on paired data", Statistics in Medicine 17:2635-2650: the worked examples
# (Table III, column for method 10), cells (e, f, g, h) = (both, first only, second only,
# neither), theta = (f - g) / n, 95% limits to four decimals as printed.
NEWCOMBE_1998_METHOD_10 = [
    ((36, 12, 2, 0), (0.0569, 0.3404)),
    ((20, 12, 2, 16), (0.0562, 0.3292)),
    ((18, 12, 2, 18), (0.0562, 0.3290)),
    ((36, 14, 0, 0), (0.1528, 0.4167)),
    ((35, 14, 0, 1), (0.1461, 0.4175)),
    ((18, 14, 0, 18), (0.1441, 0.3963)),
    ((2, 97, 1, 0), (0.8721, 0.9854)),
    ((1, 97, 1, 1), (0.8736, 0.9850)),
    ((0, 29, 1, 0), (0.6666, 0.9882)),
    ((2, 98, 0, 0), (0.9178, 0.9945)),
    ((1, 98, 0, 1), (0.9171, 0.9916)),
    ((0, 30, 0, 0), (0.8395, 1.0)),
    ((54, 0, 0, 0), (-0.0664, 0.0664)),
    ((53, 0, 0, 1), (-0.0729, 0.0729)),
    ((30, 0, 0, 24), (-0.0358, 0.0358)),
    ((29, 0, 0, 25), (-0.0354, 0.0354)),
    ((28, 0, 0, 26), (-0.0352, 0.0352)),
    ((27, 0, 0, 27), (-0.0351, 0.0351)),
]


class TestNewcombeInterval:
    @pytest.mark.parametrize(("cells", "limits"), NEWCOMBE_1998_METHOD_10)
    def test_reproduces_newcombe_1998_worked_examples(self, cells, limits):
        e, f, g, h = cells
        # The fine-tuned variant is Newcombe's first proportion: f = fine-tuned only.
        low, high = newcombe_interval(
            PairedTable(both_correct=e, baseline_only=g, finetuned_only=f, both_wrong=h)
        )
        # Four printed decimals (one printed limit, 0.8736 for 0.87367, is truncated).
        assert low / 100 == pytest.approx(limits[0], abs=1e-4)
        assert high / 100 == pytest.approx(limits[1], abs=1e-4)

    def test_swapping_the_variants_mirrors_the_interval(self):
        low, high = newcombe_interval(PairedTable(20, 2, 12, 16))
        mirrored = newcombe_interval(PairedTable(20, 12, 2, 16))
        assert mirrored == pytest.approx((-high, -low))

    def test_empty_table_and_bad_level(self):
        assert all(math.isnan(x) for x in newcombe_interval(PairedTable(0, 0, 0, 0)))
        with pytest.raises(ValueError, match="confidence_level"):
            newcombe_interval(PairedTable(1, 0, 0, 1), confidence_level=95)

    @given(
        st.integers(0, 60),
        st.integers(0, 60),
        st.integers(0, 60),
        st.integers(0, 60),
        st.sampled_from([0.8, 0.9, 0.95, 0.99]),
    )
    @settings(max_examples=300, deadline=None)
    def test_any_table_gives_an_ordered_interval_around_the_difference(self, a, b, c, d, level):
        table = PairedTable(a, b, c, d)
        if table.n == 0:
            return
        low, high = newcombe_interval(table, level)
        difference = 100 * (c - b) / table.n
        assert -100 <= low <= difference + 1e-9 <= high + 2e-9 <= 100 + 3e-9
        wider_low, wider_high = newcombe_interval(table, min(0.999, level + 0.009))
        assert wider_low <= low + 1e-9 and wider_high >= high - 1e-9
        assert 0 < mcnemar_test(*verdicts(a, b, c, d)) <= 1


class TestDetectableDifference:
    def test_the_first_split_that_excludes_zero(self):
        table = PairedTable(10, 3, 5, 200)  # 8 discordant pairs
        detectable = detectable_difference(table)
        favoured = round((detectable * table.n / 100 + 8) / 2)
        low, _ = newcombe_interval(PairedTable(10, 8 - favoured, favoured, 200))
        assert low > 0
        low, _ = newcombe_interval(PairedTable(10, 9 - favoured, favoured - 1, 200))
        assert low <= 0

    def test_too_few_discordant_pairs(self):
        assert math.isnan(detectable_difference(PairedTable(0, 1, 1, 71)))
        assert math.isnan(detectable_difference(PairedTable(0, 0, 0, 73)))

    def test_smallest_detectable_for_the_default_study_size(self):
        # 73 questions all wrong for both: 5 questions fixed by one variant alone are the fewest
        # whose interval excludes zero; 4 are not enough.
        smallest = smallest_detectable_difference(PairedTable(0, 0, 0, 73))
        assert smallest == pytest.approx(100 * 5 / 73)
        assert newcombe_interval(PairedTable(0, 0, 5, 68))[0] > 0
        assert newcombe_interval(PairedTable(0, 0, 4, 69))[0] <= 0
        assert math.isnan(smallest_detectable_difference(PairedTable(0, 0, 0, 1)))


def paired_answers(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 101, n).astype(float),
        rng.random(n) < 0.2,
        rng.integers(0, 101, n).astype(float),
        rng.random(n) < 0.3,
    )


class TestCalibrationDifference:
    def test_point_estimate_is_the_difference_of_the_official_figures(self):
        conf_b, corr_b, conf_f, corr_f = paired_answers(230)
        result = calibration_difference(conf_b, corr_b, conf_f, corr_f, n_resamples=200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSampleWarning)
            official = calibration_error(conf_f, corr_f) - calibration_error(conf_b, corr_b)
        every = calibration_error(conf_f, corr_f, all_bins=True) - calibration_error(
            conf_b, corr_b, all_bins=True
        )
        assert result["calibration_error_diff"].value == pytest.approx(official)
        assert result["calibration_error_all_bins_diff"].value == pytest.approx(every)
        for interval in result.values():
            assert interval.low <= interval.high
            assert interval.low < interval.high  # random answers: the resamples vary

    def test_the_seed_fixes_the_interval(self):
        answers = paired_answers(120)
        first = calibration_difference(*answers, n_resamples=300, seed=7)
        again = calibration_difference(*answers, n_resamples=300, seed=7)
        other = calibration_difference(*answers, n_resamples=300, seed=8)
        assert first == again
        key = "calibration_error_all_bins_diff"
        assert (first[key].low, first[key].high) != (other[key].low, other[key].high)

    def test_official_is_undefined_below_beta_and_zero_up_to_two_beta(self):
        small = calibration_difference(*paired_answers(73), n_resamples=50)
        assert math.isnan(small["calibration_error_diff"].value)
        assert math.isnan(small["calibration_error_diff"].low)
        assert not math.isnan(small["calibration_error_all_bins_diff"].value)
        # 100..199 answers: the official figure leaves its only bin out, 0 for both variants.
        middle = calibration_difference(*paired_answers(150), n_resamples=50)
        official = middle["calibration_error_diff"]
        assert (official.value, official.low, official.high) == (0.0, 0.0, 0.0)

    def test_edge_cases(self):
        empty = calibration_difference([], [], [], [])
        assert all(math.isnan(i.value) for i in empty.values())
        one = calibration_difference([90], [True], [40], [False])["calibration_error_all_bins_diff"]
        assert (one.value, one.low, one.high) == pytest.approx((30.0, 30.0, 30.0))
        with pytest.raises(ValueError, match="pair the same questions"):
            calibration_difference([1, 2], [True, False], [1], [True])


class TestComparePaired:
    def test_the_whole_comparison(self):
        baseline, finetuned = verdicts(3, 2, 12, 201)
        result = compare_paired(baseline, finetuned)
        assert result.table == PairedTable(3, 2, 12, 201)
        assert result.baseline_accuracy == pytest.approx(100 * 5 / 218)
        assert result.finetuned_accuracy == pytest.approx(100 * 15 / 218)
        assert result.accuracy_diff == pytest.approx(100 * 10 / 218)
        assert result.mcnemar_p == pytest.approx(binomtest(12, 14).pvalue)
        assert result.accuracy_diff_ci_low > 0  # 12 against 2: beyond chance
        record = result.record()
        assert record["discordant"] == 14 and record["n"] == 218
        assert math.isnan(record["calibration_error_diff"])  # no confidences given

    @pytest.mark.parametrize(
        ("table", "difference"),
        [((0, 0, 0, 40), 0.0), ((40, 0, 0, 0), 0.0), ((0, 0, 40, 0), 100.0)],
    )
    def test_all_wrong_all_correct_all_one_sided(self, table, difference):
        result = compare_paired(*verdicts(*table), [50.0] * 40, [50.0] * 40, n_resamples=50)
        assert result.accuracy_diff == difference
        assert result.accuracy_diff_ci_low <= difference <= result.accuracy_diff_ci_high
        if difference == 0:
            assert result.mcnemar_p == 1.0 and math.isnan(result.detectable_diff)
            assert result.accuracy_diff_ci_low < 0 < result.accuracy_diff_ci_high
        else:
            assert result.mcnemar_p == pytest.approx(2 / 2**40)

    @given(st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(0, 100)), max_size=40))
    @settings(max_examples=60, deadline=None)
    def test_never_raises_on_any_verdicts(self, rows):
        baseline = [r[0] for r in rows]
        finetuned = [r[1] for r in rows]
        confidence = [r[2] for r in rows]
        result = compare_paired(baseline, finetuned, confidence, confidence[::-1], n_resamples=20)
        assert result.table.n == len(rows)
        assert 0 <= result.mcnemar_p <= 1


def predictions(rows) -> pd.DataFrame:
    """A predictions table as the evaluation writes it: id, category, correct, confidence,
    judged (``correct`` None where the judgement is missing)."""
    return pd.DataFrame(rows, columns=["id", "category", "correct", "confidence", "judged"])


class TestComparePredictions:
    BASELINE = predictions(
        [
            ("q1", "Math", True, 90.0, True),
            ("q2", "Math", False, 80.0, True),
            ("q3", "Math", False, 70.0, True),
            ("q4", "Physics", True, 60.0, True),
            ("q5", "Physics", False, 100.0, False),  # no verdict: left out of both
            ("q6", "Physics", False, 50.0, True),
            ("q7", "Math", False, 40.0, True),
        ]
    )
    FINETUNED = predictions(
        [
            ("q1", "Math", True, 95.0, True),
            ("q2", "Math", True, 85.0, True),
            ("q3", "Math", True, 75.0, True),
            ("q4", "Physics", False, 65.0, True),
            ("q5", "Physics", True, 100.0, True),
            ("q6", "Physics", True, 55.0, True),
            ("q7", "Math", None, None, None),  # the judgement is missing altogether
        ]
    )

    def test_unjudged_answers_are_left_out_pairwise(self):
        results = compare_predictions(self.BASELINE, self.FINETUNED, n_resamples=50, beta=2)
        overall, math_, physics = results
        assert [r.category for r in results] == ["All", "Math", "Physics"]
        # Paired: q1 (both right), q2, q3, q6 (fine-tuned only), q4 (baseline only).
        assert overall.table == PairedTable(1, 1, 3, 0)
        assert overall.unpaired == 2  # q5 and q7
        assert math_.table == PairedTable(1, 0, 2, 0) and math_.unpaired == 1
        assert physics.table == PairedTable(0, 1, 1, 0) and physics.unpaired == 1
        assert overall.accuracy_diff == pytest.approx(100 * (3 - 1) / 5)
        assert overall.mcnemar_p == pytest.approx(binomtest(3, 4).pvalue)
        # Calibration on the paired questions only: q1, q2, q3, q4, q6, in that order.
        every = overall.calibration_error_all_bins_diff
        expected = calibration_error(
            [95, 85, 75, 65, 55], [1, 1, 1, 0, 1], beta=2, all_bins=True
        ) - calibration_error([90, 80, 70, 60, 50], [1, 0, 0, 1, 0], beta=2, all_bins=True)
        assert every.value == pytest.approx(expected)

    def test_missing_columns_are_named(self):
        with pytest.raises(ValueError, match=r"finetuned predictions table lacks.*'judged'"):
            compare_predictions(self.BASELINE, self.FINETUNED.drop(columns="judged"))

    def test_config_rejects_unknown_and_bad_keys(self):
        with pytest.raises(ConfigError, match=r"evaluation.comparison.resamples: unknown key"):
            ComparisonConfig.from_params({"resamples": 10})
        with pytest.raises(ConfigError, match=r"confidence_level is 95.0; set it in \(0, 1\)"):
            ComparisonConfig.from_params({"confidence_level": 95})
        with pytest.raises(ConfigError, match="confidence_level is 'high'; it must be a number"):
            ComparisonConfig.from_params({"confidence_level": "high"})
        with pytest.raises(
            ConfigError, match="bootstrap_resamples is 0; set it to an integer >= 1"
        ):
            ComparisonConfig.from_params({"bootstrap_resamples": 0})
        with pytest.raises(ConfigError, match="seed is 1.5; it must be an integer"):
            ComparisonConfig.from_params({"seed": 1.5})
        assert ComparisonConfig.from_params(None) == ComparisonConfig(
            confidence_level=0.95, bootstrap_resamples=2000, seed=0
        )

    def test_report_from_two_prediction_tables(self):
        results = compare_predictions(self.BASELINE, self.FINETUNED, n_resamples=50, beta=2)
        table = pd.DataFrame([r.record() for r in results])
        section = comparison_section(
            table, confidence_level=0.95, bootstrap_resamples=50, seed=0, beta=2
        )
        assert section.startswith("## Baseline against fine-tuned")
        assert "on the 5 questions both answered and were judged on (2 left out)" in section
        p_value = f"{binomtest(3, 4).pvalue:.3g}"
        low, high = newcombe_interval(PairedTable(1, 1, 3, 0))
        assert (
            f"| All | 5 | 1 | 1 | 3 | 0 | 40.0 | 80.0 | +40.0 [{low:+.1f}, {high:+.1f}] "
            f"| {p_value} |" in section
        )
        assert "| Math | 3 | 1 | 0 | 2 | 0 |" in section
        assert "| Physics | 2 | 0 | 1 | 1 | 0 |" in section
        assert "its 95% interval includes zero" in section
        # All 4 discordant pairs on one side (4 of 5 questions) would be needed.
        assert (
            "With 5 paired questions and these 4 discordant pairs, differences under 80.0 pp"
            in section
        )
        assert "excludes zero only when at least 4 of the 4 discordant pairs" in section
        row = comparison_row_markdown(table.iloc[0].to_dict())
        assert row.startswith(f"| **Fine-tuned − baseline** (paired; McNemar p = {p_value};")
        assert "3 fine-tuned only, 1 baseline only" in row


class TestRealJudgedPredictions:
    """DeepWriter (Gemini 3 Pro) on 878 text-only HLE questions, judged (the real HLE data)."""

    @pytest.fixture(scope="class")
    def judged(self):
        frame = pd.read_csv(anchor("deepwriter_gemini3pro_hle_text878.csv"))
        frame = frame[frame["id"] != "Totals:"]
        confidence = frame["confidence"].str.rstrip("%").astype(float).fillna(100)
        return confidence.to_numpy(), frame["score"].astype(bool).to_numpy()

    def test_a_model_against_itself_is_exactly_no_difference(self, judged):
        confidence, correct = judged
        result = compare_paired(correct, correct, confidence, confidence, n_resamples=200)
        assert result.table == PairedTable(447, 0, 0, 431)
        assert result.mcnemar_p == 1.0 and result.accuracy_diff == 0.0
        assert result.accuracy_diff_ci_low < 0 < result.accuracy_diff_ci_high
        # Paired resamples: both "variants" draw the same questions, so every resample differs
        # by exactly 0 (an unpaired bootstrap would not).
        for interval in (result.calibration_error_diff, result.calibration_error_all_bins_diff):
            assert (interval.value, interval.low, interval.high) == (0.0, 0.0, 0.0)

    def test_breaking_sixty_right_answers_is_beyond_chance(self, judged):
        confidence, correct = judged
        broken = correct.copy()
        broken[np.flatnonzero(correct)[:60]] = False  # the "fine-tuned" variant loses 60
        result = compare_paired(correct, broken, confidence, confidence, n_resamples=200)
        assert result.table == PairedTable(387, 60, 0, 431)
        assert result.accuracy_diff == pytest.approx(-100 * 60 / 878)
        assert result.mcnemar_p == pytest.approx(2 / 2**60)
        assert result.accuracy_diff_ci_high < 0
        # Fewer right answers at the same stated confidence: worse calibrated (all bins).
        every = result.calibration_error_all_bins_diff
        assert 0 < every.low <= every.value <= every.high


verdict_rows = st.lists(
    st.tuples(
        st.sampled_from(["Math", "Physics", "Other"]),
        st.sampled_from([True, False, None]),  # baseline correct (None: no judgement)
        st.booleans(),  # baseline judged
        st.sampled_from([True, False, None]),
        st.booleans(),
        st.floats(0, 100),
    ),
    max_size=30,
)


@given(verdict_rows)
@settings(max_examples=60, deadline=None)
def test_any_pair_of_prediction_tables_is_compared_without_error(rows):
    ids = [f"q{i}" for i in range(len(rows))]
    baseline = predictions([(i, r[0], r[1], r[5], r[2]) for i, r in zip(ids, rows, strict=True)])
    finetuned = predictions(
        [(i, r[0], r[3], 100 - r[5], r[4]) for i, r in zip(ids, rows, strict=True)]
    )
    results = compare_predictions(baseline, finetuned, n_resamples=20, beta=5)
    paired = sum(r[1] is not None and r[2] and r[3] is not None and r[4] for r in rows)
    assert results[0].table.n == paired and results[0].unpaired == len(rows) - paired
    assert [r.category for r in results[1:]] == sorted({r[0] for r in rows})
    assert sum(r.table.n + r.unpaired for r in results[1:]) == len(rows)


def test_the_closing_summary_line():
    line = compare_paired(*verdicts(3, 2, 12, 201)).headline()
    p_value = binomtest(12, 14).pvalue
    low, high = newcombe_interval(PairedTable(3, 2, 12, 201))
    assert line == (
        f"  finetuned - baseline: +4.59 pp [{low:+.2f}, {high:+.2f}] (95%, 218 paired), "
        f"McNemar p = {p_value:.3f} (12 fine-tuned only, 2 baseline only); "
        "calibration error, all bins: n/a"
    )
    with_confidence = compare_paired(*verdicts(0, 0, 0, 73), [100.0] * 73, [100.0] * 73)
    assert with_confidence.headline().endswith(
        "calibration error, all bins: +0.00 pp [+0.00, +0.00]"
    )
