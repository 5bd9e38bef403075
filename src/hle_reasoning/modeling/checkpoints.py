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


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete ``checkpoint-N`` (a kill while saving leaves an incomplete one)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    candidates = []
    for path in directory.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if not step.isdigit() or not (path / TRAINER_STATE).is_file():
            continue
        try:
            json.loads((path / TRAINER_STATE).read_text())
        except ValueError:
            continue
        candidates.append((int(step), path))
    return max(candidates)[1] if candidates else None


def resolve_resume(directory: str | Path, fingerprint: str, resume: Any) -> Path | None:
    """The checkpoint to resume from, or None to start afresh (clearing stale checkpoints).

    ``resume``: ``auto`` resumes the newest complete checkpoint written by the same configuration
    (same fingerprint) and otherwise starts afresh; ``true`` must resume; ``false`` starts afresh.
    """
    directory = Path(directory)
    marker = directory / FINGERPRINT_FILE
    same = marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == fingerprint
    last = latest_checkpoint(directory) if same else None
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
