"""A run's completeness: every question answered, every answer judged, or the run is refused.

:func:`completeness` counts a predictions table's questions, answers and verdicts per model;
``hooks.StudySummaryHook`` collects the counts as the nodes finish and, after the closing
summary, calls :func:`refuse_incomplete`: a run that leaves questions unanswered or unjudged (a
server down, a failed request) has its MLflow run set FAILED with the counts as the tags
``hle_reasoning.unanswered`` and ``hle_reasoning.unjudged``, and :class:`IncompleteRunError`
ends the command with the counts and the command that finishes it (exit status 1).

A run that stops on an error (an unreachable server, a refused key, an engine that exits) is
recorded FAILED by ``launch.recorded_outcome`` with ``hle_reasoning.ended_by``; the hook then
tags the same counts where they can be known (:func:`counts_on_disk`): from the answers and
verdicts the run wanted (the nodes' :class:`~hle_reasoning.datasets.stores.Wanted` rows, each
with its key) against what the stores on disk hold under those keys. ``unjudged`` is left out
where the judging node never ran (the stop came while answering: which verdicts would be
reused is not known), and both where answering never started (e.g. the plan failed).
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


def wanted_rows(name: str, value: Any) -> dict[tuple[str, str], Any]:
    """``{(dataset, variant): rows}`` of a node's ``{variant: Wanted}`` output (what it asks the
    ``responses`` or ``verdicts`` store to hold, each row an id and its key), else nothing."""
    from collections.abc import Mapping

    from hle_reasoning.datasets.stores import Wanted

    if not isinstance(value, Mapping) or not value:
        return {}
    if not all(isinstance(w, Wanted) for w in value.values()):
        return {}
    return {(name, str(variant)): wanted.rows for variant, wanted in value.items()}


def counts_on_disk(
    wanted: dict[tuple[str, str], Any], catalog: Any
) -> dict[str, tuple[int, int, int | None]]:
    """``{model: (questions, answered, judged)}`` of a run that stopped, from the stores on disk:
    ``wanted`` (:func:`wanted_rows` of the nodes that ran) against the ``responses`` and
    ``verdicts`` datasets of ``catalog``; ``judged`` is ``None`` where the judging node did not
    run. Models the run wanted no answers of are left out."""
    responses = {v: rows for (name, v), rows in wanted.items() if name == "responses"}
    verdicts = {v: rows for (name, v), rows in wanted.items() if name == "verdicts"}
    answers, judgements = _store(catalog, "responses"), _store(catalog, "verdicts")
    if answers is None:
        return {}
    found: dict[str, tuple[int, int, int | None]] = {}
    for variant, rows in sorted(responses.items()):
        answered = answers.held(variant, rows, "response")
        judged = None
        if variant in verdicts and judgements is not None:
            judged = judgements.held(variant, verdicts[variant], "correct")
        found[variant] = (len(rows), answered, judged)
    return found


def _store(catalog: Any, name: str) -> Any:
    from hle_reasoning.datasets.stores import VariantStore

    try:
        dataset = catalog.get(name) if catalog is not None else None
    except Exception:  # noqa: BLE001 - no such dataset: nothing to count
        return None
    return dataset if isinstance(dataset, VariantStore) else None


def tag_stopped_run(
    counts: dict[str, tuple[int, int, int | None]], mlflow_run: str | None
) -> dict[str, str]:
    """Tag the stopped run ``mlflow_run`` with the counts that are known (``unjudged`` only where
    every model's judging ran); the tags set."""
    if mlflow_run is None or not counts:
        return {}
    tags = {UNANSWERED_TAG: str(sum(n - answered for n, answered, _ in counts.values()))}
    if all(judged is not None for _, _, judged in counts.values()):
        tags[UNJUDGED_TAG] = str(sum(a - (j or 0) for _, a, j in counts.values()))
    try:
        import mlflow

        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_tag(mlflow_run, key, value)
    except Exception as error:  # the run's own error is the one to report
        logger.warning("could not tag the stopped MLflow run with its counts: %s", error)
        return {}
    return tags


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
