"""Stored records that a rerun reuses: the content key each one is filed under, and the stored
rows still valid (an answer of the same generation setup, a verdict of the same judgement)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Sequence
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

    ``resume`` keeps these rows and drops the rest from the store.
    """
    if len(stored):
        valid = stored[key_column].isin(set(keys))
        if ids is not None:
            valid &= stored["id"].astype(str).isin(set(ids))
        stored = stored[valid].drop_duplicates(list(unique), keep="last")
    return stored.reindex(columns=list(columns)).reset_index(drop=True)


def resume(
    stored: pd.DataFrame,
    wanted: pd.DataFrame,
    *,
    key_column: str,
    columns: Sequence[str],
    make: Callable[[pd.DataFrame, pd.DataFrame], Iterator[pd.DataFrame]],
) -> Iterator[pd.DataFrame]:
    """Reuse by key, stream the new rows: the one copy of a resumable table's rule.

    ``wanted`` holds a row per record needed (``id``, ``key_column`` and whatever ``make``
    reads). Yields first the rows of ``stored`` filed under a wanted ``(id, key)`` pair (the
    last of each pair, in ``columns``; possibly none), then every chunk of
    ``make(todo, kept)``, ``todo`` being the wanted rows not stored and ``kept`` the first chunk.
    """
    pairs = set(zip(wanted["id"].astype(str), wanted[key_column], strict=True))
    kept = reusable(
        stored,
        key_column=key_column,
        keys={key for _, key in pairs},
        ids={qid for qid, _ in pairs},
        columns=columns,
        unique=("id", key_column),
    )
    if len(kept):
        inside = [
            (str(qid), key) in pairs for qid, key in zip(kept["id"], kept[key_column], strict=True)
        ]
        kept = kept[inside].reset_index(drop=True)
    done = set(zip(kept["id"].astype(str), kept[key_column], strict=True))
    todo = wanted[
        [(str(q), k) not in done for q, k in zip(wanted["id"], wanted[key_column], strict=True)]
    ]
    yield kept
    yield from make(todo, kept)
