"""The project's command lines: `hle-reasoning`, `python -m hle_reasoning`, and the error for a
pipeline name that does not exist, through each of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
COMMANDS = {
    "kedro run": [str(Path(sys.executable).with_name("kedro")), "run"],
    "hle-reasoning": [str(Path(sys.executable).with_name("hle-reasoning"))],
    "python -m hle_reasoning": [sys.executable, "-m", "hle_reasoning"],
}


def run(project: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMANDS[command], *args],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def written(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in (project / "data").rglob("*") if p.is_file())


def test_console_script_runs_a_pipeline(project_copy):
    result = run(project_copy, "hle-reasoning", "--pipelines", "data_processing")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "hle-reasoning: data_processing finished in" in output
    assert (project_copy / "data" / "05_model_input" / "focus_test.parquet").is_file()
    assert (project_copy / "data" / "08_reporting" / "split_sizes.csv").is_file()


@pytest.mark.parametrize("command", ["kedro run", "python -m hle_reasoning"])
def test_an_unknown_pipeline_is_named_with_the_known_ones(project_copy, command):
    before = written(project_copy)
    result = run(project_copy, command, "--pipelines", "training,evalution")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown pipeline 'evalution': choose from " in output
    assert "evaluation" in output.split("choose from ", 1)[1]
    assert "Traceback" not in output
    assert "Running node" not in output
    assert written(project_copy) == before  # nothing ran, nothing was written
