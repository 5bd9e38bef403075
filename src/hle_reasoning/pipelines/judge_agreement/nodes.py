"""Node of the judge_agreement pipeline: a thin adapter to hle_reasoning.hle.judge.agreement."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from hle_reasoning.config import EvaluationConfig
from hle_reasoning.hle.judge import agreement

logger = logging.getLogger(__name__)


def measure_judge_agreement(
    judged: dict[str, Any], questions: pd.DataFrame, evaluation_config: EvaluationConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """The agreement summary (overall, per answer type, category and deciding rule), the
    disagreeing rows (false accepts first), and the overall figures for MLflow.

    It reads ``evaluation.judge.rules``, through the whole ``evaluation`` block as the
    evaluation's nodes do: Kedro builds a block once, and a field of it annotated by another
    node would have to be written into the block already built (Kedro refuses the run)."""
    rules = evaluation_config.judge.rules
    summary, differ = agreement.judge_agreement(
        judged,
        questions,
        rel_tol=rules.rel_tol,
        math_verify=rules.math_verify,
        source="--params judged",  # the file's path is the judged_responses dataset's
    )
    known = int(summary.iloc[0]["n"])
    skipped = (
        sum(1 for entry in judged.values() if isinstance(entry, dict) and "judge_response" in entry)
        - known
    )
    if skipped:
        logger.warning(
            "judge_agreement: %d judged response(s) have no question in %s and are left out",
            skipped,
            questions.attrs.get("source", "the questions"),
        )
    logger.info("judge_agreement: %s", agreement.summary_line(summary))
    overall = summary.iloc[0]
    metrics = {
        name: {"value": float(overall[name]), "step": 0}
        for name in ("n", "agreement", "false_accepts", "false_rejects")
    }
    return summary, differ, metrics
