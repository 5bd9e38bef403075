"""The ways of writing an answer that other projects' graders accept, one class per test: each
equivalent form is accepted and its near miss (another value, unit, order or symbol) rejected."""

from __future__ import annotations

import pytest

from hle_reasoning.hle.judge.forms import (
    approximation,
    boxed_values,
    is_name,
    matrix_cells,
    mixed_number,
    named_value,
    text_unit,
)
from hle_reasoning.hle.judge.rules import judge_response


def judged(extracted: str, answer: str) -> tuple[bool, str]:
    verdict = judge_response(f"Answer: {extracted}\nConfidence: 50%", answer, "exactMatch")
    return verdict.correct, verdict.method


def correct(extracted: str, answer: str) -> bool:
    return judged(extracted, answer)[0]


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("E'", "E", False),  # a prime is no quote mark
        ("$E'$", "$E$", False),
        ("E^\\prime", "E", False),
        ("E′", "E", False),
        ("y'", "y", False),
        ("f'(x)", "f(x)", False),  # math-verify alone would read both as f(x)
        ("f''(x)", "f'(x)", False),
        ("E^\\prime", "E'", True),  # the same prime in other spellings
        ("E^{\\prime}", "E'", True),
        ("E′", "E'", True),
        ("E^{\\prime\\prime}", "E''", True),
        ("$\\eta' \\sqrt{N}$", "\\(\\eta^{\\prime} \\sqrt{N}\\)", True),
        ("'Paris'", "Paris", True),  # quotes around the whole are still no part of it
        ('"Paris"', "Paris", True),
        ("“Paris”", "Paris", True),
    ],
)
def test_a_prime_is_part_of_the_symbol(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("\\[ 9 \\]", "$9$", True),
        ("$$ 9 $$", "$9$", True),
        ("\\( 9 \\)", "$9$", True),
        ("\\[\n9\n\\]", "9", True),
        ("$$\n9\n$$", "9", True),
        ("Answer \\[ 9 \\]", "$9$", True),  # a lone "Answer" word before the display
        ("The final answer $$ 9 $$", "9", True),
        ("\\[ 8 \\]", "$9$", False),
        ("Answer \\[ 8 \\]", "9", False),
    ],
)
def test_display_delimiters_around_a_bare_answer(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("\\cfrac{1}{3}", "1/3", True),
        ("\\dfrac{1}{3}", "1/3", True),
        ("\\tfrac{1}{3}", "\\frac{1}{3}", True),
        ("\\cfrac{1}{4}", "1/3", False),
        ("\\dfrac{3}{1}", "1/3", False),
    ],
)
def test_cfrac_and_dfrac_are_fractions(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("\\frac{1}{3} \\text{meters}", "1/3", True),
        ("\\frac{1}{3} \\textbf{meters}", "1/3", True),
        ("$\\boxed{125\\textnormal{ miles}}$", "$125$ miles", True),
        ("125 \\text{ miles}", "125 \\textnormal{miles}", True),
        ("12\\,\\text{cm}", "12 cm", True),
        ("125", "125 \\text{ miles}", True),  # the unit omitted
        ("125 \\textnormal{ km}", "$125$ miles", False),  # another unit
        ("125 km", "125 \\text{ miles}", False),
        ("\\frac{1}{3} \\text{meters}", "\\frac{1}{3} \\text{seconds}", False),
        ("$\\boxed{126\\textnormal{ miles}}$", "$125$ miles", False),  # another number
        ("\\frac{1}{4} \\text{meters}", "1/3", False),
        ("5 \\text{ or more}", "5", False),  # words that change the answer are no unit
        ("125 \\text{ km}", "125 m", False),  # a one-letter unit on the other side
        ("125 \\text{ m}", "125 m", True),
        ("125 \\text{ m}", "125 m.", True),
        ("\\frac{1}{3} \\text{ meters}", "\\frac{1}{3} meters", True),
        ("\\frac{1}{3} \\text{ meters}", "\\frac{1}{3} seconds", False),
        ("\\frac{1}{3} meters", "\\frac{1}{3} \\text{ meters}", True),
        ("\\frac{1}{3} hours", "\\frac{1}{3} \\text{ meters}", False),
    ],
)
def test_a_unit_in_text_after_the_number(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("28 pct", "$28\\%$", True),
        ("28 percent", "$28\\%$", True),
        ("$\\boxed{28 pct}$", "28%", True),
        ("$\\boxed{28}$ pct", "28%", True),
        ("29 pct", "28%", False),
        ("28 pct", "29 percent", False),
        ("28 pt", "28%", False),
    ],
)
def test_percent_written_pct_or_percent(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("\\$1,000.99", "1000.99", True),
        ("16386.20", "\\$16,\\!386.20", True),
        ("\\$5", "\\$5.00", True),
        ("\\$5", "5", True),
        ("\\$6", "\\$5", False),
        ("5 cm", "\\$5", False),  # a currency is a unit: another unit is another answer
        ("\\$1,000.99", "1001.99", False),
    ],
)
def test_a_currency_dollar(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("x \\geq 5", "x >= 5", True),
        ("x >= 5", "x \\ge 5", True),
        ("x \\lt 3", "x < 3", True),
        ("x \\gt 5", "x > 5", True),
        ("x <= 2", "x \\leq 2", True),
        ("x \\neq 3", "x != 3", True),
        ("x != 5", "x \\neq 5", True),
        ("x ≥ 5", "x \\geq 5", True),
        ("x \\geqq 5", "x \\geq 5", True),
        ("x \\not= 5", "x \\neq 5", True),
        ("x \\ne 5", "x \\neq 5", True),
        ("x > 5", "x \\geq 5", False),
        ("x \\leq 5", "x \\geq 5", False),
        ("x < 5", "x > 5", False),
        ("x = 3", "x \\neq 3", False),
    ],
)
def test_relation_spellings(extracted, answer, expected):
    assert correct(extracted, answer) is expected


