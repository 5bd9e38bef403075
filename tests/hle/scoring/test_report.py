import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from hle_reasoning.hle.formatting import format_number
from hle_reasoning.hle.scoring.metrics import METRICS, SCORE_COLUMNS, SCORES
from hle_reasoning.hle.scoring.report import (
    METRIC_COLUMNS,
    category_markdown,
    reliability_diagram,
    report_markdown,
    table_1,
    table_1_markdown,
    variant_metrics,
)

PAPER = [
    {"model": "GPT-4o", "accuracy": 3.1, "calibration_error": 92.3, "note": "2,700 questions"},
    {"model": "o1", "accuracy": 8.8, "calibration_error": 92.8},
]


def predictions(correct, confidence, categories, judged=None) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame(
        {
            "id": [f"q{i}" for i in range(n)],
            "category": categories,
            "correct": correct,
            "confidence": confidence,
            "judged": judged if judged is not None else [True] * n,
        }
    )


def test_variant_metrics_overall_and_per_category():
    table = variant_metrics(
        predictions(
            [True, False, False, True],
            [90, 50, 100, 80],
            ["Math", "Math", "Physics", "Physics"],
            judged=[True, True, False, True],
        ),
        beta=2,
    ).set_index("category")
    assert list(table.index) == ["All", "Math", "Physics"]
    # A failed judgement is not a wrong answer: the figures count the judged answers only.
    assert table.loc["All", "n"] == 3 and table.loc["All", "judged"] == 3
    assert table.loc["All", "answered"] == 4
    assert table.loc["All", "accuracy"] == pytest.approx(200 / 3)
    assert table.loc["Math", "accuracy"] == 50.0 and table.loc["Physics", "accuracy"] == 100.0
    assert table.loc["Physics", "answered"] == 2 and table.loc["Physics", "judged"] == 1
    # All, judged: confidences 50, 80, 90, correct 0, 1, 1: one bin of three (the remainder
    # joins it), which the official figure leaves out; all bins: |73.3 - 66.7|.
    assert table.loc["All", "calibration_error"] == 0.0
    assert table.loc["All", "calibration_error_all_bins"] == pytest.approx(220 / 3 - 200 / 3)
    assert math.isnan(table.loc["Physics", "calibration_error"])  # one judged answer < beta


def test_table_1_keeps_the_paper_rows_first_and_as_given():
    measured = [
        {
            "model": "Llama (baseline)",
            "variant": "baseline",
            "n": 73,
            "accuracy": 2.7397,
            "accuracy_ci": 3.74,
            "calibration_error": float("nan"),
            "calibration_error_all_bins": 88.1,
            "brier_score": 0.8123,
        }
    ]
    table = table_1(PAPER, measured)
    assert table["model"].tolist() == ["GPT-4o", "o1", "Llama (baseline)"]
    assert table["source"].tolist() == ["HLE paper", "HLE paper", "measured"]
    markdown = table_1_markdown(table)
    # The paper gives neither the all-bins figure nor the Brier score: their cells stay empty.
    assert "| GPT-4o (2,700 questions) | 3.1 | 92.3 |  |  |  | HLE paper |" in markdown
    assert "| Llama (baseline) | 2.7 ± 3.7 | n/a | 88.1 | 0.81 | 73 / 73 | measured |" in markdown
    assert "| Brier score ↓ |" in markdown.splitlines()[0]
    assert table["brier_score"].isna().tolist() == [True, True, False]
    report = report_markdown(
        table,
        variant_metrics(predictions([True], [80], ["Math"])).assign(variant="baseline"),
        paper_source="Phan et al. 2025",
        test_set="the Math test split",
        judge="rules",
        beta=100,
        p="2",
        notes=["a note"],
        diagrams=["baseline_reliability_diagram.png"],
    )
    assert "Paper rows: Phan et al. 2025" in report and "* a note" in report
    assert "![baseline_reliability_diagram.png](baseline_reliability_diagram.png)" in report


def test_the_tables_have_a_column_per_registered_figure():
    by_category = variant_metrics(
        predictions([True, False, True], [90, 50, 100], ["Math", "Math", "Physics"]), beta=2
    )
    assert list(by_category.columns) == ["category", *METRIC_COLUMNS]
    assert METRIC_COLUMNS == (*(m.name for m in METRICS), "answered")
    overall = by_category.iloc[0].to_dict()
    table = table_1(PAPER, [{**overall, "model": "M", "variant": "baseline"}])
    assert list(table.columns) == [
        "model",
        "variant",
        "source",
        "n",
        *SCORE_COLUMNS,
        "note",
        "answered",
    ]
    header, _, *rows = (cells(line) for line in table_1_markdown(table).splitlines())
    assert header == [
        "Model",
        *(m.heading(arrow=True) for m in SCORES),
        "n (judged / answered)",
        "Source",
    ]
    assert rows[-1][1:-2] == [m.show(overall, m.digits - 1) for m in SCORES]
    # Per category: every figure but the counts, which read "judged / answered".
    markdown = category_markdown(by_category.assign(variant="baseline"))
    header, _, *rows = (cells(line) for line in markdown.splitlines())
    shown = [m for m in METRICS if not m.count]
    assert header == ["Variant", "Category", "judged / answered"] + [
        m.heading(short=True) for m in shown
    ]
    assert rows[0][2:] == ["3 / 3"] + [format_number(overall[m.name], m.digits) for m in shown]


def cells(line: str) -> list[str]:
    """The cells of a Markdown table line."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_reliability_diagram_bins_by_stated_confidence():
    figure = reliability_diagram(
        [5, 15, 15, 95, 100], [False, True, False, True, True], title="t", n_bins=10
    )
    top, bottom = figure.axes
    counts = [bar.get_height() for bar in bottom.patches]
    accuracy = [bar.get_height() for bar in top.patches]
    assert counts == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert accuracy[:2] == [0.0, 50.0] and accuracy[-1] == 100.0
    assert "n=5" in top.get_title()
    plt.close(figure)
