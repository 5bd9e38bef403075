"""How every report and summary prints a number (fixed digits, ``n/a`` when undefined), names
its overall row and lays out a Markdown table."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "n/a"
ALL = "All"  # the overall row of every per-category table (statistics, figures, comparison)


def format_number(value: Any, digits: int = 2, suffix: str = "", *, signed: bool = False) -> str:
    """A number with ``digits`` decimals (and ``suffix``; a ``+`` before positive numbers when
    ``signed``, for differences); ``n/a`` for None or NaN."""
    if value is None:
        return MISSING
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    sign = "+" if signed else ""
    return MISSING if math.isnan(number) else f"{number:{sign}.{digits}f}{suffix}"


def slug(name: str) -> str:
    """A category or label as a metric-name part: lower case, ``_`` between words."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A Markdown table: the ``header`` line, the rule, one line per row of cells.

    ``align``: one letter per column, ``r`` right-aligned (numbers), anything else left (the
    default for columns it does not reach).
    """

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(cell) for cell in cells) + " |"

    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header))) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
