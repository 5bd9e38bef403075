"""The documentation's screenshots: taken by the end-to-end browser tests from a live run into
``docs/images/generated`` (``HLE_SCREENSHOT_DIR`` elsewhere), each with what it showed in
``screenshots.json``, so a fast test can tell when the live project no longer matches them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GENERATED = PROJECT_ROOT / "docs" / "images" / "generated"
MANIFEST = "screenshots.json"


def folder() -> Path:
    """Where the browser tests write their screenshots (the docs' folder unless redirected)."""
    path = Path(os.environ.get("HLE_SCREENSHOT_DIR", GENERATED))
    path.mkdir(parents=True, exist_ok=True)
    return path


def record(name: str, shown: dict[str, Any]) -> None:
    """Note in the manifest what screenshot ``name`` shows (the other entries are kept)."""
    path = folder() / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[name] = shown
    path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")


def graph_size(pipeline: str = "__default__") -> dict[str, int]:
    """The nodes and datasets (parameters included) of a registered pipeline, as kedro-viz draws
    them."""
    from kedro.framework.project import configure_project

    configure_project("hle_reasoning")
    from hle_reasoning.pipeline_registry import register_pipelines

    pipe = register_pipelines()[pipeline]
    return {"nodes": len(pipe.nodes), "datasets": len(pipe.datasets())}
