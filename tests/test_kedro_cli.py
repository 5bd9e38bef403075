"""``kedro_run_in_process``, the tests' way to run ``kedro run`` without a new interpreter: it
returns what the user would see and leaves this process as it found it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.kedro_cli import kedro_run_in_process


def _state() -> tuple:
    """What the helper must leave as it was. Importing Kedro's project module applies the
    project's conf/logging.yml (Kedro does that at import), so it is imported first."""
    import kedro.framework.cli.cli  # noqa: F401
    import mlflow

    root = logging.getLogger()
    project = logging.getLogger("hle_reasoning")
    return (
        Path.cwd(),
        dict(os.environ),
        list(root.handlers),
        root.level,
        list(project.handlers),
        project.propagate,
        mlflow.get_tracking_uri(),
    )


def test_a_refused_run_prints_clicks_error_and_leaves_the_process_as_it_was(project_copy):
    before = _state()
    result = kedro_run_in_process(project_copy, "--pipelines", "trainig")
    assert result.returncode == 1
    assert "Error: unknown pipeline 'trainig': choose from __default__" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert _state() == before


def test_an_exception_kedro_lets_through_is_a_traceback_and_exit_status_1(
    project_copy, monkeypatch
):
    from hle_reasoning import cli

    def broken(kwargs):
        raise RuntimeError("a bug in the command line")

    monkeypatch.setattr(cli, "_with_upstream", broken)
    before = _state()
    result = kedro_run_in_process(project_copy, "--pipelines", "data_processing")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: a bug in the command line" in result.stderr
    assert _state() == before


def test_a_warning_of_the_run_is_on_the_console_as_a_process_shows_it(project_copy, monkeypatch):
    """Under pytest a warning would go to pytest's summary: a process prints it (through the
    ``py.warnings`` logger), and a one-screen check must count it."""
    import warnings

    import click

    import hle_reasoning.settings  # noqa: F401  (its captureWarnings done, as in a long session)
    from hle_reasoning import cli

    def warns(kwargs):
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
        raise click.ClickException("refused")

    monkeypatch.setattr(cli, "_with_upstream", warns)
    with warnings.catch_warnings(record=True) as pytest_would_see:
        warnings.simplefilter("always")
        result = kedro_run_in_process(project_copy, "--pipelines", "data_processing")
    assert result.returncode == 1 and "Error: refused" in result.stderr
    assert "py.warnings: " in result.stdout and "UserWarning: a library's warning" in result.stdout
    assert not [w for w in pytest_would_see if "a library's warning" in str(w.message)]


@pytest.mark.slow
def test_the_console_and_mlflow_db_are_the_project_copys_own(project_copy, tmp_path):
    """Two copies one after the other: each run's console lines are captured and its MLflow run
    is in its own mlflow.db (MLflow caches its store by the relative URI's string)."""
    import sqlite3

    from tests.conftest import make_project_copy

    other = make_project_copy(tmp_path / "other")
    for project in (project_copy, other):
        result = kedro_run_in_process(project, "--pipelines", "data_processing")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "Loaded 192 HLE questions from data/01_raw/hle_sample.jsonl" in result.stdout
        assert "hle-reasoning: data_processing finished" in result.stdout
        with sqlite3.connect(project / "mlflow.db") as db:
            assert db.execute("select name, status from runs").fetchall() == [
                ("data_processing", "FINISHED")
            ]
