"""The rules judge on the bundled sample's answers, without the real HLE data: every answer matches
itself written differently, and none matches another question's different answer."""

from __future__ import annotations

from tests.hle.judge.test_rules import _cross_matches, _self_mismatches


def _rows(sample_questions) -> list[dict]:
    return sample_questions[["id", "answer", "answer_type"]].to_dict("records")


def test_sample_answers_match_themselves_reformatted(sample_questions):
    rows = _rows(sample_questions)
    assert len(rows) == 192
    assert _self_mismatches(rows) == []


def test_sample_answers_do_not_match_other_questions_answers(sample_questions):
    assert _cross_matches(_rows(sample_questions)) == []
