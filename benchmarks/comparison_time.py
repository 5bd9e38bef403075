"""Time of the paired comparison (``hle_reasoning.hle.scoring.comparison.compare_paired``) per category.

Most of it is the calibration bootstrap (``evaluation.comparison.bootstrap_resamples``
resamples, each recomputing both variants' calibration errors). The verdicts and confidences are
the real judged answers of ``$HLE_SHARED_DIR/anchors/hle/deepwriter_gemini3pro_hle_text878.csv`` when
present (the first n of them, against the same answers with a tenth of the right ones turned
wrong), else seeded random ones::

    python benchmarks/comparison_time.py                     # n = 73, 218, 878; 2000 resamples
    python benchmarks/comparison_time.py --resamples 10000

Each size is timed three times; the table shows the best (the least disturbed by other work on
the machine) and the median. Then the import of ``scipy.stats``, which the comparison does not
need (its figures come from ``scipy.special`` and numpy), against ``scipy.special``: each in
fresh interpreters that have imported numpy and pandas, alternating, best and median.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy

from hle_reasoning.hle.scoring.comparison import compare_paired

ANCHOR = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "anchors"
    / "hle"
    / "deepwriter_gemini3pro_hle_text878.csv"
)


def answers() -> tuple[np.ndarray, np.ndarray, str]:
    if ANCHOR.exists():
        frame = pd.read_csv(ANCHOR)
        frame = frame[frame["id"] != "Totals:"]
        confidence = frame["confidence"].str.rstrip("%").astype(float).fillna(100).to_numpy()
        return confidence, frame["score"].astype(bool).to_numpy(), ANCHOR.name
    rng = np.random.default_rng(0)
    return rng.integers(0, 101, 878).astype(float), rng.random(878) < 0.5, "seeded random"


IMPORT_TIME = (
    "import time, numpy, pandas; started = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - started)"
)


def import_times(repeats: int) -> dict[str, list[float]]:
    """Seconds to import scipy.stats and scipy.special in fresh interpreters, alternating."""
    times: dict[str, list[float]] = {"scipy.stats": [], "scipy.special": []}
    for _ in range(repeats):
        for module, seconds in times.items():
            code = IMPORT_TIME.format(module=module)
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            seconds.append(float(done.stdout))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[73, 218, 878])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    confidence, correct, source = answers()
    print(
        f"{platform.machine()} {platform.processor() or ''}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}; answers: {source}; {args.resamples} resamples"
    )
    print(f"{'n':>5}  {'best (s)':>9}  {'median (s)':>10}  accuracy diff (pp) [95% CI]")
    for n in args.sizes:
        conf, base = confidence[:n], correct[:n]
        tuned = base.copy()
        tuned[np.flatnonzero(base)[: max(1, base.sum() // 10)]] = False
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = compare_paired(base, tuned, conf, conf, n_resamples=args.resamples)
            times.append(time.perf_counter() - started)
        print(
            f"{n:>5}  {min(times):>9.3f}  {statistics.median(times):>10.3f}  "
            f"{result.accuracy_diff:+.2f} [{result.accuracy_diff_ci_low:+.2f}, "
            f"{result.accuracy_diff_ci_high:+.2f}]"
        )
    for module, times in import_times(args.repeats).items():
        print(
            f"import {module} (after numpy, pandas): best {min(times):.3f} s, "
            f"median {statistics.median(times):.3f} s"
        )


if __name__ == "__main__":
    main()
