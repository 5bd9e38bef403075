"""The paired comparison's figures are scipy.stats' own (``binomtest``'s p-value and Wilson
interval, ``bootstrap``'s paired percentile interval for the same seed), computed without
importing scipy.stats."""

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from hle_reasoning.hle.scoring.comparison import (
    PairedTable,
    calibration_difference,
    mcnemar_p,
    wilson_interval,
)
from hle_reasoning.hle.scoring.metrics import calibration_error
from tests.conftest import anchor

LEVELS = (0.95, 0.8, 0.99)


class TestMcNemar:
    @pytest.mark.parametrize("n", [*range(1, 31), 73, 218, 299, 300])
    def test_is_binomtests_two_sided_p_value(self, n):
        expected = [stats.binomtest(k, n, 0.5).pvalue for k in range(n + 1)]
        # The concordant pairs (5 and 7 here) do not enter the test.
        got = [mcnemar_p(PairedTable(5, n - k, k, 7)) for k in range(n + 1)]
        assert_allclose(got, expected, rtol=1e-12, atol=0)

    def test_every_split_of_up_to_300_discordant_pairs(self):
        # binomtest's definition of the two-sided p-value: the probability of every outcome no
        # more likely than the observed one (its relative tolerance 1e-7), capped at 1. (45,000
        # calls of binomtest itself take 40 s here; its pmf array per n is instant.)
        for n in range(1, 301):
            pmf = stats.binom.pmf(np.arange(n + 1), n, 0.5)
            expected = [min(1.0, pmf[pmf <= pmf[k] * (1 + 1e-7)].sum()) for k in range(n + 1)]
            got = [mcnemar_p(PairedTable(0, n - k, k, 0)) for k in range(n + 1)]
            assert_allclose(got, expected, rtol=1e-12, atol=0, err_msg=f"n = {n}")

    def test_no_discordant_pair(self):
        assert mcnemar_p(PairedTable(3, 0, 0, 4)) == 1.0


def test_wilson_interval_is_binomtests_for_every_k_up_to_300():
    # binomtest's own result class, built without its p-value (45,000 p-values take 40 s): its
    # proportion_ci is the method under test.
    result_class = type(stats.binomtest(1, 2))
    for n in range(1, 301):
        for level in LEVELS:
            expected = [
                tuple(
                    result_class(k, n, "two-sided", k / n, math.nan).proportion_ci(
                        level, method="wilson"
                    )
                )
                for k in range(n + 1)
            ]
            got = [wilson_interval(k, n, level) for k in range(n + 1)]
            assert_allclose(got, expected, rtol=1e-12, atol=0, err_msg=f"n = {n}, {level}")
    assert stats.binomtest(0, 7).proportion_ci(method="wilson").low == 0.0
    assert wilson_interval(0, 7, 0.95)[0] == 0.0 and wilson_interval(7, 7, 0.95)[1] == 1.0


