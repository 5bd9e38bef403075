import json
import threading

import pytest

from hle_reasoning.hle.judging import (
    Verdict,
    extract_answer,
    extract_confidence,
    extract_option,
    judge_response,
    looks_mathematical,
    normalize_text,
)
from tests.conftest import anchor


def respond(answer: str, confidence: str = "Confidence: 80%") -> str:
    return f"Explanation: reasons.\nAnswer: {answer}\n{confidence}"


class TestExtraction:
    def test_last_answer_line_wins_and_stops_at_confidence(self):
        text = "Answer: 3\nExplanation: no wait.\nExact Answer: 4\nConfidence: 70%\nAnswer: 5"
        assert extract_answer(text) == "5"
        assert extract_answer("Answer: 3\nConfidence: 10%") == "3"

    def test_markdown_and_multiline_answers(self):
        assert extract_answer("**Answer:** $x^2$\n**Confidence:** 40%") == "$x^2$"
        assert extract_answer("Final Answer:\n$$\nx=1\n$$\nConfidence: 9%") == "$$\nx=1\n$$"

    def test_no_answer_line(self):
        assert extract_answer("The answer is 4.") is None
        assert extract_answer("Answer:   \nConfidence: 5%") is None
        assert extract_answer(None) is None  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Confidence: 85%", 85),
            ("confidence: 85.5 %", 86),
            ("**Confidence:** 0.3", 30),
            ("Confidence: 1", 1),
            ("Confidence: 150%", 100),
            ("Confidence: -5%", 0),
            ("Confidence: 20%\nConfidence: 60%", 60),
            ("no confidence given", 100),
            ("Confidence: high", 100),
        ],
    )
    def test_confidence(self, text, expected):
        assert extract_confidence(text) == expected

    def test_options(self):
        for text in (
            "B",
            "(B)",
            "B)",
            "B.",
            "**B**",
            "B. the second",
            "Option B",
            "(b) x",
            "b",
            "The answer is B.",
            "Correct option is (B)",
        ):
            assert extract_option(text) == "B", text
        assert extract_option("Because") is None
        assert extract_option("A cat") is None
        assert extract_option("The answer is a prime") is None


class TestJudge:
    def test_verdict_is_frozen_and_serialisable(self):
        verdict = judge_response(respond("B"), "B", "multipleChoice")
        assert isinstance(verdict, Verdict)
        with pytest.raises(AttributeError):
            verdict.correct = False  # type: ignore[misc]
        assert verdict.to_dict() == {
            "correct": True,
            "extracted_answer": "B",
            "confidence": 80,
            "reason": "option B matches",
            "method": "option",
        }

    def test_multiple_choice(self):
        assert not judge_response(respond("C"), "B", "multipleChoice").correct
        verdict = judge_response(respond("the second one"), "B", "multipleChoice")
        assert not verdict.correct and "no option letter" in verdict.reason

    @pytest.mark.parametrize(
        ("said", "answer", "correct", "method"),
        [
            ("22,168", "22168", True, "number"),
            ("22170", "22168", False, None),
            ("3.904", "3.90", True, "number"),  # equal at the answer's precision
            ("3.95", "3.90", False, None),
            ("36", "36 cm", True, "number"),
            ("36 mm", "36 cm", False, None),
            ("1.5e3", "1500", True, "number"),
            (r"\frac{53}{12}", "53/12", True, "math-verify"),
            ("$x^2+2x+1$", "(x+1)^2", True, "math-verify"),
            ("No.", "no", True, "text"),
            ("On", "No", False, "text"),  # words never go to math-verify
            ("Benin and  madagascar", "Benin and Madagascar", True, "text"),
            ("1", "1,2,3", False, None),
        ],
    )
    def test_exact_match(self, said, answer, correct, method):
        verdict = judge_response(respond(said), answer, "exactMatch")
        assert verdict.correct is correct, verdict
        if method:
            assert verdict.method == method
        assert verdict.reason

    def test_missing_answer_is_wrong_with_full_confidence(self):
        verdict = judge_response("I think it is 4", "4", "exactMatch")
        assert verdict == Verdict(False, None, 100, "no 'Answer:' line in the response", "none")

    def test_unknown_answer_type(self):
        with pytest.raises(ValueError, match="answer_type"):
            judge_response(respond("4"), "4", "essay")

    def test_words_are_not_mathematical(self):
        assert looks_mathematical("x^2 + \\ln(2)")
        assert not looks_mathematical("Benin and Madagascar")
        assert not looks_mathematical("No")

    def test_works_outside_the_main_thread(self):
        # math-verify's timeouts need the main thread; the judge must not crash elsewhere.
        out = []
        thread = threading.Thread(
            target=lambda: out.append(judge_response(respond("2/4"), r"\frac{1}{2}", "exactMatch"))
        )
        thread.start()
        thread.join()
        assert out[0].correct and out[0].method == "math-verify"


def _real_rows() -> list[dict]:
    path = anchor("hle_verified_subset.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _reformat(answer: str, answer_type: str, i: int) -> str:
    """The same answer written differently: decorations, delimiters, case."""
    if answer_type == "multipleChoice":
        return [f"({answer})", f"**{answer}.** the option's text", f"Option {answer}"][i % 3]
    if answer.startswith("$") and answer.endswith("$"):
        body = answer.strip("$").strip()
    elif "\n" in answer:
        body = answer
    else:
        body = f"${answer}$"
    upper = body.upper() if "\\" not in body and "$" not in body else body
    return [f"  **{body}**  ", f"{body}.", upper][i % 3]


def test_real_answers_match_themselves_reformatted():
    rows = _real_rows()
    failures = []
    for i, row in enumerate(rows):
        answer = str(row["answer"])  # some real answers are JSON numbers
        verdict = judge_response(
            respond(_reformat(answer, row["answer_type"], i)), row["answer"], row["answer_type"]
        )
        if not verdict.correct:
            failures.append((row["id"], answer, verdict.reason))
    assert len(rows) == 595
    assert failures == []


@pytest.mark.slow
def test_real_answers_do_not_match_other_questions_answers():
    rows = _real_rows()
    wrong = []
    for i, row in enumerate(rows):
        # The 7th next answer of the same type that differs as text (and as option letter).
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
