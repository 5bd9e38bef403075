"""Run the real ``kedro`` command line in a project copy, as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

KEDRO = Path(sys.executable).with_name("kedro")
ENV = {"KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def kedro_run(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``kedro run ARGS`` in ``project``; returns the finished process (output captured)."""
    return subprocess.run(
        [str(KEDRO), "run", *args],
        cwd=project,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kill_kedro_run_when(
    project: Path, args: list[str], ready: Callable[[], bool], what: str, timeout: float = 300
) -> int:
    """Start ``kedro run ARGS`` in ``project``, SIGKILL it as soon as ``ready()`` holds (``what``
    names it in the failure messages), and return its exit status."""
    process = subprocess.Popen(
        [str(KEDRO), "run", *args],
        cwd=project,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return process.returncode


def stored_responses(project: Path, variant: str) -> list[dict]:
    """The complete lines of a variant's response store (a line cut by a kill is skipped)."""
    path = project / "data" / "07_model_output" / variant / "responses.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def kedro_run_in_process(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro run ARGS`` in ``project`` through Kedro's own command line (``KedroCLI``, the
    project's ``cli.py`` and hooks, the project's ``conf/logging.yml``), in this process: what the
    user would see, without the seconds a new interpreter takes to import Kedro, MLflow and torch.

    For runs whose process is not what is tested (a run refused or failed with a message); a test
    of signals, exit handlers or a second process keeps :func:`kedro_run`. Returns the same
    shape: the exit status, and the console's lines (both log handlers and click's output) as
    stdout and stderr; an exception Kedro's command line lets through is printed as the
    interpreter would (``Traceback ...``), exit status 1; Python warnings go to the console under
    a process's filters (:func:`_process_warnings`). The working directory, environment, logging,
    warnings and MLflow state of this process are restored afterwards. What a fresh interpreter
    alone prints (import-time warnings) is not here: ``tests/test_console.py`` and the e2e study
    check a real process's console.
    """
    import io
    import logging
    import logging.config
    import traceback

    import mlflow
    import yaml
    from kedro.framework.cli.cli import KedroCLI
    from kedro.framework.project import LOGGING
    from mlflow.tracking import fluent

    stdout, stderr = io.StringIO(), io.StringIO()
    environ = dict(os.environ)
    loggers = {
        name: (logger.handlers[:], logger.level, logger.propagate)
        for name in ("", "hle_reasoning", "kedro")
        for logger in [logging.getLogger(name or None)]
    }
    logging_config = dict(LOGGING.data)
    tracking_uri = mlflow.get_tracking_uri()
    returncode = 0
    _forget_mlflow_stores()
    try:
        os.environ.update(ENV)
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        with (
            contextlib.ExitStack() as stack,
            contextlib.chdir(project),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
        ):
            # As `kedro` does at start-up, from the project's folder: its handlers write to the
            # console (sys.stdout, here the captured one) and its log file.
            LOGGING.configure(yaml.safe_load((project / "conf" / "logging.yml").read_text()))
            _process_warnings(stack)
            try:
                KedroCLI(project_path=project).main(["run", *args], prog_name="kedro")
            except SystemExit as done:
                code = done.code
                returncode = code if isinstance(code, int) else (0 if code is None else 1)
            except BaseException:  # what the interpreter would print, and its exit status
                sys.stderr.write(traceback.format_exc())
                returncode = 1
    finally:
        for name, (handlers, level, propagate) in loggers.items():
            logger = logging.getLogger(name or None)
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        LOGGING.data = logging_config
        while mlflow.active_run() is not None:
            mlflow.end_run()
        fluent._active_experiment_id = None
        _forget_mlflow_stores()
        mlflow.set_tracking_uri(tracking_uri)
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(
        ["kedro", "run", *args], returncode, stdout.getvalue(), stderr.getvalue()
    )


def _forget_mlflow_stores() -> None:
    """Drop the tracking stores and database engines MLflow keeps for this process's life.

    MLflow caches them by URI string, and the project's URI is relative (``sqlite:///mlflow.db``):
    kept, a project copy's in-process run would read and write the ``mlflow.db`` of the copy
    that came before it (a refused run's "no MLflow run" would then hold trivially, a broken
    database would go unseen). A new ``kedro`` process starts without them.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    _tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    with SqlAlchemyStore._engine_map_lock:
        engines = list(SqlAlchemyStore._engine_map.values())
        SqlAlchemyStore._engine_map.clear()
    for engine in engines:
        engine.dispose()


def _process_warnings(stack: contextlib.ExitStack) -> None:
    """Python warnings as a ``kedro`` process shows them, until ``stack`` closes: CPython's default
    filters and the project's own (``settings.py``'s, installed when ``kedro`` imports it), each
    shown through the ``py.warnings`` logger (``quiet.install``'s ``logging.captureWarnings``),
    that is on the console. Under pytest they would be recorded for its summary instead, under
    pytest's filters."""
    import logging
    import warnings

    stack.enter_context(warnings.catch_warnings())
    warnings.resetwarnings()
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings.filterwarnings("ignore", message=".*register_new_resolver.*", category=UserWarning)

    def to_logging(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        text = warnings.formatwarning(message, category, filename, lineno, line)
        logging.getLogger("py.warnings").warning("%s", text)

    warnings.showwarning = to_logging
