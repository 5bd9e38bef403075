"""kedro-datasets file datasets whose saves are atomic: a file is replaced whole or not at all.

Each save writes a temporary sibling and renames it over the target, so a run that fails while
writing leaves the previous run's file intact. Use them exactly like their kedro-datasets
namesakes::

    hle_statistics_csv:
      type: hle_reasoning.datasets.CSVDataset
      filepath: data/08_reporting/hle_statistics.csv
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.text import TextDataset as _TextDataset


def atomic_replace(tmp: Path, final: Path) -> None:
    """Move ``tmp`` over ``final`` in one step (same directory, so same filesystem)."""
    os.replace(tmp, final)


def write_directory_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary sibling of ``path``, then swap it in for ``path``.

    If ``write`` raises, ``path`` keeps its previous content and the temporary folder is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _AtomicSave:
    """Mixin: run the parent's save against a temporary path, then rename it into place."""

    _filepath: PurePosixPath
    _protocol: str

    def save(self, data: Any) -> None:
        if getattr(self, "_protocol", "file") not in ("file", "", None):
            return super().save.__wrapped__(self, data)  # type: ignore[misc]
        final = self._filepath
        Path(final).parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        self._filepath = tmp
        try:
            super().save.__wrapped__(self, data)  # type: ignore[misc]
            atomic_replace(Path(tmp), Path(final))
        finally:
            self._filepath = final
            if Path(tmp).exists():
                Path(tmp).unlink()
        invalidate = getattr(self, "_invalidate_cache", None)
        if invalidate:
            invalidate()


class CSVDataset(_AtomicSave, _CSVDataset):
    """``pandas.CSVDataset`` with atomic saves."""


class ParquetDataset(_AtomicSave, _ParquetDataset):
    """``pandas.ParquetDataset`` with atomic saves."""


class TextDataset(_AtomicSave, _TextDataset):
    """``text.TextDataset`` with atomic saves."""


class JSONDataset(_AtomicSave, _JSONDataset):
    """``json.JSONDataset`` with atomic saves."""


class MatplotlibDataset(_AtomicSave, _MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` with atomic saves (one figure per file)."""
