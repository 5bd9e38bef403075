import json
import threading

import pytest

from hle_reasoning.hle.judge.rules import (
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


def _self_mismatches(rows: list[dict]) -> list[tuple]:
    """Rows whose answer, written differently (:func:`_reformat`), is judged incorrect."""
    failures = []
    for i, row in enumerate(rows):
        answer = str(row["answer"])  # some real answers are JSON numbers
        reformatted = _reformat(answer, row["answer_type"], i)
        verdict = judge_response(respond(reformatted), row["answer"], row["answer_type"])
        if not verdict.correct:
            failures.append((row["id"], answer, reformatted, verdict.reason))
    return failures


def _cross_matches(rows: list[dict]) -> list[tuple]:
    """Rows whose reference accepts another question's different answer of the same type."""
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
    return wrong


def test_real_answers_match_themselves_reformatted():
    rows = _real_rows()
    assert len(rows) == 595
    assert _self_mismatches(rows) == []


@pytest.mark.slow
def test_real_answers_do_not_match_other_questions_answers():
    assert _cross_matches(_real_rows()) == []


class TestGeneralEquivalences:
    """Each form of writing is a general rule; the verdict names the rule that decided."""

    @pytest.mark.parametrize(
        ("said", "answer", "method"),
        [
            ("0.25", "25%", "number"),  # a fraction against a percentage
            ("25\\%", "0.25", "number"),
            ("12", "12%", "number"),  # the reference is a percent: the unit may be omitted
            ("73%", "73", "number"),  # a percent sign on the reference's number
            ("1.776 \\times 10^{-3} \\text{ mol L}^{-1}", "1.776 * 10^-3", "number"),  # unit added
            ("\\frac{8}{3} + \\frac{\\sqrt{3}}{\\pi}", "8/3+sqrt(3)/pi", "math-verify"),
            ("3,198,412,000,000,000,000,000", "3.20E+21", "number"),  # reference's 3 sig. figs
            ("3.20E+21", "3,198,412,000,000,000,000,000", "number"),  # response's 3 sig. figs
            ("3.2 \\times 10^{-5}", "0.000032", "number"),
            ("12,\\!345", "12345", "number"),  # a LaTeX thin space in a digit group
            ("12\\,345", "12345", "text"),
            ("5!^2", "14400", "integer"),
            ("2^{40}", "1099511627776", "integer"),
            ("\\binom{30}{12}", "86493225", "integer"),
            ("1099511627776", "2^{40}", "integer"),
            ("5,621,728,217,559,090", "$58\\choose 22$", "integer"),
            ("131,681,894,400", "9!^2", "integer"),
            ("max(t_H, t_G) + k - 1", "$\\max(t_H,t_G)+k-1$", "math-verify"),
            ("\\[ \\dfrac{1}{2} \\]", "\\frac12", "math-verify"),
            ("\\tfrac{3}{4}", "\\frac{3}{4}", "text"),
            ("\\left( 1, 2 \\right)", "(1,2)", "text"),
            ("\\mathsf{Fe}", "Fe", "text"),
            ("\\mathbb{Z}^2", "Z^2", "text"),
            ("H\\textsubscript{2}O", "H_2O", "text"),
            ("H₂O", "H_2O", "text"),
            ("x³", "x^3", "text"),
            ("V = 5", "5", "text"),  # a leading name
            ("\\sqrt{2} \\approx 1.414", "\\sqrt{2}", "text"),  # a trailing approximation
            ("1:4:900", "1;4;900", "sequence"),
            ("$\\{Q,P\\}$", "{P, Q}", "sequence"),  # a set: any order
            ("[1, 2, 3]", "(1; 2; 3)", "sequence"),
            ("the value is $\\boxed{7\\sqrt 3}$", "7\\sqrt{3}", "math-verify"),
            ("The minimum is $12$.", "12", "text"),
            ("x \\geq 2", "x >= 2", "text"),
            ("a \\neq b", "a != b", "text"),
            ("x \\lt 1", "x<1", "text"),
            (
                "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
                "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}",
                "text",
            ),
            (
                "\\left[\\begin{array}{cc}1&0\\\\0&1\\end{array}\\right]",
                "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}",
                "text",
            ),
            ("y", "y", "text"),
        ],
    )
    def test_accepted(self, said, answer, method):
        verdict = judge_response(respond(said), answer, "exactMatch")
        assert verdict.correct, verdict
        assert verdict.method == method, verdict

    @pytest.mark.parametrize(
        ("said", "answer", "method"),
        [
            ("2", "2\\sqrt{7}", "math-verify"),  # a number followed by LaTeX is not a unit
            ("2", "2x", "math-verify"),  # nor is a one-letter variable
            ("1", "1\\2\\sqrt{3+1/n^2}", "text"),  # math-verify would read the reference as 1
            ("0.25", "25", "number"),  # only a percent reference takes a fraction
            ("25 cm", "25 mm", "number"),
            ("3.1E+21", "3.20E+21", "number"),
            ("3E+21", "3,198,412,000,000,000,000,000", "number"),  # 1 significant figure: too few
            ("1.23E+6", "1234567", "number"),  # an exact count is not a rounded magnitude
            ("5!^2", "14401", "integer"),
            ("(2, 1)", "(1, 2)", "sequence"),  # order kept where it matters
            ("1:4:901", "1;4;900", "sequence"),
            ("{P, Q, R}", "{P, Q}", "sequence"),
            ("the value is not $5$", "5", None),
            ("x \\leq 2", "x >= 2", None),
            (
                "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}",
                "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}",
                None,
            ),
            ("30,000,000,000,000,000,000,000,000,000", "1.00", "number"),  # raised InvalidOperation
            ("1e999999", "1.00", "number"),
            ("-1e999999", "1.00", "number"),
        ],
    )
    def test_rejected(self, said, answer, method):
        verdict = judge_response(respond(said), answer, "exactMatch")
        assert not verdict.correct, verdict
        if method:
            assert verdict.method == method, verdict
        assert verdict.reason


class TestHedges:
    """HLE's judge calls any ambiguity incorrect: an answer that names two answers is wrong."""

    @pytest.mark.parametrize(
        "said", ["B. Actually, C", "B or C", "B/C", "(B), (C)", "B, wait, no: D", "B and C"]
    )
    def test_two_options_are_wrong(self, said):
        verdict = judge_response(respond(said), "B", "multipleChoice")
        assert not verdict.correct and verdict.method == "hedge", verdict

    @pytest.mark.parametrize("said", ["B", "B. Both A and C", "(B) the second", "Option B"])
    def test_one_option_with_its_text_is_not_a_hedge(self, said):
        answer = "B"
        verdict = judge_response(respond(said), answer, "multipleChoice")
        assert verdict.correct and verdict.method == "option", verdict

    @pytest.mark.parametrize(
        "said", ["12 or 14", "14 or 12", "12. Actually, 14", "either 12 or 14", "possibly 12"]
    )
    def test_alternatives_are_wrong(self, said):
        verdict = judge_response(respond(said), "12", "exactMatch")
        assert not verdict.correct and verdict.method == "hedge", verdict

    def test_a_reference_that_says_or_is_an_answer(self):
        verdict = judge_response(respond("red or blue"), "Red or blue", "exactMatch")
        assert verdict.correct and verdict.method == "text"
