"""Judging a table of responses (rules or LLM), reusing stored verdicts, and the predictions table.

A verdict record is keyed by ``judge_key``: a hash of everything the verdict depends on (the
judge and its settings, the question, the response, the reference answer). A stored verdict with
the same key is reused, so a rerun judges only new or changed responses and an LLM judge is not
paid twice for the same judgement.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hle_reasoning.hle.data.records import content_key, resume
from hle_reasoning.hle.judge import answers, forms, integers, symbolic
from hle_reasoning.hle.judge import rules as rules_module
from hle_reasoning.hle.judge.llm import LLMJudge
from hle_reasoning.hle.judge.rules import Verdict, judge_response

logger = logging.getLogger(__name__)

VERDICT_COLUMNS = (
    "id",
    "judge_key",
    "judge",
    "correct",
    "extracted_answer",
    "confidence",
    "reason",
    "method",
)
JUDGES = ("rules", "llm")


@dataclass(frozen=True)
class RulesOptions:
    rel_tol: float = rules_module.DEFAULT_REL_TOL
    math_verify: bool = True


# The modules the rules judge is made of (every judge module that rules.py reaches).
RULES_MODULES = (rules_module, answers, forms, integers, symbolic)


def _rules_version() -> str:
    # The rules are code: a stored verdict is stale once any of their modules changes.
    source = "".join(inspect.getsource(m) for m in RULES_MODULES)
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def rules_key(options: RulesOptions, response: str, answer: str, answer_type: str) -> str:
    parts = [
        "rules",
        _rules_version(),
        options.rel_tol,
        options.math_verify,
        response,
        answer,
        answer_type,
    ]
    return content_key(parts, 24)


def _record(question_id: str, key: str, judge: str, verdict: Verdict) -> dict[str, Any]:
    return {"id": question_id, "judge_key": key, "judge": judge, **verdict.to_dict()}


def judge_table(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    previous: pd.DataFrame,
    *,
    judge: str = "rules",
    rules: RulesOptions | None = None,
    llm: LLMJudge | None = None,
    workers: int = 8,
    chunk_size: int = 8,
    progress: bool = True,
    description: str = "judging",
) -> Iterator[pd.DataFrame]:
    """Verdicts for every response to ``questions``, in chunks, stored ones first.

    The first chunk holds the reusable stored verdicts (``records.resume``: a store keeps them
    and drops the rest); later chunks hold new verdicts as they arrive (``judge_new``).
    """
    keyed = judged_responses(questions, responses, judge=judge, rules=rules, llm=llm)
    return resume(
        previous,
        keyed,
        key_column="judge_key",
        columns=VERDICT_COLUMNS,
        make=lambda todo, kept: judge_new(
            todo,
            judge=judge,
            rules=rules,
            llm=llm,
            workers=workers,
            chunk_size=chunk_size,
            progress=progress,
            description=description,
            reused=len(kept),
        ),
    )


def judged_responses(
    questions: pd.DataFrame,
    responses: pd.DataFrame,
    *,
    judge: str = "rules",
    rules: RulesOptions | None = None,
    llm: LLMJudge | None = None,
) -> pd.DataFrame:
    """A row per response to ``questions`` with what judging it reads (question, answer,
    answer type, response) and its ``judge_key``: the verdict a store may hold for it."""
    if judge not in JUDGES:
        raise ValueError(f"evaluation.judge.kind must be one of {JUDGES} (got {judge!r})")
    if judge == "llm" and llm is None:
        raise ValueError("the llm judge needs an LLMJudge")
    rules = rules or RulesOptions()
    merged = questions[["id", "question", "answer", "answer_type"]].merge(
        responses[["id", "response"]], on="id", how="inner"
    )
    merged["response"] = merged["response"].fillna("")
    if judge == "rules":
        keys = [
            rules_key(rules, r.response, str(r.answer), r.answer_type) for r in merged.itertuples()
        ]
    else:
        keys = [llm.key(r.question, r.response, str(r.answer)) for r in merged.itertuples()]
    merged["judge_key"] = keys
    return merged


def judge_new(
    todo: pd.DataFrame,
    *,
    judge: str = "rules",
    rules: RulesOptions | None = None,
    llm: LLMJudge | None = None,
    workers: int = 8,
    chunk_size: int = 8,
    progress: bool = True,
    description: str = "judging",
    reused: int = 0,
) -> Iterator[pd.DataFrame]:
    """Verdicts of the rows of ``todo`` (``judged_responses``' rows), in chunks as they arrive.

    LLM judgements run on ``workers`` threads after a first one alone; a failed one is left
    out (the question stays unjudged, out of the metrics, and a rerun judges it); a
    :class:`~hle_reasoning.hle.judge.llm.JudgeConfigError` stops the judging, keeping the
    verdicts received so far.
    """
    rules = rules or RulesOptions()
    from tqdm.auto import tqdm

    logger.info(
        "%s: %d stored verdict(s) reused, %d response(s) to judge (%s judge)",
        description,
        reused,
        len(todo),
        judge,
    )
    if todo.empty:
        return

    bar = tqdm(total=len(todo), desc=description, unit="response", disable=not progress)
    try:
        if judge == "rules":
            chunk: list[dict[str, Any]] = []
            for row in todo.itertuples():
                verdict = judge_response(
                    row.response,
                    str(row.answer),
                    row.answer_type,
                    rel_tol=rules.rel_tol,
                    use_math_verify=rules.math_verify,
                )
                chunk.append(_record(row.id, row.judge_key, "rules", verdict))
                bar.update(1)
                if len(chunk) >= chunk_size:
                    yield pd.DataFrame(chunk, columns=list(VERDICT_COLUMNS))
                    chunk = []
            if chunk:
                yield pd.DataFrame(chunk, columns=list(VERDICT_COLUMNS))
            return

        failed, chunk = 0, []
        rows = list(todo.itertuples())
        # The first judgement alone: a refused key or model stops the run before any other request.
        first_verdict = llm.judge(rows[0].question, rows[0].response, str(rows[0].answer))
        bar.update(1)
        results = [(rows[0], first_verdict)]
        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        try:
            futures = {
                pool.submit(llm.judge, row.question, row.response, str(row.answer)): row
                for row in rows[1:]
            }
            for row, verdict in results:
                if verdict is None:
                    failed += 1
                else:
                    chunk.append(_record(row.id, row.judge_key, f"llm:{llm.model}", verdict))
            for future in as_completed(futures):
                row = futures[future]
                verdict = future.result()  # a JudgeConfigError stops here, stored verdicts kept
                bar.update(1)
                if verdict is None:
                    failed += 1
                    continue
                chunk.append(_record(row.id, row.judge_key, f"llm:{llm.model}", verdict))
                if len(chunk) >= chunk_size:
                    yield pd.DataFrame(chunk, columns=list(VERDICT_COLUMNS))
                    chunk = []
        except Exception:
            if chunk:  # what was judged before the stop is paid for: keep it
                yield pd.DataFrame(chunk, columns=list(VERDICT_COLUMNS))
                chunk = []
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if chunk:
            yield pd.DataFrame(chunk, columns=list(VERDICT_COLUMNS))
        if failed:
            logger.warning(
                "%s: %d judgement(s) failed and are left unjudged (out of the metrics); "
                "run again to judge only them",
                description,
                failed,
            )
    finally:
        bar.close()


PREDICTION_COLUMNS = (
    "id",
    "category",
    "answer_type",
    "has_image",
    "answer",
    "response",
    "extracted_answer",
    "confidence",
    "correct",
    "judged",
    "method",
    "reason",
    "response_tokens",
    "finished",
)


def predictions_table(
    questions: pd.DataFrame, responses: pd.DataFrame, verdicts: pd.DataFrame
) -> pd.DataFrame:
    """One row per question: its response and verdict (``judged`` False when it has none).

    Only the latest response and verdict of each question count (stores may hold stale ones;
    responses are matched to verdicts by the response's current judge key when present).
    """
    base = questions[["id", "category", "answer_type", "image", "answer"]].copy()
    base["has_image"] = base.pop("image").map(lambda v: isinstance(v, str) and v.strip() != "")
    latest_responses = responses.drop_duplicates("id", keep="last")
    table = base.merge(
        latest_responses.reindex(columns=["id", "response", "response_tokens", "finished"]),
        on="id",
        how="left",
    )
    latest_verdicts = verdicts.drop_duplicates("id", keep="last")
    table = table.merge(
        latest_verdicts.reindex(
            columns=["id", "extracted_answer", "confidence", "correct", "method", "reason"]
        ),
        on="id",
        how="left",
    )
    table["judged"] = table["correct"].notna()
    table["correct"] = table["correct"].fillna(False).astype(bool)
    return table.reindex(columns=list(PREDICTION_COLUMNS))


def official_judged_format(predictions: pd.DataFrame, model: str) -> dict[str, Any]:
    """The predictions in the official judged-file format (``judged_hle_<model>.json``).

    ``{id: {"model", "response", "judge_response": {"correct_answer", "model_answer",
    "reasoning", "correct": "yes"/"no", "confidence"}}}``; unjudged questions have no
    ``judge_response``, as in the official file.
    """
    out: dict[str, Any] = {}
    for row in predictions.itertuples():
        entry: dict[str, Any] = {"model": model, "response": row.response}
        if row.judged:
            entry["judge_response"] = {
                "correct_answer": row.answer,
                "model_answer": row.extracted_answer if row.extracted_answer else "None",
                "reasoning": row.reason,
                "correct": "yes" if row.correct else "no",
                "confidence": int(row.confidence),
            }
        out[str(row.id)] = entry
    return out