PMATRIX = "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}"


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}", PMATRIX, True),
        ("\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]", PMATRIX, True),
        ("\\left(\\begin{matrix}1&2\\\\3&4\\end{matrix}\\right)", PMATRIX, True),
        (
            "\\begin{bmatrix}0.5 & 2 \\\\ 3 & 4\\end{bmatrix}",
            PMATRIX.replace("1", "\\frac12"),
            True,
        ),
        ("\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}", PMATRIX, False),
        ("\\begin{bmatrix}1 & 3 \\\\ 2 & 4\\end{bmatrix}", PMATRIX, False),  # transposed
        ("\\begin{bmatrix}1 & 2 & 3 & 4\\end{bmatrix}", PMATRIX, False),  # another shape
    ],
)
def test_matrix_environments(extracted, answer, expected):
    assert correct(extracted, answer) is expected


def test_matrices_of_equivalent_entries_are_compared_entry_by_entry():
    answer = "\\begin{pmatrix}\\frac{1}{2} & 1 \\\\ 0 & 1\\end{pmatrix}"
    assert judged("\\begin{bmatrix}0.5 & 1 \\\\ 0 & 1\\end{bmatrix}", answer) == (True, "matrix")
    assert judged("\\begin{bmatrix}0.6 & 1 \\\\ 0 & 1\\end{bmatrix}", answer) == (False, "matrix")


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("10,\\!000", "10000", True),
        ("1,\\!234,\\!567", "1234567", True),
        ("1,\\!234,\\!567", "1,234,567", True),
        ("10{,}000", "10,\\!000", True),
        ("10,\\!001", "10000", False),
        ("1,\\!234,\\!568", "1,234,567", False),
    ],
)
def test_digit_groups_with_a_negative_thin_space(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("B", "$\\mathcal{B}$", True),
        ("$\\mathcal{B}$", "B", True),
        ("\\mathfrak{g}", "g", True),
        ("\\mathscr{L}", "\\mathcal{L}", True),
        ("\\textnormal{odd}", "odd", True),
        ("\\mathcal{C}", "\\mathcal{B}", False),
        ("C", "\\mathcal{B}", False),
    ],
)
def test_font_wrappers(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("3128 1/2", "3128 \\frac{1}{2}", True),
        ("3128 1/2", "6257/2", True),
        ("3128 1/2", "3128.5", True),
        ("3128.5", "3128 1/2", True),
        ("3128\\frac12", "3128 1/2", True),
        ("-2 \\frac{3}{4}", "-11/4", True),
        ("3129 1/2", "3128 1/2", False),
        ("3128 1/3", "3128 1/2", False),
        ("3128/2", "3128 1/2", False),
        ("-3128 1/2", "3128 1/2", False),
    ],
)
def test_mixed_numbers(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("\\boxed{2}, \\boxed{3}, \\boxed{5}", "\\{2, 3, 5\\}", True),
        ("\\boxed{5}, \\boxed{2}, \\boxed{3}", "\\{2, 3, 5\\}", True),  # a set: any order
        ("\\boxed{1} and \\boxed{2} and \\boxed{3}", "{1,2,3}", True),
        ("$\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$", "(2, 2), (6, 2)", True),
        ("$\\boxed{-2,1}$.", "\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).", True),
        ("2 and 1", "\\{1, 2\\}", True),
        ("$\\boxed{1,2,3}$", "$1$ and $2$ and $3$", True),  # an enumeration: a set
        ("$\\boxed{6,8}$", "\\(\\boxed{6 \\text{ and } 8}\\)", True),
        ("\\boxed{1}, \\boxed{2}", "(1, 2)", True),
        ("\\boxed{2}, \\boxed{1}", "(1, 2)", False),  # an ordered tuple keeps its order
        ("2 and 1", "(1, 2)", False),
        ("\\boxed{1}, \\boxed{2}, \\boxed{4}", "\\{1, 2, 3\\}", False),
        ("\\boxed{1}, \\boxed{2}", "\\{1, 2, 3\\}", False),
        ("$\\boxed{(2, 6)} \\text{ and } \\boxed{(2, 2)}$", "(2, 2), (6, 2)", False),
        ("first \\boxed{1}, then \\boxed{12}", "1, 12", False),  # words between: the last box
        ("Madagascar and Benin", "Benin and Madagascar", False),  # words stay text
    ],
)
def test_sets_and_tuples_in_several_boxes_or_joined_by_and(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("\\sqrt{2}", "\\sqrt{2} \\approx 1.414", True),
        ("1.414", "\\sqrt{2} \\approx 1.414", True),
        ("1.4142", "\\sqrt{2} \\approx 1.414", True),  # equal at the approximation's decimals
        ("1/3", "1/3 \\approx 0.333", True),
        ("\\sqrt2 \\approx 1.41", "\\sqrt{2} \\approx 1.414", True),
        ("\\pi \\approx 3.140", "\\pi \\approx 3.14", True),
        ("11", "x \\approx 11", True),
        ("$x\\approx11$", "11", True),
        ("1.41", "\\sqrt{2} \\approx 1.414", False),
        ("\\sqrt{3}", "\\sqrt{2} \\approx 1.414", False),
        ("x", "x \\approx 11", False),  # the name is not the value
        ("1.5", "\\sqrt{2} \\approx 1.414", False),
    ],
)
def test_an_approximation_after_the_reference(extracted, answer, expected):
    assert correct(extracted, answer) is expected


