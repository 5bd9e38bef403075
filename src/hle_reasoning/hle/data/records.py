"""Stored records that a rerun reuses: the content key each one is filed under, and the stored
rows still valid (an answer of the same generation setup, a verdict of the same judgement)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from typing import Any

import pandas as pd


def content_key(value: Any, length: int, *, sort_keys: bool = True) -> str:
    """The first ``length`` hex digits of the sha256 of ``value`` as JSON (a value JSON cannot
    hold as its text).

    The key is stored with every record: a change of ``length`` or of what goes into ``value``
    makes every stored record stale (answered, judged or trained again).
    """
    text = json.dumps(value, sort_keys=sort_keys, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def reusable(
    stored: pd.DataFrame,
    *,
    key_column: str,
    keys: Collection[str],
    columns: Sequence[str],
    unique: Sequence[str] = ("id",),
    ids: Collection[str] | None = None,
) -> pd.DataFrame:
    """The rows of ``stored`` a rerun keeps: filed under one of ``keys`` (and, given ``ids``, for
    one of those questions), the last of each ``unique`` combination, in ``columns``.

    The caller marks the result to replace the store (``datasets.stores``), which drops the rest.
    """
    if len(stored):
        valid = stored[key_column].isin(set(keys))
        if ids is not None:
            valid &= stored["id"].astype(str).isin(set(ids))
        stored = stored[valid].drop_duplicates(list(unique), keep="last")
    return stored.reindex(columns=list(columns)).reset_index(drop=True)
