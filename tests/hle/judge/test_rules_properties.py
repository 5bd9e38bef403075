"""The judge, the extractors and every reward are total: any text in, a result of the right type
out, never an exception (property-based, with adversarial text and numbers in every format)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hle_reasoning.hle.judge.forms import (
    answer_form,
    approximation,
    boxed_values,
    is_name,
    matrix_cells,
    mixed_number,
    named_value,
    reference_values,
    text_unit,
)
from hle_reasoning.hle.judge.rewards import (
    CosineSimilarityReward,
    correctness_reward,
    format_reward,
)
from hle_reasoning.hle.judge.rules import (
    Verdict,
    extract_answer,
    extract_confidence,
    extract_option,
    judge_response,
)

METHODS = {
    "option", "hedge", "text", "number", "integer", "sequence", "matrix", "math-verify", "none"
}  # fmt: skip
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

# Pieces that break naive parsers: delimiters, LaTeX half-commands, NaN/inf spellings, huge and
# tiny magnitudes, separators, scripts, hedges, the answer format's own keywords.
FRAGMENTS = [
    "Answer:", "Final Answer:", "Confidence:", "%", "\\%", " percent", "\n", " ", ",", ";", ":",
    ".", "-", "+", "−", "e", "E+", "E-", "^", "^{", "!", "*", "**", "/", "=", "\\approx",
    "$", "$$", "\\(", "\\)", "\\[", "\\]", "{", "}", "\\{", "\\}", "(", ")", "[", "]",
    "\\frac{", "\\dfrac{", "\\sqrt", "\\binom{", "\\boxed{", "\\text{", "\\mathbb{", "\\left(",
    "\\right)", "\\begin{pmatrix}", "\\end{pmatrix}", "\\begin{array}{cc}", "&", "\\\\",
    "\\geq", "\\neq", "\\lt", "\\times 10^{", "×10^", "\\,", ",\\!", "{,}", "²", "₂", "∞",
    "\\infty", "NaN", "nan", "inf", "-inf", "Infinity", "1e999999", "1e-999999",
    "9" * 60, "0." + "0" * 40 + "1", "1,000,000,000,000,000,000,000,000,000", "3.20E+21",
    "5!^2", "2^{2^{2^{100}}}", "10^{10^{10}}", "or", "Actually,", "B", "(C)", "Option D",
    "\\textsubscript{2}", "V = ", "x", "No", "\U0001f600", "\u200b", "\ufeff", "\x00",
    "'", "\\prime", "^{\\prime", "′", "\\cfrac{", "\\textnormal{", "\\mathcal{", " pct", "\\$",
    " and ", "|", "\\quad", "\\begin{bmatrix}", "\\end{bmatrix}", "\\left[\\begin{array}{c}",
    "\\end{array}\\right]", "V_{1}:V_{2}=", "|AB| = ", "(p,q)=", " 1/2", "\\frac12", "\\boxed{1}, ",
]  # fmt: skip

fragments = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=12).map("".join)
text = st.one_of(st.text(), fragments)


def number_spellings(value: float | int) -> st.SearchStrategy[str]:
    forms = [repr(value), f"{value:e}", f"{value:.3E}", f"{value:,}", f"{value:g}"]
    if isinstance(value, int):
        forms += [f"{value:,}".replace(",", "{,}"), f"{value:,}".replace(",", "\\,")]
    return st.sampled_from(forms)


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(
        lambda d: float(d) if d.is_finite() else 0.0
    ),
).flatmap(number_spellings)
answers = st.one_of(text, numbers)


def response(answer: str, confidence: str) -> str:
    return f"Explanation: why.\nAnswer: {answer}\nConfidence: {confidence}"


def assert_verdict(verdict: Verdict) -> None:
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.correct, bool)
    assert verdict.extracted_answer is None or isinstance(verdict.extracted_answer, str)
    assert isinstance(verdict.confidence, int) and 0 <= verdict.confidence <= 100
    assert isinstance(verdict.reason, str) and verdict.reason
    assert verdict.method in METHODS


@SETTINGS
@given(raw=text, answer=answers, answer_type=st.sampled_from(["exactMatch", "multipleChoice"]))
def test_judge_is_total_on_any_response(raw, answer, answer_type):
    assert_verdict(judge_response(raw, answer, answer_type))


@SETTINGS
@given(said=answers, answer=answers, confidence=st.one_of(text, numbers))
def test_judge_is_total_on_any_answer_line(said, answer, confidence):
    verdict = judge_response(response(said, confidence), answer, "exactMatch")
    assert_verdict(verdict)


@SETTINGS
@given(raw=text)
def test_extractors_are_total(raw):
    extracted = extract_answer(raw)
    assert extracted is None or (isinstance(extracted, str) and extracted.strip())
    confidence = extract_confidence(raw)
    assert isinstance(confidence, int) and 0 <= confidence <= 100
    option = extract_option(raw)
    assert option is None or (len(option) == 1 and option.isupper())


@SETTINGS
@given(raw=text, answer=answers)
def test_answer_forms_are_total(raw, answer):
    assert isinstance(is_name(raw), bool)
    for value in (named_value(raw), mixed_number(raw)):
        assert value is None or isinstance(value, str)
    for pair in (approximation(raw), text_unit(raw)):
        assert pair is None or (len(pair) == 2 and all(isinstance(x, str) for x in pair))
    boxes = boxed_values(raw)
    assert boxes is None or (len(boxes) >= 2 and all(boxes))
    cells = matrix_cells(raw)
    assert cells is None or all(c for row in cells for c in row)
    form, notes = answer_form(answer, raw)
    assert isinstance(form, str) and all(isinstance(n, str) for n in notes)
    assert all(isinstance(v, str) and how for v, how in reference_values(raw))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    whole=st.integers(0, 10**6),
    den=st.integers(2, 999),
    data=st.data(),
    latex=st.booleans(),
)
def test_a_mixed_number_is_its_improper_fraction_and_no_other(whole, den, data, latex):
    num = data.draw(st.integers(1, den - 1))
    said = f"{whole}\\frac{{{num}}}{{{den}}}" if latex else f"{whole} {num}/{den}"
    right, wrong = f"{whole * den + num}/{den}", f"{whole * den + num + 1}/{den}"
    assert judge_response(response(said, "50%"), right, "exactMatch").correct
    assert not judge_response(response(said, "50%"), wrong, "exactMatch").correct


@settings(max_examples=60, deadline=None, derandomize=True)
@given(values=st.lists(st.integers(-999, 999), min_size=2, max_size=5, unique=True), data=st.data())
def test_a_set_in_boxes_matches_in_any_order_and_a_tuple_only_in_its_own(values, data):
    order = data.draw(st.permutations(values))
    boxed = ", ".join(f"\\boxed{{{v}}}" for v in order)
    as_set = "\\{" + ", ".join(map(str, values)) + "\\}"
    as_tuple = "(" + ", ".join(map(str, values)) + ")"
    assert judge_response(response(boxed, "50%"), as_set, "exactMatch").correct
    same_order = list(order) == list(values)
    assert judge_response(response(boxed, "50%"), as_tuple, "exactMatch").correct is same_order


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(["x", "|AB|", "V_{1}:V_{2}", "f(x)", "E'", "\\frac{NO}{BO}"]),
    value=st.integers(-(10**9), 10**9),
)
def test_a_named_reference_matches_its_bare_value_only(name, value):
    answer = f"{name} = {value}"
    assert judge_response(response(str(value), "50%"), answer, "exactMatch").correct
    assert not judge_response(response(str(value + 1), "50%"), answer, "exactMatch").correct


@settings(max_examples=100, deadline=None, derandomize=True)
@given(a=st.integers(-(10**30), 10**30), b=st.integers(-(10**30), 10**30), sep=st.booleans())
def test_two_different_integers_never_match(a, b, sep):
    assume(a != b)
    said = f"{a:,}" if sep else str(a)
    verdict = judge_response(response(said, "50%"), str(b), "exactMatch")
    assert not verdict.correct, verdict


@settings(max_examples=100, deadline=None, derandomize=True)
@given(value=st.integers(-(10**30), 10**30))
def test_an_integer_matches_its_spellings(value):
    for said in (f"{value:,}", f"${value}$", f"\\boxed{{{value}}}", f"{value}."):
        verdict = judge_response(response(said, "50%"), str(value), "exactMatch")
        assert verdict.correct, (said, verdict)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(confidence=st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_confidence_is_clamped_whatever_the_number(confidence):
    value = Decimal(confidence)
    stated = extract_confidence(f"Confidence: {value:f}%")
    if value >= 100 or value <= 0:
        assert stated == (100 if value >= 100 else 0)
    else:  # half up: 12.5 -> 13
        assert stated == int(value + Decimal("0.5"))


def test_megabyte_inputs_are_judged_quickly():
    huge = "9" * 1_000_000
    started = time.monotonic()
    for raw, answer in [
        (response(huge, huge), "1.00"),
        (response("1", "50%"), huge),
        ("Answer: " + "{" * 500_000 + "}" * 500_000, "5"),
        ("Answer:\n" * 200_000, "B"),
        (response("x" * 1_000_000, "Confidence: " + "1" * 1_000_000), "x"),
        (response("\\frac{" * 100_000, "50%"), "\\frac{1}{2}"),
    ]:
        for answer_type in ("exactMatch", "multipleChoice"):
            assert_verdict(judge_response(raw, answer, answer_type))
    assert time.monotonic() - started < 60


def test_off_the_main_thread_costly_mathematics_is_bounded():
    """math-verify has no timeout off the main thread: costly inputs must not reach it there."""
    results: list[tuple[Verdict, float]] = []

    def judge() -> None:
        for said in ("2^{2^{2^{100}}}", "(x+1)^{99999}", "9999!", "x^{10^{10}}+1"):
            started = time.monotonic()
            results.append((judge_response(response(said, "9%"), "x", "exactMatch"), 0.0))
            results[-1] = (results[-1][0], time.monotonic() - started)

    thread = threading.Thread(target=judge)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(results) == 4
    for verdict, seconds in results:
        assert not verdict.correct and seconds < 5, (verdict, seconds)


@SETTINGS
@given(
    completions=st.lists(
        st.one_of(
            text,
            st.lists(st.fixed_dictionaries({"role": st.just("assistant"), "content": text})),
        ),
        min_size=1,
        max_size=4,
    ),
    data=st.data(),
)
def test_rule_rewards_are_total(completions, data):
    n = len(completions)
    gold = data.draw(st.lists(answers, min_size=n, max_size=n))
    kinds = data.draw(
        st.lists(st.sampled_from(["exactMatch", "multipleChoice"]), min_size=n, max_size=n)
    )
    correctness = correctness_reward(completions=completions, answer=gold, answer_type=kinds)
    assert len(correctness) == n and set(correctness) <= {0.0, 1.0}
    formats = format_reward(completions=completions)
    assert len(formats) == n and set(formats) <= {0.0, 0.5, 1.0}


@pytest.fixture(scope="module")
def cosine():
    return CosineSimilarityReward(["4", "B"])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(completions=st.lists(text, min_size=1, max_size=3), data=st.data())
def test_cosine_reward_is_total(cosine, completions, data):
    n = len(completions)
    gold = data.draw(st.lists(answers, min_size=n, max_size=n))
    rewards = cosine(completions=completions, answer=gold)
    assert len(rewards) == n
    assert all(isinstance(r, float) and -1e-6 <= r <= 1 + 1e-6 for r in rewards)
