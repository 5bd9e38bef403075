"""GRPO checkpoints: which configuration wrote them, the newest complete one, and resuming.

A run's checkpoints are tagged with a hash of everything they depend on (``run_fingerprint``);
``resolve_resume`` resumes the newest complete checkpoint of the same configuration and clears
those of any other, so a run never resumes someone else's state.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from hle_reasoning.config.training import TrainingConfigError
from hle_reasoning.hle.data.records import content_key

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "run_fingerprint.json"
TRAINER_STATE = "trainer_state.json"


def run_fingerprint(*parts: Any) -> str:
    """A short hash of everything a run's checkpoints depend on (config, data, base model)."""
    return content_key(parts, 16)


def checkpoint_problems(path: Path) -> list[str]:
    """Why the checkpoint folder ``path`` cannot be resumed: each file that does not load whole
    (safetensors' header and data, torch's zip archives, JSON), one line each."""
    import zipfile

    from safetensors import safe_open

    problems = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        try:
            if file.suffix == ".safetensors":
                with safe_open(str(file), "pt") as tensors:
                    list(tensors.keys())
            elif file.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(file) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    raise ValueError(f"damaged member {bad}")
            elif file.suffix == ".json":
                json.loads(file.read_text())
        except Exception as error:  # whatever a cut file raises, it cannot be resumed
            problems.append(
                f"{file}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            )
    return problems


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Every ``checkpoint-N`` with its ``trainer_state.json`` (written last: a kill while saving
    leaves a folder without it), newest first."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in directory.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / TRAINER_STATE).is_file()
    ]
    return sorted(found, reverse=True)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint whose every file loads; a newer one that does not (a file cut by a
    kill or a full disk) is skipped with a warning naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for _, path in _checkpoints(directory):
        problems = checkpoint_problems(path)
        if not problems:
            return path
        logger.warning(
            "Checkpoint %s cannot be resumed (%s); trying an older one", path, "; ".join(problems)
        )
    return None


def _marked(marker: Path, directory: Path) -> Any:
    """The fingerprint ``marker`` records; a damaged marker stops the run rather than removing
    checkpoints that may be resumable."""
    try:
        content = json.loads(marker.read_bytes().decode("utf-8"))
    except ValueError as error:
        content = error
    if isinstance(content, dict):
        return content.get("fingerprint")
    raise TrainingConfigError(
        [
            f"{marker} is damaged ({str(content).splitlines()[0][:120] if str(content) else ''}):"
            f" it says which configuration wrote the checkpoints in {directory}. To start "
            "afresh, run again with --params training.checkpoints.resume=false (it removes "
            f"{directory}); to keep them, restore the file."
        ]
    )


def resolve_resume(directory: str | Path, fingerprint: str, resume: Any) -> Path | None:
    """The checkpoint to resume from, or None to start afresh (clearing stale checkpoints).

    ``resume``: ``auto`` resumes the newest complete checkpoint written by the same configuration
    (same fingerprint) and otherwise starts afresh; ``true`` must resume; ``false`` starts afresh.
    """
    directory = Path(directory)
    marker = directory / FINGERPRINT_FILE
    same = resume is not False and marker.is_file() and _marked(marker, directory) == fingerprint
    last = latest_checkpoint(directory) if same else None
    if same and last is None and resume is not False and _checkpoints(directory):
        damaged = [p for _, path in _checkpoints(directory) for p in checkpoint_problems(path)]
        raise TrainingConfigError(
            [
                f"no checkpoint in {directory} can be resumed: "
                + "; ".join(damaged)
                + ". To start afresh, run again with --params training.checkpoints.resume=false "
                f"(it removes {directory}), or remove {directory} yourself."
            ]
        )
    if resume is True and last is None:
        raise TrainingConfigError(
            [
                f"training.checkpoints.resume is true but {directory} holds no complete checkpoint "
                "of this configuration; set resume: auto (resume when possible) or false (start "
                "afresh)."
            ]
        )
    if resume is not False and last is not None:
        logger.info("Resuming the interrupted training run from %s", last)
        return last
    if directory.exists() and any(directory.iterdir()):
        logger.warning(
            "Starting training afresh: removing %s (%s)",
            directory,
            "resume: false" if resume is False else "checkpoints of another configuration",
        )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    return None


def resumed_step(checkpoint: Path | None) -> int:
    """The optimizer step a checkpoint was saved at (0 for none)."""
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0
