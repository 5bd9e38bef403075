"""The rules judge branch by branch, each against a hand-written verdict or normal form (the
checks the mutation run of hle/judge/rules.py asked for; see tests/MUTATION.md)."""

from __future__ import annotations

import pytest

from hle_reasoning.hle.judge.answers import is_unit as _is_unit
from hle_reasoning.hle.judge.answers import normalize_for_number, normalize_text
from hle_reasoning.hle.judge.rules import (
    Verdict,
    _clip,
    extract_answer,
    extract_confidence,
    extract_option,
    judge_response,
)
from hle_reasoning.hle.judge.symbolic import looks_mathematical


def respond(answer: str, confidence: str = "Confidence: 80%") -> str:
    return f"Explanation: reasons.\nAnswer: {answer}\n{confidence}"


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("$$x^2$$", "x^2"),
        ("\\[x+1\\]", "x+1"),
        ("\\(y\\)", "y"),
        ("$\\boxed{42}$.", "42"),
        ("\\boxed{\\{1, 2\\}}", "\\{1,2\\}"),
        ("{{a}}", "a"),
        ("{a}{b}", "{a}{b}"),  # the braces do not enclose the whole: kept
        ("}a{", "}a{"),
        ("**Paris**", "paris"),
        ("__Paris__", "paris"),
        ("`Paris`", "paris"),
        ("\\text{ Paris }", "paris"),
        ("“Paris”.", "paris"),
        ("'Paris'", "paris"),
        ("Ⅻ", "xii"),  # NFKC
        ("3.50.", "3.50"),
        ("...", ""),
        ("$5", "5"),
        ("x_1 + y", "x_1+y"),
    ],
)
def test_normalize_text_by_hand(text, normal):
    assert normalize_text(text) == normal


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("**12**", "12"),
        ("$1{,}234$", "1,234"),
        ("12~cm", "12 cm"),
        ("\\text{12 kg}", "12 kg"),
        ("  3   apples ", "3 apples"),
    ],
)
def test_normalize_for_number_by_hand(text, normal):
    assert normalize_for_number(text) == normal


@pytest.mark.parametrize(
    ("unit", "is_unit"),
    [
        ("", True),
        ("cm", True),
        ("m/s^2", True),
        ("%", True),
        ("\\Omega", True),
        ("km per h", True),
        ("apples", False),  # a word longer than 5 letters
        ("red big cats", False),  # three words
        ("a, b", False),
        ("1cm", False),
        ("abcdefghijklm", False),  # longer than 12
    ],
)
def test_is_unit_by_hand(unit, is_unit):
    assert _is_unit(unit) is is_unit


@pytest.mark.parametrize(
    ("text", "mathematical"),
    [
        ("\\frac{1}{2}", True),
        ("\\sqrt{2} + \\pi", True),
        ("Sin(x)", True),  # function names in any case
        ("2 apples", False),
        ("\\text{apples} + 1", False),  # \text{} is unwrapped first: a word
        ("No", False),
    ],
)
def test_looks_mathematical_by_hand(text, mathematical):
    assert looks_mathematical(text) is mathematical


@pytest.mark.parametrize(
    ("line", "confidence"),
    [
        ("Confidence: 0.855", 86),  # a fraction, 85.5% rounded half up
        ("Confidence: 0.0", 0),
        ("Confidence: 1.0", 100),
        ("Confidence: 1.5", 2),  # above 1: already a percentage, rounded half up
        ("Confidence: 2.5", 3),
        ("Confidence: 1", 1),  # no decimal point: a percentage
        ("Confidence: 0.5%", 1),
        ("Confidence: 150%", 100),
        ("Confidence: -5%", 0),
        ("confidence: 85 percent", 85),
    ],
)
def test_extract_confidence_by_hand(line, confidence):
    assert extract_confidence(respond("B", line)) == confidence


def test_extract_answer_strips_markdown_around_the_block():
    assert extract_answer("**Answer:** **B** \nConfidence: 9%") == "B"
    assert extract_answer("Answer: _x_") == "x"
    assert extract_answer("Answer: *_*") is None


