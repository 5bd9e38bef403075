"""The offline ``rules`` judge: is a model's HLE response correct, and how confident was it?

HLE grades a response with an LLM judge (o3-mini) that reads the whole response, extracts the
final answer and the stated confidence ("Put 100 if there is no confidence score available") and
says whether the answer matches the reference "or is within a small margin of error for
numerical problems" (``JUDGE_PROMPT`` in hle_eval/run_judge_results.py of
github.com/centerforaisafety/hle). This module is a deterministic, offline stand-in for it:

* the final answer is the block after the last ``Answer:`` / ``Exact Answer:`` /
  ``Final Answer:`` line (up to the next ``Confidence:`` line), the answer line of the official
  system prompt's format;
* the confidence is the last ``Confidence: N%`` (100 when absent, as HLE's judge is told;
  clamped to 0..100);
* multiple choice compares option letters; exact match compares normalised text, then numbers
  (a relative tolerance, or equality at the reference's precision), then LaTeX/symbolic
  answers through math-verify when the reference looks mathematical.

Every :class:`Verdict` says why it matched or what differed. ``judge_response`` is also the
correctness reward of GRPO training, so it is cheap for garbage and never raises.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from hle_reasoning.hle.schema import ANSWER_TYPES

logger = logging.getLogger(__name__)

# The official judge's instruction for responses without a confidence.
DEFAULT_CONFIDENCE = 100
DEFAULT_REL_TOL = 1e-4
# Seconds math-verify may spend on one parse or comparison (huge powers can take forever).
MATH_VERIFY_TIMEOUT_S = 2

# A line that starts the final answer: "Answer:", "Exact Answer:", "Final Answer:", also with
# markdown decorations ("**Answer:**", "### Answer:", "> Answer:").
_ANSWER_LINE = re.compile(
    r"^[ \t>#*_]*(?:final[ \t]+|exact[ \t]+)?answer[ \t*_]*:[ \t*_]*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_CONFIDENCE_LINE = re.compile(r"^[ \t>#*_]*confidence[ \t*_]*:", re.IGNORECASE | re.MULTILINE)
_CONFIDENCE = re.compile(
    r"^[ \t>#*_]*confidence[ \t*_]*:[ \t*_]*\$?(?P<value>[+-]?\d+(?:\.\d+)?)[ \t]*"
    r"(?P<pct>\\?%|percent)?",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Verdict:
    """The judgement of one response.

    ``correct``: the extracted answer matches the reference. ``extracted_answer``: the final
    answer found in the response (``None`` when it has no answer line). ``confidence``: the
    stated confidence, an int in 0..100 (100 when absent). ``reason``: how it matched, or what
    differed. ``method``: which rule decided (``option``, ``text``, ``number``, ``math-verify``,
    ``none``; ``llm`` for the LLM judge).
    """

    correct: bool
    extracted_answer: str | None
    confidence: int
    reason: str
    method: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- extraction


def extract_answer(response: str) -> str | None:
    """The final answer of a response: the block after its last ``Answer:`` line.

    The block runs to the next ``Confidence:`` line or the end, so multi-line (display LaTeX)
    answers are kept whole. ``None`` when there is no answer line or it is empty.
    """
    if not isinstance(response, str):
        return None
    matches = list(_ANSWER_LINE.finditer(response))
    if not matches:
        return None
    last = matches[-1]
    tail = response[last.start("rest") :]
    stop = _CONFIDENCE_LINE.search(tail)
    block = tail[: stop.start()] if stop else tail
    block = block.strip().strip("*_").strip()
    return block or None


def extract_confidence(response: str, default: int = DEFAULT_CONFIDENCE) -> int:
    """The last ``Confidence: N%`` of a response as an int in 0..100 (``default`` when absent).

    A bare fraction (``Confidence: 0.85``, no percent sign) is read as 85%. Values are rounded
    half up and clamped to 0..100.
    """
    if not isinstance(response, str):
        return default
    matches = list(_CONFIDENCE.finditer(response))
    if not matches:
        return default
    last = matches[-1]
    value = Decimal(last.group("value"))
    if last.group("pct") is None and "." in last.group("value") and 0 <= value <= 1:
        value *= 100
    rounded = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return max(0, min(100, rounded))


# --------------------------------------------------------------------------- normalisation

_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|operatorname|mbox)\s*\{([^{}]*)\}")
_LATEX_SPACING = re.compile(r"\\(?:[,;:!> ]|quad|qquad|left|right|displaystyle)")
_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for left, right in _DELIMITERS:
            if (
                len(text) >= len(left) + len(right)
                and text.startswith(left)
                and text.endswith(right)
            ):
                text = text[len(left) : len(text) - len(right)].strip()
                changed = True
        if text.startswith("\\boxed{") and text.endswith("}"):
            text = text[len("\\boxed{") : -1].strip()
            changed = True
        if text.startswith("{") and text.endswith("}") and _balanced(text[1:-1]):
            text = text[1:-1].strip()
            changed = True
        stripped = text.rstrip(".").strip()
        if stripped != text:
            text, changed = stripped, True
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def normalize_text(text: str) -> str:
    """Text for comparison: NFKC, no markdown/math delimiters, no spacing, lower case."""
    text = unicodedata.normalize("NFKC", str(text))
    text = text.replace("**", "").replace("__", "").replace("`", "")
    text = _strip_math_delimiters(text)
    text = _LATEX_TEXT.sub(r"\1", text)
    text = _LATEX_SPACING.sub(" ", text)
    text = text.replace("$", "")
    text = _strip_math_delimiters(text)
    text = text.strip("\"'“”‘’ ").rstrip(".").strip()
    return re.sub(r"\s+", "", text).lower()


# --------------------------------------------------------------------------- multiple choice

_OPTION_PATTERNS = (
    re.compile(r"^\(?([A-Z])\)?$"),  # "B", "(B)", "B)"
    re.compile(r"^(?:option|choice|answer)?\s*\(?([A-Z])(?:[).:\]]|\s*[-:]\s)"),  # "B. text"
    re.compile(r"^(?:option|choice|answer)\s*\(?([A-Z])\)?\b", re.IGNORECASE),  # "Option B"
    # "The answer is B.", "Correct option is (B)": the letter itself must be upper case.
    re.compile(
        r"^(?i:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s+is)\s*:?\s*\(?([A-Z])\)?(?:[\s.,;:)]|$)"
    ),
    re.compile(r"^\(([a-z])\)"),  # "(b) text"
    re.compile(r"^([a-z])$"),  # "b"
)


def extract_option(text: str) -> str | None:
    """The option letter of a multiple-choice answer (``B``, ``(B)``, ``B. text``, ``Option B``)."""
    text = unicodedata.normalize("NFKC", str(text)).replace("**", "").replace("`", "")
    text = _strip_math_delimiters(_LATEX_TEXT.sub(r"\1", text)).strip()
    for pattern in _OPTION_PATTERNS:
        match = pattern.match(text)
        if match:
            return match.group(1).upper()
    return None


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"^(?P<num>[+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+\-−]?\.\d+)"
    r"(?:\s*(?:[eE]|\\times\s*10\^|×\s*10\^|\*\s*10\^|x\s*10\^)\s*\{?(?P<exp>[+\-−]?\d+)\}?)?"
    r"\s*(?P<unit>.*)$"
)


def parse_number(text: str) -> tuple[Decimal, str] | None:
    """A leading decimal number (thousands separators, scientific notation) and what follows it."""
    text = normalize_for_number(text)
    match = _NUMBER.match(text)
    if not match:
        return None
    digits = match.group("num").replace(",", "").replace("−", "-")
    try:
        value = Decimal(digits)
        if match.group("exp"):
            value = value.scaleb(int(match.group("exp").replace("−", "-")))
    except InvalidOperation:
        return None
    unit = match.group("unit").strip().rstrip(".").strip()
    return value, unit


def normalize_for_number(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)).replace("**", "")
    text = _strip_math_delimiters(text)
    text = _LATEX_TEXT.sub(r"\1", text)
    text = _LATEX_SPACING.sub(" ", text).replace("{,}", ",").replace("~", " ")
    return re.sub(r"\s+", " ", text).strip()


def _decimals(text: str) -> int:
    """Digits after the decimal point of the reference as written (``3.90`` -> 2)."""
    match = re.match(r"^[+\-−]?[\d,]*\.(\d+)", normalize_for_number(text))
    return len(match.group(1)) if match else 0


def _compare_numbers(answer: str, extracted: str, rel_tol: float) -> tuple[bool, str] | None:
    """Numeric comparison when both sides are numbers (with the same unit, or none given)."""
    gold, pred = parse_number(answer), parse_number(extracted)
    if gold is None or pred is None:
        return None
    (gold_value, gold_unit), (pred_value, pred_unit) = gold, pred
    # A unit-less reference followed by words ("12 apples") is text, not a number.
    if not _is_unit(gold_unit) or not _is_unit(pred_unit):
        return None
    if pred_unit and normalize_text(pred_unit) != normalize_text(gold_unit):
        return False, f"units differ: {pred_unit!r} vs {gold_unit!r}"
    unit_note = " (unit omitted)" if gold_unit and not pred_unit else ""
    if pred_value == gold_value:
        return True, f"same number {pred_value}{unit_note}"
    decimals = _decimals(answer)
    if decimals:
        quantum = Decimal(1).scaleb(-decimals)
        if pred_value.quantize(quantum, rounding=ROUND_HALF_UP) == gold_value:
            return (
                True,
                f"{pred_value} equals {gold_value} at the answer's {decimals} decimals{unit_note}",
            )
        if math.isclose(float(pred_value), float(gold_value), rel_tol=rel_tol):
            return True, f"{pred_value} within relative {rel_tol:g} of {gold_value}{unit_note}"
    return False, f"number {pred_value} != {gold_value}"


def _is_unit(text: str) -> bool:
    """Empty, or a short unit-like suffix (``cm``, ``mL``, ``%``, ``\\Omega``, ``m/s^2``)."""
    if not text:
        return True
    if not re.match(r"^(?:[A-Za-z%°µΩ\\])", text) or "," in text:
        return False
    words = re.findall(r"[A-Za-z]{2,}", text)
    return len(text) <= 12 and len(words) <= 2 and not any(len(w) > 5 for w in words)


# --------------------------------------------------------------------------- math-verify

# Function and constant names that may appear in a mathematical answer.
_MATH_WORDS = {
    "ln", "log", "exp", "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos",
    "arctan", "sinh", "cosh", "tanh", "sqrt", "frac", "dfrac", "tfrac", "pi", "infty", "inf",
    "lim", "sum", "prod", "int", "binom", "cdot", "times", "left", "right", "max", "min",
    "det", "mod", "gcd", "lcm", "deg", "le", "ge", "leq", "geq", "ne", "neq", "pm", "mp",
}  # fmt: skip


def looks_mathematical(answer: str) -> bool:
    """True for answers that math-verify may compare: digits, operators or LaTeX, few words.

    Plain words ("No", "Benin and Madagascar") are compared as text only: math-verify would read
    them as products of symbols, so "No" would equal "On".
    """
    text = normalize_for_number(answer)
    if not re.search(r"[\d\\^_=+\-*/()]", text):
        return False
    words = re.findall(r"(?<![\\\w])[^\W\d_]{3,}", _LATEX_TEXT.sub(" ", text))
    return all(w.lower() in _MATH_WORDS for w in words)


def _in_main_thread() -> bool:
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    return threading.current_thread() is threading.main_thread()


def _math_source(text: str) -> str:
    text = text.strip()
    if "$" in text or "\\[" in text or "\\(" in text or "\\boxed" in text:
        return text
    return f"${text}$"


@lru_cache(maxsize=4096)
def _parse_math(text: str, timeout: int | None) -> tuple:
    from math_verify import parse

    try:
        return tuple(parse(_math_source(text), parsing_timeout=timeout))
    except Exception:  # math-verify raises on pathological input; then it cannot decide
        logger.debug("math-verify could not parse %r", text, exc_info=True)
        return ()


def _compare_math(answer: str, extracted: str) -> tuple[bool, str] | None:
    if not (looks_mathematical(answer) and looks_mathematical(extracted)):
        return None
    from math_verify import verify

    timeout = MATH_VERIFY_TIMEOUT_S if _in_main_thread() else None
    gold = [g for g in _parse_math(answer, timeout) if not isinstance(g, str)]
    pred = [p for p in _parse_math(extracted, timeout) if not isinstance(p, str)]
    if not gold or not pred:
        return None
    try:
        same = verify(list(gold), list(pred), timeout_seconds=timeout)
    except Exception:
        logger.debug("math-verify failed on %r vs %r", extracted, answer, exc_info=True)
        return None
    if same:
        return True, f"math-verify: {pred[0]} is equivalent to {gold[0]}"
    return False, f"math-verify: {pred[0]} is not equivalent to {gold[0]}"


# --------------------------------------------------------------------------- the judge


def judge_response(
    response: str,
    answer: str,
    answer_type: str,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    use_math_verify: bool = True,
) -> Verdict:
    """Judge one HLE response against the reference ``answer`` (offline, deterministic).

    ``answer_type`` is ``multipleChoice`` (option letters are compared) or ``exactMatch``
    (normalised text, then numbers: equal, equal at the reference's decimals, or within
    ``rel_tol`` for non-integers; then math-verify for mathematical references). Never raises
    on model output; an unknown ``answer_type`` is a ``ValueError``.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {ANSWER_TYPES} (got {answer_type!r})")
    answer = str(answer)
    confidence = extract_confidence(response)
    extracted = extract_answer(response)
    if extracted is None:
        return Verdict(False, None, confidence, "no 'Answer:' line in the response", "none")

    if answer_type == "multipleChoice":
        gold_option = extract_option(answer)
        if gold_option is not None:
            option = extract_option(extracted)
            if option is None:
                return Verdict(
                    False,
                    extracted,
                    confidence,
                    f"no option letter in {extracted[:80]!r}",
                    "option",
                )
            if option == gold_option:
                return Verdict(True, extracted, confidence, f"option {option} matches", "option")
            return Verdict(
                False, extracted, confidence, f"option {option} != {gold_option}", "option"
            )
        # A reference that is not a letter falls through to the exact-match rules.

    gold_text, pred_text = normalize_text(answer), normalize_text(extracted)
    if pred_text and pred_text == gold_text:
        return Verdict(True, extracted, confidence, "normalised text matches", "text")

    # Two numbers (with compatible units or none) are decided here: math-verify would drop units.
    numeric = _compare_numbers(answer, extracted, rel_tol)
    if numeric is not None:
        return Verdict(numeric[0], extracted, confidence, numeric[1], "number")

    if use_math_verify:
        symbolic = _compare_math(answer, extracted)
        if symbolic is not None:
            return Verdict(symbolic[0], extracted, confidence, symbolic[1], "math-verify")

    return Verdict(
        False,
        extracted,
        confidence,
        f"{_clip(extracted)} differs from {_clip(answer)} (text)",
        "text",
    )


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")
