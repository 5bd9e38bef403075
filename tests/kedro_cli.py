"""Run the real ``kedro`` command line in a project copy, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def kedro_run(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``kedro run ARGS`` in ``project``; returns the finished process (output captured)."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    kedro = Path(sys.executable).with_name("kedro")
    return subprocess.run(
        [str(kedro), "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