@pytest.mark.parametrize(
    ("extracted", "answer", "expected"),
    [
        ("1", "|AB| = 1", True),
        ("|AB| = 1", "1", True),
        ("11:21", "V_{1}:V_{2}=11:21", True),
        ("V_1:V_2 = 11:21", "11:21", True),
        ("$\\boxed{7:32}$", "$S_{MBCN}:S=7:32$", True),
        ("$\\boxed{4, 5}$", "$AB=4,CD=5$", True),
        ("\\frac{1}{\\sqrt{6}}", "\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}", True),
        ("(3,2)", "(p,q)=(3,2)", True),
        ("2", "f'(x) = 2", True),
        ("2", "|AB| = 1", False),
        ("21:11", "V_{1}:V_{2}=11:21", False),
        ("(2,3)", "(p,q)=(3,2)", False),
        ("1", "2x + z = 1", False),  # an equation is no name
        ("0", "a + 3z = 0", False),
        ("x", "x = 1", False),
        ("y = 1, x = 2", "x = 1, y = 2", False),  # names on both sides are kept
        ("(4, 5)", "(AB=4, CD=5)", True),
        ("(AB=4, CD=5)", "(4, 5)", True),
        ("(AB=4, CD=6)", "(4, 5)", False),
    ],
)
def test_a_named_value_against_the_bare_value(extracted, answer, expected):
    assert correct(extracted, answer) is expected


