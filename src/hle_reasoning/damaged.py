"""A dataset that no longer loads, named with the command that rewrites it.

:class:`DamagedDatasetHook` remembers the dataset a node is loading; when the run then fails with
Kedro's ``DatasetError``, :func:`damaged_dataset_message` (called by the run command, ``cli.py``)
says which file it is, which pipeline of the study writes it and how to rewrite it, in place of
a traceback. :func:`dataset_path` is the file a catalog entry reads or writes, as the closing
summary lists it too.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

PIPELINE_ORDER = ("data_processing", "training", "evaluation")


class DamagedDatasetHook:
    """Remembers the dataset a node is loading, so that one that no longer loads (a parquet file
    truncated by a crash or a full disk, a schema from another version of the project) is named
    by ``damaged_dataset_message`` with the command that rewrites it."""

    loading: tuple[str, str] | None = None  # (dataset name, its description) while loading

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str, node: Any) -> None:
        DamagedDatasetHook.loading = (dataset_name, getattr(node, "name", ""))

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        DamagedDatasetHook.loading = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Any, catalog: Any) -> None:
        DamagedDatasetHook.loading = None
        DamagedDatasetHook.catalog = catalog


def damaged_dataset_message(error: BaseException) -> str | None:
    """One message for a dataset the project's pipelines wrote that failed to load during the
    run (``error`` a load error of it); None for anything else."""
    from kedro.io import DatasetError

    loading = DamagedDatasetHook.loading
    if loading is None:
        return None
    chain = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    if not any(isinstance(e, DatasetError) for e in chain):
        return None
    name, node = loading
    # The study's pipelines themselves (Kedro registers only those the run asked for).
    writers = [
        n
        for n in PIPELINE_ORDER
        if name
        in importlib.import_module(f"hle_reasoning.pipelines.{n}").create_pipeline().all_outputs()
    ]
    cause = chain[-1]
    detail = str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else ""
    path = dataset_path(getattr(DamagedDatasetHook, "catalog", None), name)
    where = f"{path} (dataset {name!r})" if path else f"dataset {name!r}"
    if not writers:  # an input of the run (the judged file of judge_agreement, ...)
        return (
            f"{where}, read by node {node!r}, cannot be read ({type(cause).__name__}: {detail}). "
            "It is an input of this run, not written by the study's pipelines: fix or replace "
            "the file (or the parameter that names it) and run again; nothing was changed."
        )
    return (
        f"{where}, read by node {node!r}, was written by this project's {writers[0]} pipeline "
        f"but no longer loads ({type(cause).__name__}: {detail}): damaged (a crash or a full "
        "disk while it was written, another tool) or written by another version of the project. "
        f"Rewrite it with `kedro run --pipelines {writers[0]}`, then run again; nothing else "
        "was changed."
    )


def dataset_path(catalog: Any, name: str) -> Path | None:
    """The file of the catalog's dataset ``name`` (relative to the working folder when under
    it); None when the catalog cannot say."""
    try:
        dataset = catalog.get(name) if hasattr(catalog, "get") else None
    except Exception:  # a dataset the catalog cannot describe is simply not listed
        return None
    path = getattr(dataset, "_filepath", None) or getattr(dataset, "_path", None)
    if not path:
        return None
    path = Path(str(path))
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
