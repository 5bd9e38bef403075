"""How far the offline rules judge is from an LLM judge, measured on the same responses.

Input: LLM-judged responses in the official judged-file format (the output of HLE's
``run_judge_results.py``: ``{id: {"response": ..., "judge_response": {"correct_answer",
"correct": "yes"/"no", "confidence", ...}}}``) and the questions (for the answer type and
category). For each judged response the rules judge (:func:`judge_response`) gives its own
verdict; the report counts, overall and per answer type, category and deciding rule:

* ``agreement``: the share of responses where both judges say the same (%);
* ``false_accepts``: the rules judge says correct, the LLM judge incorrect;
* ``false_rejects``: the rules judge says incorrect, the LLM judge correct.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from hle_reasoning.hle.judge.rules import DEFAULT_REL_TOL, judge_response

SUMMARY_COLUMNS = (
    "group",
    "value",
    "n",
    "agreement",
    "false_accepts",
    "false_rejects",
    "llm_correct",
    "rules_correct",
)
DISAGREEMENT_COLUMNS = (
    "id",
    "category",
    "answer_type",
    "answer",
    "extracted_answer",
    "llm_correct",
    "rules_correct",
    "disagreement",
    "rules_method",
    "rules_reason",
    "response",
)


class JudgedFileError(ValueError):
    """A judged file that is not in the official format."""


def _llm_correct(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"yes": True, "no": False, "true": True, "false": False}.get(text)


def judged_rows(judged: dict[str, Any], questions: pd.DataFrame, source: str = "") -> pd.DataFrame:
    """One row per LLM-judged response whose question is known: id, category, answer type,
    reference answer, response, the LLM's verdict. Entries without a ``judge_response`` (not
    judged) are left out; a malformed file is a :class:`JudgedFileError` naming the entry."""
    where = f" in {source}" if source else ""
    if not isinstance(judged, dict):
        raise JudgedFileError(
            f"the judged file{where} must be a JSON object {{id: {{response, judge_response}}}} "
            f"(HLE's run_judge_results.py output), not {type(judged).__name__}"
        )
    known = questions.set_index(questions["id"].astype(str))
    rows, problems = [], []
    for qid, entry in judged.items():
        if not isinstance(entry, dict) or "judge_response" not in entry:
            continue
        verdict = entry["judge_response"]
        correct = _llm_correct(verdict.get("correct")) if isinstance(verdict, dict) else None
        if correct is None or not isinstance(entry.get("response"), str):
            problems.append(f"{qid}: needs a 'response' string and judge_response.correct yes/no")
            continue
        if str(qid) not in known.index:
            continue
        question = known.loc[str(qid)]
        rows.append(
            {
                "id": str(qid),
                "category": question["category"],
                "answer_type": question["answer_type"],
                "answer": str(question["answer"]),
                "response": entry["response"],
                "llm_correct": correct,
            }
        )
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise JudgedFileError(f"malformed judged entries{where}:\n  {shown}{more}")
    return pd.DataFrame(
        rows, columns=["id", "category", "answer_type", "answer", "response", "llm_correct"]
    )


def with_rules_verdicts(
    rows: pd.DataFrame, *, rel_tol: float = DEFAULT_REL_TOL, math_verify: bool = True
) -> pd.DataFrame:
    """``rows`` (response, answer, answer_type) with the rules judge's verdict beside it:
    ``rules_correct``, ``rules_method``, ``rules_reason``, ``extracted_answer``."""
    verdicts = [
        judge_response(
            r.response if isinstance(r.response, str) else "",
            str(r.answer),
            r.answer_type,
            rel_tol=rel_tol,
            use_math_verify=math_verify,
        )
        for r in rows.itertuples()
    ]
    out = rows.copy()
    out["rules_correct"] = [v.correct for v in verdicts]
    out["rules_method"] = [v.method for v in verdicts]
    out["rules_reason"] = [v.reason for v in verdicts]
    out["extracted_answer"] = [v.extracted_answer for v in verdicts]
    return out


def _figures(frame: pd.DataFrame) -> dict[str, float]:
    n = len(frame)
    llm = frame["llm_correct"].astype(bool)
    rules = frame["rules_correct"].astype(bool)
    return {
        "n": n,
        "agreement": 100.0 * float((llm == rules).mean()) if n else math.nan,
        "false_accepts": int((rules & ~llm).sum()),
        "false_rejects": int((~rules & llm).sum()),
        "llm_correct": int(llm.sum()),
        "rules_correct": int(rules.sum()),
    }


def agreement_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Agreement figures overall (``all``) and per answer type, category and deciding rule."""
    rows = [{"group": "all", "value": "All", **_figures(frame)}]
    for group, column in (
        ("answer_type", "answer_type"),
        ("category", "category"),
        ("rule", "rules_method"),
    ):
        for value, part in frame.groupby(column, sort=True):
            rows.append({"group": group, "value": str(value), **_figures(part)})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def disagreements(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows where the two judges differ, false accepts first."""
    differ = frame[frame["llm_correct"].astype(bool) != frame["rules_correct"].astype(bool)].copy()
    differ["disagreement"] = differ["rules_correct"].map(
        {True: "false accept", False: "false reject"}
    )
    differ = differ.sort_values(["disagreement", "category", "id"], kind="stable")
    return differ.reindex(columns=list(DISAGREEMENT_COLUMNS)).reset_index(drop=True)


def judge_agreement(
    judged: dict[str, Any],
    questions: pd.DataFrame,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    math_verify: bool = True,
    source: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The agreement summary and the disagreeing rows of the rules judge against an LLM judge."""
    frame = with_rules_verdicts(
        judged_rows(judged, questions, source), rel_tol=rel_tol, math_verify=math_verify
    )
    return agreement_summary(frame), disagreements(frame)


def summary_line(summary: pd.DataFrame) -> str:
    """One sentence with the overall figures."""
    overall = summary.iloc[0]
    if not overall["n"]:
        return "no LLM-judged response to compare"
    return (
        f"the rules judge agrees with the LLM judge on {overall['agreement']:.1f}% of "
        f"{int(overall['n'])} responses ({int(overall['false_accepts'])} false accepts, "
        f"{int(overall['false_rejects'])} false rejects)"
    )
