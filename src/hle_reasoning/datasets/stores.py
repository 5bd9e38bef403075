"""One resumable store for every evaluated variant: reuse the stored rows by key, stream the new.

A node that answers or judges returns, per variant, a :class:`Wanted`: the rows it needs (a
question id and the key a stored record must be filed under: the generation setup, the
judgement) and a function that makes the missing ones. :class:`VariantStore` owns the rest
(``hle_reasoning.hle.data.records.resume``): it keeps the stored rows still wanted, drops the
stale ones, and appends each new chunk as it comes, so a killed run keeps every finished chunk
and a rerun asks only what is missing. Kedro's lazy saving, as ``PartitionedDataset`` saves
callables: the store calls the node's function while it saves.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)

Make = Callable[[pd.DataFrame, pd.DataFrame, Any], Iterator[pd.DataFrame]]


@dataclass(frozen=True)
class Wanted:
    """What a node asks a :class:`VariantStore` to hold for one variant.

    ``rows``: one per record needed, with ``id``, the store's key column and whatever ``make``
    reads. ``make(todo, kept, shards)`` yields the records of ``todo`` (the wanted rows not
    stored) chunk by chunk; ``kept`` holds the stored rows reused, ``shards`` the variant's shard
    folder (``JSONLinesShards``) when the store has one, for distributed workers.
    """

    rows: pd.DataFrame
    make: Make


class VariantStore(AbstractDataset[pd.DataFrame, Mapping[str, Wanted]]):
    """Every variant's records of one kind (answers, verdicts), one JSON-lines file per variant.

    ``filepath`` holds ``{variant}`` (the variant's name as ``hle.formatting.slug`` writes it):
    ``data/07_model_output/{variant}/responses.jsonl``. Loading returns every variant's
    records with a ``variant`` column (a file written before that column existed: its
    folder's name). Saving takes ``{variant: Wanted}`` and, per variant, keeps the stored
    records filed under a wanted ``(id, key_column)`` pair, drops the rest (atomically), then
    appends each chunk ``make`` yields (a line cut short by a kill is skipped on load); once
    the stream is complete the file is rewritten in the wanted rows' order.

    ``shards`` (optional, relative to the variant's folder): where distributed workers append
    their records (``JSONLinesShards``); records left there by a killed run count as stored,
    and the folder is emptied once they are in the file. ``also_read`` (optional): a file of
    an earlier layout, all variants in one with a ``variant`` column, read for a variant whose
    own file does not exist yet (its records are reused, not asked again).

    YAML::

        responses:
          type: hle_reasoning.datasets.VariantStore
          filepath: data/07_model_output/{variant}/responses.jsonl
          key_column: generation_key
          columns: hle_reasoning.modeling.generation.RESPONSE_COLUMNS
          shards: response_shards
    """

    def __init__(
        self,
        *,
        filepath: str,
        key_column: str,
        columns: list[str] | str | None = None,
        shards: str | None = None,
        also_read: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        from hle_reasoning.datasets.evaluation import column_list

        if filepath.count("{variant}") != 1:
            raise DatasetError(
                f"VariantStore filepath {filepath!r} must hold '{{variant}}' once, e.g. "
                "data/07_model_output/{variant}/responses.jsonl"
            )
        self._filepath = filepath
        self._key_column = key_column
        self._columns = ["variant", *[c for c in column_list(columns) if c != "variant"]]
        self._shards = shards
        self._also_read = also_read
        self.metadata = metadata

    # --- where things are ---------------------------------------------------------------------

    def _path(self, variant: str) -> Path:
        from hle_reasoning.hle.formatting import slug

        return Path(self._filepath.format(variant=slug(variant)))

    def _file(self, variant: str):
        from hle_reasoning.datasets.evaluation import JSONLinesStore

        return JSONLinesStore(filepath=str(self._path(variant)), columns=self._columns)

    def shards(self, variant: str):
        """The variant's shard folder (``None`` without ``shards``)."""
        from hle_reasoning.datasets.evaluation import JSONLinesShards

        if self._shards is None:
            return None
        return JSONLinesShards(
            path=str(self._path(variant).parent / self._shards), columns=tuple(self._columns[1:])
        )

    def _earlier(self) -> pd.DataFrame:
        from hle_reasoning.datasets.evaluation import JSONLinesStore

        if self._also_read is None or not Path(self._also_read).is_file():
            return pd.DataFrame(columns=self._columns)
        return JSONLinesStore(filepath=self._also_read, columns=self._columns).load()

    @property
    def key_column(self) -> str:
        """The column a stored record's key is in (``generation_key``, ``judge_key``)."""
        return self._key_column

    def held(self, variant: str, wanted: pd.DataFrame, done: str) -> int:
        """How many of ``wanted``'s rows (``id`` and the key column, as a node's :class:`Wanted`
        has them) the variant's stored records hold under their key with ``done`` set (an
        answer's ``response``, a verdict's ``correct``), as the run would reuse them."""
        stored = self.stored(variant)
        key = self._key_column
        if stored.empty or not {"id", key, done} <= set(stored.columns):
            return 0
        stored = stored[stored[done].notna()][["id", key]].astype(str).drop_duplicates()
        return len(wanted[["id", key]].astype(str).merge(stored, on=["id", key]))

    def stored(self, variant: str) -> pd.DataFrame:
        """The variant's stored records: its file's, or the earlier layout's; and its shards'."""
        from hle_reasoning.hle.formatting import slug

        file = self._file(variant)
        if file.exists():
            stored = file.load()
        else:
            earlier = self._earlier()
            stored = earlier[earlier["variant"].astype(str).map(slug) == slug(variant)]
        shards = self.shards(variant)
        leftover = shards.load() if shards is not None else None
        frames = [f for f in (stored, leftover) if f is not None and len(f)]
        if not frames:
            return pd.DataFrame(columns=self._columns)
        return pd.concat(frames, ignore_index=True)

    # --- Kedro --------------------------------------------------------------------------------

    def load(self) -> pd.DataFrame:
        head, tail = self._filepath.split("{variant}")
        frames, own = [], set()
        earlier_path = Path(self._also_read).resolve() if self._also_read else None
        for path in sorted(glob.glob(f"{glob.escape(head)}*{glob.escape(tail)}")):
            if earlier_path is not None and Path(path).resolve() == earlier_path:
                continue  # read below, for the variants without a file of their own
            folder = path[len(head) : len(path) - len(tail)]
            frame = self._file_at(Path(path))
            if "variant" not in frame.columns:
                frame["variant"] = folder
            frame["variant"] = frame["variant"].where(frame["variant"].notna(), folder)
            frames.append(frame)
            own.add(folder)
        from hle_reasoning.hle.formatting import slug

        earlier = self._earlier()
        frames.append(earlier[~earlier["variant"].astype(str).map(slug).isin(own)])
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=self._columns)
        table = pd.concat(frames, ignore_index=True)
        rest = [c for c in table.columns if c not in self._columns]
        return table[[*self._columns, *rest]]

    def _file_at(self, path: Path) -> pd.DataFrame:
        from hle_reasoning.datasets.evaluation import JSONLinesStore

        return JSONLinesStore(filepath=str(path), columns=self._columns[1:]).load()

    def save(self, data: Mapping[str, Wanted]) -> None:
        from hle_reasoning.hle.data.records import resume

        if not isinstance(data, Mapping) or not all(isinstance(w, Wanted) for w in data.values()):
            raise DatasetError(
                f"VariantStore {self._filepath} saves {{variant: Wanted}} "
                f"(got {type(data).__name__})"
            )
        for variant, wanted in data.items():
            file, shards = self._file(variant), self.shards(variant)
            chunks = resume(
                self.stored(variant),
                wanted.rows,
                key_column=self._key_column,
                columns=self._columns[1:],
                make=lambda todo, kept, make=wanted.make, shards=shards: make(todo, kept, shards),
            )
            file.replace(self._ordered(next(chunks).assign(variant=variant)))
            if shards is not None:
                shards.clear()  # their records are in the file now
            for chunk in chunks:
                file.append(self._ordered(chunk.assign(variant=variant)))
            if shards is not None:
                shards.clear()
            self._in_order(file, wanted.rows)

    def _in_order(self, file: Any, wanted: pd.DataFrame) -> None:
        """The complete file rewritten in the wanted rows' order (distributed workers and
        concurrent requests finish in any order)."""
        table = file.load()
        order = {qid: i for i, qid in enumerate(wanted["id"].astype(str))}
        ranks = table["id"].astype(str).map(order).fillna(len(order))
        table = table.iloc[ranks.argsort(kind="stable")].reset_index(drop=True)
        file.replace(self._ordered(table))

    def _ordered(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the store's columns first (missing ones empty), then any other."""
        rest = [c for c in frame.columns if c not in self._columns]
        return frame.reindex(columns=[*self._columns, *rest])

    def _exists(self) -> bool:
        head, tail = self._filepath.split("{variant}")
        return bool(glob.glob(f"{glob.escape(head)}*{glob.escape(tail)}"))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "key_column": self._key_column}
