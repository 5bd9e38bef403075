"""The rules judge on the bundled sample's answers, without ../shared: every answer matches
itself written differently, and none matches another question's different answer."""

from __future__ import annotations

from hle_reasoning.hle.judging import judge_response, normalize_text
from tests.hle.test_judging import _reformat, respond


def _rows(sample_questions) -> list[dict]:
    return sample_questions[["id", "answer", "answer_type"]].to_dict("records")


def test_sample_answers_match_themselves_reformatted(sample_questions):
    rows = _rows(sample_questions)
    failures = []
    for i, row in enumerate(rows):
        answer = str(row["answer"])
        reformatted = _reformat(answer, row["answer_type"], i)
        verdict = judge_response(respond(reformatted), answer, row["answer_type"])
        if not verdict.correct:
            failures.append((row["id"], answer, reformatted, verdict.reason))
    assert len(rows) == 192
    assert failures == []


def test_sample_answers_do_not_match_other_questions_answers(sample_questions):
    rows = _rows(sample_questions)
    wrong = []
    for i, row in enumerate(rows):
        others = [
            o
            for o in rows[i + 1 :] + rows[:i]
            if o["answer_type"] == row["answer_type"]
            and normalize_text(str(o["answer"])) != normalize_text(str(row["answer"]))
        ]
        other = others[6]
        verdict = judge_response(respond(str(other["answer"])), row["answer"], row["answer_type"])
        if verdict.correct:
            wrong.append((row["answer"], other["answer"], verdict.reason))
    assert wrong == []
