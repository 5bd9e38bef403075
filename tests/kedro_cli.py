"""Run the real ``kedro`` command line in a project copy, as a user would."""

from __future__ import annotations

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
