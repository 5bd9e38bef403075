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

from hle_reasoning import tracking


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
    """Mixin: the parent's save writes a temporary sibling of the path it would write, which is
    then renamed into place.

    The path is the parent's own save path (``_get_save_path``), so ``versioned: true`` works:
    each save writes ``<filepath>/<version>/<name>`` whole, through Kedro's versioning.
    """

    _atomic: dict[str, Path] | None = None

    def _get_save_path(self) -> PurePosixPath:
        real = super()._get_save_path()  # type: ignore[misc]
        if self._atomic is None or getattr(self, "_protocol", "file") not in ("file", "", None):
            return real
        final = Path(str(real))
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        final.parent.mkdir(parents=True, exist_ok=True)
        self._atomic.update(final=final, tmp=tmp)
        return PurePosixPath(tmp)

    def save(self, data: Any) -> None:
        # Kedro wraps this method (versioning, logging) in each concrete class; the parent's
        # save is called unwrapped, so the rename happens before Kedro checks the version.
        # ``__wrapped__`` is functools.wraps' attribute, and Kedro's own
        # AbstractDataset.__init_subclass__ unwraps an inherited save the same way (it checks
        # ``__savewrapped__``); a second dataset instance on the temporary path would need the
        # parent's constructor arguments, which Kedro keeps only in a private attribute.
        self._atomic = {}
        try:
            super().save.__wrapped__(self, data)  # type: ignore[misc]
            if "tmp" in self._atomic:
                atomic_replace(self._atomic["tmp"], self._atomic["final"])
        finally:
            tmp = self._atomic.get("tmp")
            self._atomic = None
            if tmp is not None and tmp.exists():
                tmp.unlink()
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
    """``matplotlib.MatplotlibDataset`` with atomic saves (one figure per file); a figure also
    logged to MLflow is rendered once for both (``hle_reasoning.tracking.rendered``)."""

    def _save_to_fs(self, full_key_path: str, plot: Any) -> None:
        image = tracking.rendered(plot, **self._save_args)
        with self._fs.open(full_key_path, **self._fs_open_args_save) as fs_file:
            fs_file.write(image)
