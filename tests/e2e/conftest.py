"""The fresh-machine check: one whole default `kedro run` in a copy of the project, shared by the
end-to-end tests (reports, MLflow runs and UI, notebook)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_project_copy
from tests.kedro_cli import kedro_run


@dataclass
class Study:
    path: Path
    seconds: float
    output: str


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    project = make_project_copy(tmp_path_factory.mktemp("study") / "project")
    started = time.monotonic()
    result = kedro_run(project, timeout=1200)
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    (project / "kedro_run.log").write_text(output)
    assert result.returncode == 0, output[-5000:]
    print(f"\nwhole default `kedro run`: {seconds:.0f} s ({project})")
    return Study(project, seconds, output)
