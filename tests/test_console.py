"""What a `kedro run` prints: the project's progress, every warning and the summary, one line
each; Kedro's and the libraries' INFO lines go to the log file only (conf/logging.yml)."""

import re

import pytest

from tests.kedro_cli import kedro_run

pytestmark = pytest.mark.slow


def test_a_partial_run_prints_the_projects_lines_only(project_copy):
    result = kedro_run(project_copy, "--pipelines", "data_processing")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # kedro-viz's note on partial runs, Kedro's per-dataset lines and MLflow's database set-up
    # say nothing a user can act on.
    for noise in (
        "Workflow tracking is disabled",
        "Loading data from",
        "Saving data to",
        "Running node",
        "Creating initial MLflow database tables",
    ):
        assert noise not in output, noise
    # The project's own progress, one line each with its time, never wrapped.
    assert re.search(
        r"^\d\d:\d\d:\d\d INFO    Split 192 questions into 30 train / 162 test over 8 categories$",
        result.stdout,
        re.M,
    ), result.stdout
    assert output.count("\n") <= 30, output
    # The full log is in the file, Kedro's lines included.
    log = (project_copy / "hle_reasoning.log").read_text()
    assert "Loading data from" in log and "Split 192 questions" in log
    assert "Workflow tracking is disabled" not in log