def test_extract_option_ignores_backticks_and_latex_text():
    assert extract_option("`B`") == "B"
    assert extract_option("\\text{B}") == "B"
    assert extract_option("$\\textbf{(C)}$") == "C"


def test_clip():
    assert _clip("a  b\nc") == "'a b c'"
    assert _clip("x" * 61) == repr("x" * 57 + "...")
    assert _clip("x" * 60) == repr("x" * 60)


# --------------------------------------------------------------------------- every branch


@pytest.mark.parametrize(
    ("response", "answer", "answer_type", "verdict"),
    [
        (
            "I think it is B.",
            "B",
            "multipleChoice",
            Verdict(False, None, 100, "no 'Answer:' line in the response", "none"),
        ),
        (
            respond("maybe the second one"),
            "B",
            "multipleChoice",
            Verdict(
                False,
                "maybe the second one",
                80,
                "no option letter in 'maybe the second one'",
                "option",
            ),
        ),
        (
            respond("C", "Confidence: 35%"),
            "B",
            "multipleChoice",
            Verdict(False, "C", 35, "option C != B", "option"),
        ),
        (
            respond("(B)", "Confidence: 0.9"),
            "B",
            "multipleChoice",
            Verdict(True, "(B)", 90, "option B matches", "option"),
        ),
        (
            respond("**Paris**", "Confidence: 60%"),
            "Paris",
            "multipleChoice",  # a reference that is no letter: the exact-match rules
            Verdict(True, "Paris", 60, "normalised text matches", "text"),
        ),
        (
            respond("12", "Confidence: 70%"),
            "12 cm",
            "exactMatch",
            Verdict(True, "12", 70, "same number 12 (unit omitted)", "number"),
        ),
        (
            respond("12 cm"),
            "12 cm",
            "exactMatch",
            Verdict(True, "12 cm", 80, "normalised text matches", "text"),
        ),
        (
            respond("12.0 cm"),
            "12 cm",
            "exactMatch",
            Verdict(True, "12.0 cm", 80, "same number 12.0", "number"),
        ),
        (
            respond("12 m"),
            "12 cm",
            "exactMatch",
            Verdict(False, "12 m", 80, "units differ: 'm' vs 'cm'", "number"),
        ),
        (
            respond("3.904"),
            "3.90",
            "exactMatch",
            Verdict(True, "3.904", 80, "3.904 equals 3.90 at the answer's 2 decimals", "number"),
        ),
        (
            respond("3.905 kg"),
            "3.90 kg",
            "exactMatch",
            Verdict(False, "3.905 kg", 80, "number 3.905 != 3.90", "number"),
        ),
        (
            respond("1.0000015"),
            "1.000001",
            "exactMatch",
            Verdict(
                True, "1.0000015", 80, "1.0000015 within relative 0.0001 of 1.000001", "number"
            ),
        ),
        (
            respond("100.004"),
            "100",
            "exactMatch",
            Verdict(False, "100.004", 80, "number 100.004 != 100", "number"),
        ),
        (
            respond("\\frac{2}{4}"),
            "\\frac{1}{2}",
            "exactMatch",
            Verdict(
                True, "\\frac{2}{4}", 80, "math-verify: 1/2 is equivalent to 1/2", "math-verify"
            ),
        ),
        (
            respond("\\frac{1}{3}"),
            "\\frac{1}{2}",
            "exactMatch",
            Verdict(
                False,
                "\\frac{1}{3}",
                80,
                "math-verify: 1/3 is not equivalent to 1/2",
                "math-verify",
            ),
        ),
        (
            respond("Lyon"),
            "Paris",
            "exactMatch",
            Verdict(False, "Lyon", 80, "'Lyon' differs from 'Paris' (text)", "text"),
        ),
        (
            respond("12 apples"),
            "12 pears",
            "exactMatch",
            Verdict(False, "12 apples", 80, "'12 apples' differs from '12 pears' (text)", "text"),
        ),
    ],
)
def test_every_branch_gives_its_verdict(response, answer, answer_type, verdict):
    assert judge_response(response, answer, answer_type) == verdict


