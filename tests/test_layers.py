"""The library's layers import only downwards: a module never imports a package above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hle_reasoning"

# Each package and the project packages it may import (its own included). The benchmark (hle)
# is at the bottom: its data, judge and scoring rooms share only the number formatting;
# ``tracking`` (the one way into MLflow), ``hub`` (the one way into the Hugging Face hub: token,
# gating, local cache) and ``unreachable`` (when a server counts as down, for the judge and the
# answering backends alike) import no other project module.
ALLOWED = {
    "hub": set(),
    "unreachable": set(),
    "hle.formatting": set(),
    "hle.data": {"hle.formatting", "hub"},
    "hle.judge": {"hle.formatting", "hle.data", "unreachable"},
    "hle.scoring": {"hle.formatting", "hle.data"},
    "tracking": set(),
    "config": {"hle"},
    "modeling": {"hle", "config", "tracking", "hub", "unreachable"},
}


def _package(module: str) -> str | None:
    """The entry of ALLOWED that ``module`` (dotted, without ``hle_reasoning.``) belongs to."""
    for package in sorted(ALLOWED, key=len, reverse=True):
        if module == package or module.startswith(package + "."):
            return package
    return None


def _imports(path: Path) -> set[str]:
    """Every ``hle_reasoning.*`` module that ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(
            n.removeprefix("hle_reasoning.") for n in names if n.startswith("hle_reasoning.")
        )
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        dotted = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if _package(dotted):
            out.append((dotted, path))
    return out


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_a_module_imports_only_its_own_layer_and_those_below(module, path):
    own = _package(module)
    allowed = {own} | ALLOWED[own]
    upward = []
    for imported in _imports(path):
        if imported in ("hle", "hle.__init__"):
            continue
        target = _package(imported) or imported.split(".")[0]
        if not any(target == a or target.startswith(a + ".") for a in allowed):
            upward.append(imported)
    assert not upward, f"{module} imports {sorted(upward)}, above or beside its layer"


def test_every_benchmark_module_is_in_one_room():
    loose = [
        p.name for p in (SRC / "hle").glob("*.py") if p.name not in ("__init__.py", "formatting.py")
    ]
    assert not loose, f"hle/ modules outside data/, judge/ and scoring/: {loose}"
