"""How every report and summary prints a number: fixed digits, and ``n/a`` when undefined."""

from __future__ import annotations

import math
import re
from typing import Any

MISSING = "n/a"


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