def test_without_math_verify_a_symbolic_match_is_text():
    verdict = judge_response(
        respond("\\frac{2}{4}"), "\\frac{1}{2}", "exactMatch", use_math_verify=False
    )
    assert verdict == Verdict(
        False, "\\frac{2}{4}", 80, "'\\\\frac{2}{4}' differs from '\\\\frac{1}{2}' (text)", "text"
    )


def test_math_verify_needs_both_sides_mathematical():
    # "one half" is words: never handed to math-verify, whatever the reference.
    verdict = judge_response(respond("one half"), "\\frac{1}{2}", "exactMatch")
    assert verdict.method == "text" and not verdict.correct


# ---------------------------------------------------------------- the rules' remaining branches


@pytest.mark.parametrize(
    ("answer_text", "verdict"),
    [
        ("B or C", Verdict(False, "B or C", 80, "hedged between options B and C", "hedge")),
        ("A and b", Verdict(False, "A and b", 80, "hedged between options A and B", "hedge")),
        # The same letter twice is no hedge (and no option form either).
        ("B/B", Verdict(False, "B/B", 80, "no option letter in 'B/B'", "option")),
        (
            "B. Actually, C",
            Verdict(False, "B. Actually, C", 80, "names option B, then option C", "hedge"),
        ),
        ("B, maybe C", Verdict(False, "B, maybe C", 80, "names option B, then option C", "hedge")),
        (
            "B. Actually, it is B",
            Verdict(True, "B. Actually, it is B", 80, "option B matches", "option"),
        ),
        ("B. maybe c", Verdict(True, "B. maybe c", 80, "option B matches", "option")),
    ],
)
def test_multiple_choice_hedges(answer_text, verdict):
    assert judge_response(respond(answer_text), "B", "multipleChoice") == verdict


@pytest.mark.parametrize(
    ("extracted", "answer", "verdict"),
    [
        (
            "12 or 14",
            "12",
            Verdict(False, "12 or 14", 80, "hedged answer ('or' offers an alternative)", "hedge"),
        ),
        (
            "Maybe 12",
            "12",
            Verdict(
                False, "Maybe 12", 80, "hedged answer ('Maybe' offers an alternative)", "hedge"
            ),
        ),
        # The reference's own "or" is no hedge.
        (
            "Red or  blue",
            "red or blue",
            Verdict(True, "Red or  blue", 80, "normalised text matches", "text"),
        ),
        (
            "either red or green",
            "either red or blue",
            Verdict(
                False,
                "either red or green",
                80,
                "'either red or green' differs from 'either red or blue' (text)",
                "text",
            ),
        ),
    ],
)
def test_exact_match_hedges(extracted, answer, verdict):
    assert judge_response(respond(extracted), answer, "exactMatch") == verdict


@pytest.mark.parametrize(
    ("extracted", "answer", "reason"),
    [
        ("The answer is $12$", "12", "normalised text matches (without its prose)"),
        ("x = 12", "12", "normalised text matches (without its name =)"),
        ("22/7 ≈ 3.14", "22/7", "normalised text matches (without its approximation)"),
        ("so \\boxed{12} is it", "12", "normalised text matches (without its \\boxed)"),
    ],
)
def test_answer_forms_that_do_not_change_the_value(extracted, answer, reason):
    assert judge_response(respond(extracted), answer, "exactMatch") == Verdict(
        True, extracted, 80, reason, "text"
    )


