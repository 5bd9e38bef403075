"""The docs show the screenshots the browser tests take, and those still match the project."""

from __future__ import annotations

import json
import re

from tests import screenshots
from tests.screenshots import GENERATED, MANIFEST, PROJECT_ROOT

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def _referenced() -> set[str]:
    """Every image under docs/images that README.md and docs/*.md point at, from the root."""
    found = set()
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+\.png)\)", doc.read_text()):
            found.add(str((doc.parent / target).resolve().relative_to(PROJECT_ROOT)))
    return found


def test_the_docs_show_exactly_the_generated_screenshots():
    generated = {str(p.relative_to(PROJECT_ROOT)) for p in GENERATED.glob("*.png")}
    manifest = json.loads((GENERATED / MANIFEST).read_text())
    assert {f"docs/images/generated/{name}" for name in manifest} == generated, (
        "docs/images/generated holds files no browser test wrote (or lacks one): rerun "
        "tests/e2e/test_kedro_viz.py and tests/e2e/test_mlflow_ui.py"
    )
    stale = sorted(p for p in _referenced() if p not in generated)
    assert not stale, f"the docs show images no test generates: {stale}"
    unused = sorted(generated - _referenced())
    assert not unused, f"generated screenshots the docs do not show: {unused}"
    # No hand-made picture beside them.
    loose = sorted(p.name for p in (PROJECT_ROOT / "docs" / "images").glob("*.png"))
    assert not loose, f"images outside docs/images/generated: {loose}"


def test_the_kedro_viz_screenshot_shows_the_current_graph():
    shown = json.loads((GENERATED / MANIFEST).read_text())["kedro_viz.png"]
    assert shown == {"pipeline": "__default__", **screenshots.graph_size()}, (
        "the pipeline changed since docs/images/generated/kedro_viz.png was taken: rerun "
        "tests/e2e/test_kedro_viz.py and commit the new screenshot"
    )
