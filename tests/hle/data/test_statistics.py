import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hle_reasoning.hle.data.statistics import (
    category_bar_chart,
    dataset_statistics,
    image_size_mb,
    statistics_markdown,
)


def png_uri(size: int) -> tuple[str, int]:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (size % 255, 0, 0)).save(buf, format="PNG")
    data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode(), len(data)


@pytest.fixture
def small():
    img_a, bytes_a = png_uri(10)
    img_b, bytes_b = png_uri(40)
    questions = pd.DataFrame(
        {
            "id": ["m1", "m2", "m3", "p1"],
            "question": ["a", "b", "c", "d"],
            "image": [img_a, "", img_b, ""],
            "answer_type": ["exactMatch", "exactMatch", "multipleChoice", "exactMatch"],
            "category": ["Math", "Math", "Math", "Physics"],
        }
    )
    tokens = np.array([10, 20, 60, 5])
    return questions, tokens, (bytes_a, bytes_b)


def test_statistics_by_hand(small):
    questions, tokens, (bytes_a, bytes_b) = small
    stats = dataset_statistics(questions, tokens, test_ids={"m1", "p1"}).set_index("category")
    math = stats.loc["Math"]
    assert math["questions"] == 3
    assert (math["tokens_min"], math["tokens_max"]) == (10, 60)
    assert math["tokens_mean"] == pytest.approx(30.0)
    # Sample std of 10, 20, 60: sqrt(((20)^2 + (10)^2 + (30)^2) / 2) = sqrt(700).
    assert math["tokens_std"] == pytest.approx(np.sqrt(700.0))
    assert math["image_pct"] == pytest.approx(200 / 3)
    assert math["image_mb_mean"] == pytest.approx((bytes_a + bytes_b) / 2 / 1e6)
    assert math["image_mb_std"] == pytest.approx(np.std([bytes_a / 1e6, bytes_b / 1e6], ddof=1))
    assert math["exact_match_pct"] == pytest.approx(200 / 3)
    assert math["test_pct"] == pytest.approx(100 / 3)
    assert math["train_pct"] == pytest.approx(200 / 3)
    assert math["test_image_pct"] == pytest.approx(100.0)  # m1 has an image
    physics = stats.loc["Physics"]
    assert np.isnan(physics["tokens_std"]) and np.isnan(physics["image_mb_mean"])
    overall = stats.loc["All"]
    assert overall["questions"] == 4
    assert overall["tokens_mean"] == pytest.approx(23.75)
    assert overall["exact_match_pct"] == pytest.approx(75.0)
    assert list(stats.index) == ["Math", "Physics", "All"]


def test_image_size_is_decoded_bytes(small):
    questions, _, (bytes_a, _) = small
    assert image_size_mb(questions.loc[0, "image"]) == pytest.approx(bytes_a / 1e6)
    assert np.isnan(image_size_mb(""))


def test_markdown_and_figure(small):
    questions, tokens, _ = small
    stats = dataset_statistics(questions, tokens, test_ids={"m1"})
    sizes = pd.DataFrame(
        [
            {
                "category": "Math",
                "questions": 3,
                "cochran_n": 2.9,
                "test_size": 3,
                "train_size": 0,
                "test_pct": 100.0,
                "train_pct": 0.0,
                "min_test_pct": 96.7,
            },
        ]
    )
    md = statistics_markdown(stats, sizes, "f.jsonl", "tiny")
    assert "## Table 2." in md and "## Table 3." in md and "## Table 4." in md
    assert "| Math | 3 | 3 | 96.70 | 0.00 |" in md
    fig = category_bar_chart(stats, "t")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert set(labels) == {"Math", "Physics"}
