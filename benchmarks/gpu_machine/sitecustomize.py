"""The GPU machine's Python environment, rehearsed on another machine.

With this folder on ``PYTHONPATH``, Python hides (``sys.modules[name] = None``: ``import`` fails,
``importlib.util.find_spec`` answers None) every installed distribution's top-level modules unless
the distribution is on the GPU machine's published list (``packages.txt``) or among the wheels
carried there (``carried_wheels.txt``); the project's own package stays. A script that imports
fine here imports fine there (versions aside)::

    PYTHONPATH=benchmarks/gpu_machine python benchmarks/gpu_paper_step.py --check-imports
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = "hle-reasoning"
# Distributions allowed here although not on the list, because a newer version of a listed one
# needs them in place of a listed one: huggingface-hub 2.x (here) talks HTTP through httpx2, the
# GPU machine's huggingface-hub 1.33 through httpx (listed); transformers 5.24 takes either.
# httpx2's own dependencies (httpcore2, truststore, ...) come with it.
VERSION_STAND_INS = {"httpx2": "httpx"}


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def listed(path: Path) -> set[str]:
    """The distribution names of a list file: one a line, ``#`` comments, optional ``==`` pins."""
    names = set()
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            names.add(normalized(re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0]))
    return names


def allowed() -> set[str]:
    names = listed(HERE / "packages.txt") | listed(HERE / "carried_wheels.txt") | {PROJECT}
    return names | closure(new for new, old in VERSION_STAND_INS.items() if old in names)


def closure(names) -> set[str]:
    """The installed distributions ``names`` and everything they require (extras aside)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [normalized(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = requires(name) or []
        except PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(normalized(requirement.name))
    return seen


def hide_the_rest() -> list[str]:
    """Hide the top-level modules of every installed distribution that is not allowed."""
    keep = allowed()
    hidden = []
    for module, distributions in packages_distributions().items():
        if any(normalized(d) in keep for d in distributions) or module in sys.modules:
            continue
        sys.modules[module] = None  # type: ignore[assignment]
        hidden.append(module)
    return sorted(hidden)


if __name__ == "sitecustomize":  # run by Python at start-up, not when read as a module elsewhere
    HIDDEN = hide_the_rest()
