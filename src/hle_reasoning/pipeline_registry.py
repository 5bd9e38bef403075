"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Pipelines that are not part of the study (``kedro run`` without --pipelines leaves them out).
EXTRA = {"judge_agreement", "serving"}


def register_pipelines() -> dict[str, Pipeline]:
    """``data_processing``, ``training``, ``evaluation``: ``__default__`` runs them all;
    ``judge_agreement`` (the rules judge against an LLM judge's verdicts) and ``serving`` (the
    merged fine-tuned checkpoint) run only by name."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(p for name, p in pipelines.items() if name not in EXTRA)
    return pipelines
