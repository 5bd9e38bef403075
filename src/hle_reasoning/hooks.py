"""Project hooks: tag every MLflow run with the git commit the code ran from."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


def git_state(path: Path) -> dict[str, str]:
    """Commit and dirtiness of the repository holding ``path`` ({} outside a repository)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {
        "mlflow.source.git.commit": commit,
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
    }


class GitCommitHook:
    """Sets ``mlflow.source.git.commit`` (shown by the MLflow UI), ``git_commit`` and ``git_dirty``.

    kedro-mlflow starts the run in its own ``before_pipeline_run``; tagging at the first node
    guarantees the run exists whatever order the hooks run in.
    """

    def __init__(self) -> None:
        self._project_path: Path | None = None
        self._tagged_run: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_node_run(
        self, node: Any, catalog: Any, inputs: dict, is_async: bool, run_id: str
    ) -> None:
        run = mlflow.active_run()
        if run is None or run.info.run_id == self._tagged_run or self._project_path is None:
            return
        tags = git_state(self._project_path)
        if tags:
            mlflow.set_tags(tags)
        self._tagged_run = run.info.run_id