def test_integer_expressions():
    assert judge_response(respond("2^{10}"), "1024", "exactMatch") == Verdict(
        True, "2^{10}", 80, "integer expressions both equal 1024", "integer"
    )
    assert judge_response(respond("2^{11}"), "1024", "exactMatch") == Verdict(
        False, "2^{11}", 80, "integer 2048 != 1024", "integer"
    )
    long_pred, long_gold = str(2**201), str(2**200)
    verdict = judge_response(respond("2^{201}"), "2^{200}", "exactMatch")
    assert verdict.reason == (
        f"integer {long_pred[:18]}...{long_pred[-18:]} != {long_gold[:18]}...{long_gold[-18:]}"
    )
    huge = judge_response(respond("2^{4001}"), "2^{4000}", "exactMatch")
    digits = lambda bits: f"{int(bits * 0.30103) + 1:,}"  # noqa: E731 - log10(2) per bit
    assert huge.reason == (
        f"integer an integer of about {digits(4002)} digits != an integer of about "
        f"{digits(4001)} digits"
    )


def test_an_essay_is_not_a_final_answer():
    essay = "word " * 4001  # 20,005 characters, more than 20,000 and 20 x the reference
    verdict = judge_response(respond(essay), "12", "exactMatch")
    assert verdict == Verdict(
        False, essay.strip(), 80, "an answer of 20,004 characters is not a final answer", "text"
    )


@pytest.mark.parametrize(
    ("answer_text", "verdict"),
    [
        # A pair of one letter is no hedge, whatever its case (and no option form either).
        ("b or B", Verdict(False, "b or B", 80, "no option letter in 'b or B'", "option")),
        ("B or b", Verdict(False, "B or b", 80, "no option letter in 'B or b'", "option")),
        # The first option named by "Option B", then another one.
        (
            "Option B, maybe C",
            Verdict(False, "Option B, maybe C", 80, "names option B, then option C", "hedge"),
        ),
    ],
)
def test_multiple_choice_hedges_case_and_first_option(answer_text, verdict):
    assert judge_response(respond(answer_text), "B", "multipleChoice") == verdict


def test_the_references_own_or_in_another_order_is_no_hedge():
    verdict = judge_response(respond("blue or red"), "red or blue", "exactMatch")
    assert verdict == Verdict(
        False, "blue or red", 80, "'blue or red' differs from 'red or blue' (text)", "text"
    )


@pytest.mark.parametrize(
    ("extracted", "answer", "reason"),
    [
        ("so \\boxed{x = 12}", "12", "normalised text matches (without its \\boxed, name =)"),
        ("\\boxed{12} is it", "12", "normalised text matches (without its \\boxed)"),
        (
            "first \\boxed{1}, then \\boxed{12}",
            "12",
            "normalised text matches (without its \\boxed)",
        ),
        (
            "so \\boxed{\\frac{1}{2}} here",
            "\\frac{1}{2}",
            "normalised text matches (without its \\boxed)",
        ),
    ],
)
def test_the_last_boxed_value_with_its_braces(extracted, answer, reason):
    assert judge_response(respond(extracted), answer, "exactMatch") == Verdict(
        True, extracted, 80, reason, "text"
    )


@pytest.mark.parametrize(
    ("extracted", "answer", "kwargs", "correct"),
    [
        ("(1.0, 2)", "(1, 2)", {}, True),
        ("(1, 3)", "(1, 2)", {}, False),
        ("(8, 1)", "(2^{3}, 1)", {}, True),
        ("(9, 1)", "(2^{3}, 1)", {}, False),
        ("(3.14160, 1)", "(3.14159, 1)", {}, True),  # within the relative 1e-4
        ("(3.14160, 1)", "(3.14159, 1)", {"rel_tol": 1e-7}, False),
        ("(0.5, 1)", "(\\frac{1}{2}, 1)", {}, True),  # math-verify on an element
        ("(0.5, 1)", "(\\frac{1}{2}, 1)", {"use_math_verify": False}, False),
    ],
)
def test_sequences_compare_element_by_element(extracted, answer, kwargs, correct):
    verdict = judge_response(respond(extracted), answer, "exactMatch", **kwargs)
    assert (verdict.correct, verdict.method) == (correct, "sequence")