def scipy_bootstrap(answers, *, beta, p, n_resamples, seed, confidence_level=0.95):
    """(lows, highs) of scipy.stats.bootstrap over the paired answers: all bins, then official."""
    official = len(answers[0]) >= beta

    def differences(conf_b, corr_b, conf_f, corr_f):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = [
                calibration_error(conf_f, corr_f, beta=beta, p=p, all_bins=True)
                - calibration_error(conf_b, corr_b, beta=beta, p=p, all_bins=True)
            ]
            if official:
                values.append(
                    calibration_error(conf_f, corr_f, beta=beta, p=p)
                    - calibration_error(conf_b, corr_b, beta=beta, p=p)
                )
        return np.array(values)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN intervals: scipy's DegenerateDataWarning
        interval = stats.bootstrap(
            tuple(answers),
            differences,
            paired=True,
            vectorized=False,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
    return np.atleast_1d(interval.low), np.atleast_1d(interval.high)


def tie_heavy(n: int, seed: int, missing: int = 0):
    """Paired answers with confidences piled at 100 and 0, as real HLE answers have (the first
    ``missing`` of the baseline's confidences NaN)."""
    rng = np.random.default_rng(seed)
    stated = [100.0, 100.0, 100.0, 0.0, 0.0, 95.0, 50.0, 99.5, 10.0, 85.0]
    conf_b = rng.choice(stated, n)
    conf_f = np.where(rng.random(n) < 0.5, rng.choice(stated, n), rng.integers(0, 101, n))
    conf_b[:missing] = math.nan
    return [conf_b, rng.random(n) < 0.3, conf_f.astype(float), rng.random(n) < 0.4]


def assert_same_intervals(answers, *, beta, p, n_resamples, seed, confidence_level=0.95):
    ours = calibration_difference(
        *answers,
        beta=beta,
        p=p,
        n_resamples=n_resamples,
        seed=seed,
        confidence_level=confidence_level,
    )
    lows, highs = scipy_bootstrap(
        answers,
        beta=beta,
        p=p,
        n_resamples=n_resamples,
        seed=seed,
        confidence_level=confidence_level,
    )
    keys = ["calibration_error_all_bins_diff", "calibration_error_diff"][: len(lows)]
    got = [(ours[key].low, ours[key].high) for key in keys]
    assert_allclose(got, np.column_stack([lows, highs]), rtol=1e-12, atol=1e-12)
    if len(lows) == 1:
        assert math.isnan(ours["calibration_error_diff"].low)
    return ours


class TestBootstrapIsScipys:
    @pytest.mark.parametrize(
        ("beta", "n"),
        [(10, 2), (10, 9), (10, 10), (10, 27), (100, 99), (100, 100), (100, 207), (100, 300)],
    )
    @pytest.mark.parametrize("p", ["2", "1", "max"])
    def test_same_seed_same_interval(self, beta, n, p):
        assert_same_intervals(tie_heavy(n, n), beta=beta, p=p, n_resamples=100, seed=n)

    @pytest.mark.parametrize("seed", [0, 1, 7])
    def test_every_seed(self, seed):
        assert_same_intervals(tie_heavy(57, 4), beta=10, p="2", n_resamples=150, seed=seed)

    @pytest.mark.parametrize("level", [0.9, 0.99])
    def test_other_levels(self, level):
        answers = tie_heavy(57, 5)
        assert_same_intervals(
            answers, beta=10, p="2", n_resamples=150, seed=3, confidence_level=level
        )

    @pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
    def test_missing_confidences(self):
        # 10 of 30 confidences missing, bins of 10: the last bin's mean confidence is undefined
        # in some resamples (the all-bins figure NaN there, so its interval NaN), not the rest.
        answers = tie_heavy(30, 2, missing=10)
        ours = assert_same_intervals(answers, beta=10, p="2", n_resamples=100, seed=0)
        assert math.isnan(ours["calibration_error_all_bins_diff"].low)
        assert not math.isnan(ours["calibration_error_diff"].low)

    def test_one_question_is_its_own_interval(self):
        one = calibration_difference([100.0], [False], [0.0], [False], beta=1, n_resamples=50)
        every, official = one["calibration_error_all_bins_diff"], one["calibration_error_diff"]
        assert every.low == every.value == every.high == -100.0
        assert official.low == official.value == official.high == 0.0  # its only bin left out

    def test_real_judged_answers(self):
        frame = pd.read_csv(anchor("deepwriter_gemini3pro_hle_text878.csv"))
        frame = frame[frame["id"] != "Totals:"].head(218)
        confidence = frame["confidence"].str.rstrip("%").astype(float).fillna(100).to_numpy()
        correct = frame["score"].astype(bool).to_numpy()
        tuned = correct.copy()
        tuned[np.flatnonzero(correct)[: correct.sum() // 10]] = False
        answers = [confidence, correct, confidence, tuned]
        assert_same_intervals(answers, beta=100, p="2", n_resamples=500, seed=0)


COMPARE_IN_A_FRESH_INTERPRETER = """
import json, sys
import numpy as np, pandas as pd
from hle_reasoning.hle.scoring.comparison import compare_predictions
rng = np.random.default_rng(0)
frames = [
    pd.DataFrame({"id": [f"q{i}" for i in range(40)], "category": ["Math", "Physics"] * 20,
                  "correct": rng.random(40) < share, "confidence": rng.integers(0, 101, 40),
                  "judged": True})
    for share in (0.3, 0.6)
]
results = compare_predictions(*frames, n_resamples=100, beta=10)
print(json.dumps({
    "figures": [r.record() for r in results],
    "scipy.stats": sorted(m for m in sys.modules if m.split(".")[:2] == ["scipy", "stats"]),
}))
"""


def test_the_comparison_does_not_import_scipy_stats():
    done = subprocess.run(
        [sys.executable, "-c", COMPARE_IN_A_FRESH_INTERPRETER],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    overall = found["figures"][0]
    assert overall["n"] == 40 and 0 < overall["mcnemar_p"] <= 1
    assert overall["calibration_error_diff_ci_low"] <= overall["calibration_error_diff_ci_high"]
    assert found["scipy.stats"] == []
