"""The proposal's dataset tables (2, 3 and 4) and its Figure 1, from a validated HLE frame."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hle_reasoning.hle.data.schema import CATEGORIES, decode_image, has_image
from hle_reasoning.hle.formatting import ALL, format_number, markdown_table

BYTES_PER_MB = 1_000_000  # decimal megabytes, as file sizes are usually quoted


def image_size_mb(data_uri: str) -> float:
    """Size of the decoded image file in MB (not of its base64 text)."""
    return len(decode_image(data_uri)) / BYTES_PER_MB if has_image(data_uri) else float("nan")


def token_lengths(
    questions: Sequence[str], count_tokens: Callable[[list[str]], list[int]]
) -> np.ndarray:
    """Token count of each question text, from a batch tokeniser function."""
    return np.asarray(count_tokens(list(questions)), dtype=int)


def _describe(frame: pd.DataFrame) -> dict:
    n = len(frame)
    tokens = frame["tokens"]
    images = frame["image_mb"].dropna()
    return {
        "questions": n,
        "tokens_min": int(tokens.min()),
        "tokens_max": int(tokens.max()),
        "tokens_mean": float(tokens.mean()),
        # Sample standard deviation (ddof = 1); NaN for a single question.
        "tokens_std": float(tokens.std(ddof=1)) if n > 1 else float("nan"),
        "image_pct": 100.0 * float(frame["has_image"].mean()),
        "image_mb_mean": float(images.mean()) if len(images) else float("nan"),
        "image_mb_std": float(images.std(ddof=1)) if len(images) > 1 else float("nan"),
        "exact_match_pct": 100.0 * float((frame["answer_type"] == "exactMatch").mean()),
    }


def category_order(categories: Sequence[str]) -> list[str]:
    """HLE's own category order first, then any others alphabetically."""
    known = [c for c in CATEGORIES if c in set(categories)]
    return known + sorted(set(categories) - set(CATEGORIES))


def dataset_statistics(
    questions: pd.DataFrame, tokens: np.ndarray, test_ids: set[str]
) -> pd.DataFrame:
    """Per-category and overall statistics: the proposal's Tables 3 and 4 in one frame."""
    frame = pd.DataFrame(
        {
            "category": questions["category"].to_numpy(),
            "answer_type": questions["answer_type"].to_numpy(),
            "has_image": questions["image"].map(has_image).to_numpy(),
            "image_mb": questions["image"].map(image_size_mb).to_numpy(),
            "tokens": tokens,
            "is_test": questions["id"].astype(str).isin(test_ids).to_numpy(),
        }
    )
    rows = []
    groups = [(c, frame[frame["category"] == c]) for c in category_order(frame["category"])]
    for name, part in [*groups, (ALL, frame)]:
        row = {"category": name, **_describe(part)}
        test = part[part["is_test"]]
        row["train_pct"] = 100.0 * (1.0 - float(part["is_test"].mean()))
        row["test_pct"] = 100.0 * float(part["is_test"].mean())
        row["test_image_pct"] = (
            100.0 * float(test["has_image"].mean()) if len(test) else float("nan")
        )
        row["test_exact_match_pct"] = (
            100.0 * float((test["answer_type"] == "exactMatch").mean())
            if len(test)
            else float("nan")
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: object, digits: int) -> str:
    return format_number(value, digits) if isinstance(value, float) else str(value)


def _markdown_table(frame: pd.DataFrame, columns: dict[str, str], digits: int = 2) -> str:
    rows = ([_cell(row[c], digits) for c in columns] for _, row in frame.iterrows())
    return markdown_table(list(columns.values()), rows)


def statistics_markdown(
    statistics: pd.DataFrame, split_sizes: pd.DataFrame, source: str, tokenizer_name: str
) -> str:
    """The proposal's dataset tables as Markdown: test sizes (2), the split (3), the dataset (4)."""
    order = {c: i for i, c in enumerate(category_order(split_sizes["category"]))}
    sizes = split_sizes.sort_values("category", key=lambda c: c.map(order)).reset_index(drop=True)
    total = {
        "category": ALL,
        "questions": int(sizes["questions"].sum()),
        "cochran_n": float(sizes["cochran_n"].sum()),
        "test_size": int(sizes["test_size"].sum()),
        "train_size": int(sizes["train_size"].sum()),
    }
    total["test_pct"] = 100.0 * total["test_size"] / total["questions"]
    total["train_pct"] = 100.0 - total["test_pct"]
    total["min_test_pct"] = 100.0 * total["cochran_n"] / total["questions"]
    sizes = pd.concat([sizes, pd.DataFrame([total])], ignore_index=True)
    parts = [
        "# HLE dataset statistics",
        "",
        f"Source: `{source}`. Token counts: question text only, no special tokens, "
        f"tokenizer `{tokenizer_name}`. Standard deviations are sample (n - 1). "
        "Image sizes are decoded file sizes in MB (10^6 bytes).",
        "",
        "## Table 2. Test size per category (Cochran's formula, finite-population correction)",
        "",
        _markdown_table(
            sizes,
            {
                "category": "Category",
                "questions": "Questions",
                "test_size": "Test size",
                "min_test_pct": "Min test %",
                "train_pct": "Train %",
            },
        ),
        "",
        "## Table 3. Train/test split by category (image and exact-match shares of the test split)",
        "",
        _markdown_table(
            statistics,
            {
                "category": "Category",
                "questions": "Questions",
                "train_pct": "Train %",
                "test_pct": "Test %",
                "test_image_pct": "Image %",
                "test_exact_match_pct": "Exact match %",
            },
        ),
        "",
        "## Table 4. Dataset description by category",
        "",
        _markdown_table(
            statistics,
            {
                "category": "Category",
                "tokens_min": "Tokens min",
                "tokens_max": "Tokens max",
                "tokens_mean": "Tokens mean",
                "tokens_std": "Tokens std",
                "image_mb_mean": "Image MB mean",
                "image_mb_std": "Image MB std",
                "image_pct": "Images %",
                "exact_match_pct": "Exact match %",
            },
            digits=4,
        ),
        "",
    ]
    return "\n".join(parts)


def category_bar_chart(statistics: pd.DataFrame, title: str) -> plt.Figure:
    """Figure 1: number of questions per category, largest first."""
    per_cat = statistics[statistics["category"] != ALL].sort_values("questions", ascending=True)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    bars = ax.barh(per_cat["category"], per_cat["questions"], color="#3b6ea5")
    ax.bar_label(bars, padding=3, fontsize=9)
    ax.set_xlabel("Questions")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlim(0, per_cat["questions"].max() * 1.12)
    fig.tight_layout()
    return fig