def test_the_length_limit_of_a_final_answer():
    short = "x" * 20_000  # exactly the limit: still judged as an answer
    assert judge_response(respond(short), "12", "exactMatch").method == "text"
    assert "is not a final answer" not in judge_response(respond(short), "12", "exactMatch").reason
    # A long reference allows 20 x its length: 1,100 characters -> 22,000.
    reference = "y" * 1_100
    within = judge_response(respond("x" * 21_000), reference, "exactMatch")
    beyond = judge_response(respond("x" * 22_500), reference, "exactMatch")
    assert "is not a final answer" not in within.reason
    assert beyond.reason == "an answer of 22,500 characters is not a final answer"


def test_a_long_reason_is_clipped_to_300_characters():
    digits = "1." + "3" * 400
    verdict = judge_response(respond(digits), "2.5", "exactMatch")
    assert verdict.method == "number" and not verdict.correct
    assert len(verdict.reason) == 300 and verdict.reason.endswith("3...")
    assert verdict.reason.startswith("number 1.333")


def test_extract_answer_keeps_letters_and_clip_reads_a_bounded_prefix():
    assert extract_answer("Answer: X") == "X"
    assert _clip("a" + " " * 250 + "b") == "'a'"  # only the first 240 characters are read


@pytest.mark.parametrize(
    ("extracted", "answer", "kwargs", "correct"),
    [
        ("{blue, red}", "{red, blue}", {}, True),  # words: equal as text, element by element
        ("(\\sqrt{64}, 1)", "(2^{3}, 1)", {}, True),  # an integer against a root
        ("(8, 1)", "(\\sqrt{64}, 1)", {}, True),
        ("(\\sqrt{64}, 1)", "(8, 1)", {}, True),
        ("(\\frac{1}{3}, 1)", "(\\frac{1}{2}, 1)", {}, False),
        ("(8, 1)", "(2^{3}, 1)", {"use_math_verify": False}, True),  # integer rule, no math-verify
    ],
)
def test_sequence_elements_use_every_rule(extracted, answer, kwargs, correct):
    verdict = judge_response(respond(extracted), answer, "exactMatch", **kwargs)
    assert (verdict.correct, verdict.method) == (correct, "sequence")


def test_a_named_value_against_a_named_reference_keeps_its_name():
    assert judge_response(respond("x = 12.0"), "x = 12", "exactMatch") == Verdict(
        True, "x = 12.0", 80, "math-verify: Eq(x, 12.0) is equivalent to Eq(x, 12)", "math-verify"
    )


def test_a_word_starting_with_the_letter_is_no_option():
    assert judge_response(respond("Bob, maybe C"), "B", "multipleChoice") == Verdict(
        False, "Bob, maybe C", 80, "no option letter in 'Bob, maybe C'", "option"
    )


def test_integers_are_shown_whole_up_to_40_digits_and_by_size_beyond_3000_bits():
    def clipped(n: int) -> str:
        return f"{str(n)[:18]}...{str(n)[-18:]}"

    forty = judge_response(respond("10^{39}+1"), "10^{39}", "exactMatch")
    assert forty.reason == f"integer {10**39 + 1} != {10**39}"
    forty_one = judge_response(respond("10^{40}+1"), "10^{40}", "exactMatch")
    assert forty_one.reason == f"integer {clipped(10**40 + 1)} != {clipped(10**40)}"
    bits_3000 = judge_response(respond("2^{2999}"), "2^{2998}", "exactMatch")  # 3,000 bits
    assert bits_3000.reason == f"integer {clipped(2**2999)} != {clipped(2**2998)}"
    bits_3001 = judge_response(respond("2^{3000}"), "2^{2999}", "exactMatch")
    assert bits_3001.reason == f"integer an integer of about 904 digits != {clipped(2**2999)}"


def test_a_reason_of_exactly_300_characters_is_kept_whole():
    digits = "1." + "3" * 284  # "number " + 286 + " != 2.5" = 300 characters
    verdict = judge_response(respond(digits), "2.5", "exactMatch")
    assert verdict.reason == f"number {digits} != 2.5" and len(verdict.reason) == 300
