"""A run's completeness: every question answered, every answer judged, or the run is refused.

:func:`completeness` counts a predictions table's questions, answers and verdicts per model;
``hooks.StudySummaryHook`` collects the counts as the nodes finish and, after the closing
summary, calls :func:`refuse_incomplete`: a run that leaves questions unanswered or unjudged (a
server down, a failed request) has its MLflow run set FAILED with the counts as the tags
``hle_reasoning.unanswered`` and ``hle_reasoning.unjudged``, and :class:`IncompleteRunError`
ends the command with the counts and the command that finishes it (exit status 1).
"""

from __future__ import annotations

import logging
from typing import Any

from hle_reasoning import tracking

logger = logging.getLogger(__name__)

UNANSWERED_TAG = "hle_reasoning.unanswered"
UNJUDGED_TAG = "hle_reasoning.unjudged"


class IncompleteRunError(RuntimeError):
    """The pipeline ran to its end, but questions are left unanswered or unjudged."""


def completeness(name: str, predictions: Any) -> dict[str, tuple[int, int, int]]:
    """``{model: (questions, answered, judged)}`` of a predictions table (``variant`` column:
    one entry per variant; ``{file: table}``: each table's), or nothing for another output."""
    import pandas as pd

    if isinstance(predictions, dict):
        found: dict[str, tuple[int, int, int]] = {}
        for part, table in predictions.items():
            named = table
            if isinstance(table, pd.DataFrame) and "variant" not in table.columns:
                named = table.assign(variant=part)
            found.update(completeness(name, named))
        return found
    if not isinstance(predictions, pd.DataFrame) or not name.endswith("predictions"):
        return {}
    if not {"id", "response", "judged"} <= set(predictions.columns):
        return {}
    prefix = name.removesuffix("predictions").rstrip("._")
    groups = (
        list(predictions.groupby("variant", sort=True))
        if "variant" in predictions.columns
        else [(prefix or name, predictions)]
    )
    return {
        str(model): (
            len(group),
            int(group["response"].notna().sum()),
            int(group["judged"].fillna(False).astype(bool).sum()),
        )
        for model, group in groups
    }


def refuse_incomplete(
    counts: dict[str, tuple[int, int, int]], mlflow_run: str | None, pipelines: list[str]
) -> None:
    """Raise :class:`IncompleteRunError` (the MLflow run ``mlflow_run`` FAILED, tagged with the
    counts) when a question of ``counts`` (:func:`completeness`'s, per model) is left
    unanswered or unjudged; ``pipelines`` are the run's, for the command that finishes it."""
    missing = {
        model: (n, n - answered, answered - judged)
        for model, (n, answered, judged) in sorted(counts.items())
        if answered < n or judged < answered
    }
    if not missing:
        return
    unanswered = sum(m[1] for m in missing.values())
    unjudged = sum(m[2] for m in missing.values())
    recorded = _record_failed(mlflow_run, unanswered, unjudged)
    rerun = "kedro run" + (f" --pipelines {','.join(pipelines)}" if pipelines else "")
    raise IncompleteRunError(
        f"the run is incomplete: {unanswered} question(s) unanswered, {unjudged} answer(s) "
        "unjudged ("
        + "; ".join(
            f"{model}: {n - u} of {n} answered, {n - u - j} judged"
            for model, (n, u, j) in missing.items()
        )
        + f"). {recorded}To finish it, run `{rerun}` again (with the same --params) once "
        "the cause logged above is fixed: stored answers and verdicts are kept and only "
        "the missing ones are asked."
    )


def _record_failed(mlflow_run: str | None, unanswered: int, unjudged: int) -> str:
    if mlflow_run is None:
        return ""
    try:
        import mlflow

        client = mlflow.MlflowClient()
        client.set_tag(mlflow_run, UNANSWERED_TAG, str(unanswered))
        client.set_tag(mlflow_run, UNJUDGED_TAG, str(unjudged))
        client.set_tag(
            mlflow_run,
            tracking.ENDED_BY_TAG,
            f"incomplete: {unanswered} unanswered, {unjudged} unjudged",
        )
        client.set_terminated(mlflow_run, status="FAILED")
    except Exception as error:  # the run's own problem is the one to report
        logger.warning("could not record the MLflow run as FAILED: %s", error)
        return ""
    return (
        f"MLflow run {mlflow_run} is recorded FAILED ({UNANSWERED_TAG}={unanswered}, "
        f"{UNJUDGED_TAG}={unjudged}). "
    )
