"""The error of a model that cannot be loaded, and what to do about a damaged model folder
(apart from ``models``, so that ``families`` names it without an import circle)."""

from __future__ import annotations

from pathlib import Path


class ModelAccessError(RuntimeError):
    """A model that cannot be loaded as configured; the message says what to change."""


def rewrite_hint(path: str | Path) -> str:
    """What to do about a model folder that does not load: the project's own folders are
    rewritten by the training pipeline; any other is the user's to replace."""
    if Path(path).parent.name == "06_models":
        return (
            f"the project wrote {path}: rewrite it with `kedro run --pipelines training` (a crash "
            "or a full disk may have cut it)."
        )
    return (
        f"point model.name_or_path at a complete folder written by save_pretrained, or "
        f"replace {path}."
    )