# --------------------------------------------------------------------------- the parts


def test_named_value_and_is_name_by_hand():
    assert named_value("|AB| = 1") == "1"
    assert named_value("V_{1}:V_{2}=11:21") == "11:21"
    assert named_value("(p, q) = (3, 2)") == "(3, 2)"
    assert named_value("2x + z = 1") is None
    assert named_value("x <= 1") is None
    assert named_value("x = 1 = y") is None
    assert named_value("\\sqrt{2} = 1.414") is None
    assert is_name("V_1") and is_name("|AB|") and is_name("f(x)") and is_name("E'")
    assert not is_name("x^2") and not is_name("\\sqrt{2}") and not is_name("2x")


def test_approximation_text_unit_and_mixed_number_by_hand():
    assert approximation("\\sqrt{2} \\approx 1.414") == ("\\sqrt{2}", "1.414")
    assert approximation("1.414") is None
    assert text_unit("125\\textnormal{ miles}") == ("125", "miles")
    assert text_unit("\\frac{1}{3}\\,\\text{square  meters}.") == ("\\frac{1}{3}", "square meters")
    assert text_unit("5 \\text{ or more}") is None
    assert text_unit("\\text{meters}") is None  # no value before it
    assert mixed_number("3128 1/2") == "\\frac{6257}{2}"
    assert mixed_number("-2\\frac34") == "-\\frac{11}{4}"
    assert mixed_number("3 4/3") is None  # an improper fraction: no mixed number
    assert mixed_number("3 0/2") is None


def test_boxed_values_and_matrix_cells_by_hand():
    assert boxed_values("\\boxed{1}, \\boxed{x+1}") == ["1", "x+1"]
    assert boxed_values("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).") == ["1", "-2"]
    assert boxed_values("\\boxed{1} papers and \\boxed{2} bins") is None
    assert boxed_values("\\boxed{1}") is None
    assert boxed_values("\\boxed{1}, \\boxed{2") is None
    assert matrix_cells("\\begin{bmatrix}1 & 2 \\\\ 3 & 4\\end{bmatrix}") == [
        ["1", "2"],
        ["3", "4"],
    ]
    assert matrix_cells("\\begin{pmatrix}1 & 2 \\\\ \\end{pmatrix}") == [["1", "2"]]
    assert matrix_cells("\\begin{pmatrix}1 & \\\\ 3 & 4\\end{pmatrix}") is None
    assert matrix_cells("(1, 2)") is None


def test_the_verdict_key_follows_every_module_of_the_rules():
    """A stored rules verdict is re-judged when any module the rules judge reaches changes."""
    import ast
    import inspect

    from hle_reasoning.hle.judge.table import RULES_MODULES

    hashed = {m.__name__ for m in RULES_MODULES}
    reached = set()
    for module in RULES_MODULES:
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "hle_reasoning.hle.judge"
            ):
                reached.add(node.module)
    assert reached <= hashed, reached - hashed
    assert "hle_reasoning.hle.judge.forms" in hashed


def test_a_matrix_against_another_form_and_rel_tol_inside_a_matrix():
    matrix = "\\begin{pmatrix}3.14159 & 1\\end{pmatrix}"
    assert judged("(3.14159, 1)", matrix) == (False, "text")  # one side only: no matrix rule
    close = "\\begin{bmatrix}3.14160 & 1\\end{bmatrix}"
    assert judged(close, matrix) == (True, "matrix")  # entries within the relative 1e-4
    strict = judge_response(f"Answer: {close}", matrix, "exactMatch", rel_tol=1e-7)
    assert (strict.correct, strict.method) == (False, "matrix")
