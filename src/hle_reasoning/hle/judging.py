"""The offline ``rules`` judge: is a model's HLE response correct, and how confident was it?

HLE grades a response with an LLM judge (o3-mini) that reads the whole response, extracts the
final answer and the stated confidence ("Put 100 if there is no confidence score available") and
says whether the answer matches the reference "or is within a small margin of error for
numerical problems", and "no" for "any inconsistency, ambiguity, non-equivalency" (``JUDGE_PROMPT``
in hle_eval/run_judge_results.py of github.com/centerforaisafety/hle). This module is a
deterministic, offline stand-in for it:

* the final answer is the block after the last ``Answer:`` / ``Exact Answer:`` /
  ``Final Answer:`` line (up to the next ``Confidence:`` line);
* the confidence is the last ``Confidence: N%`` (100 when absent; clamped to 0..100);
* a hedged answer (``B or C``, ``B. Actually, C``, ``12 or 14``) is incorrect;
* multiple choice compares option letters; exact match compares normalised text, then numbers,
  integer expressions, tuples/lists/sets (:mod:`hle_reasoning.hle.answers`), then lets
  math-verify decide whenever both sides read as mathematics.

Every :class:`Verdict` says which rule decided (``method``) and why (``reason``).
``judge_response`` is also the correctness reward of GRPO training: it never raises on any
response or reference text.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from hle_reasoning.hle.answers import (
    clean_latex,
    compare_numbers,
    compare_sequences,
    eval_integer,
    normalize_for_number,
    normalize_text,
    strip_delimiters,
)
from hle_reasoning.hle.schema import ANSWER_TYPES

logger = logging.getLogger(__name__)

# The official judge's instruction for responses without a confidence.
DEFAULT_CONFIDENCE = 100
DEFAULT_REL_TOL = 1e-4
# Seconds math-verify may spend on one parse or comparison (huge powers can take forever).
MATH_VERIFY_TIMEOUT_S = 2
# Longer answers are not given to math-verify (its parser's cost grows quickly with length).
MATH_VERIFY_MAX_CHARS = 1000
# An extracted answer longer than this (and than 20x the reference) is not compared at all.
MAX_ANSWER_CHARS = 20_000

__all__ = [
    "ANSWER_TYPES",
    "Verdict",
    "extract_answer",
    "extract_confidence",
    "extract_option",
    "judge_response",
    "looks_mathematical",
    "normalize_text",
]

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
    differed. ``method``: which rule decided (``option``, ``hedge``, ``text``, ``number``,
    ``integer``, ``sequence``, ``math-verify``, ``none``; ``llm`` for the LLM judge).
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
    last = None
    for last in _ANSWER_LINE.finditer(response):  # noqa: B007 - the last match is wanted
        pass
    if last is None:
        return None
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
    last = None
    for last in _CONFIDENCE.finditer(response):  # noqa: B007 - the last match is wanted
        pass
    if last is None:
        return default
    value = Decimal(last.group("value"))
    if last.group("pct") is None and "." in last.group("value") and 0 <= value <= 1:
        value *= 100
    value = max(Decimal(0), min(Decimal(100), value))  # clamp first: 10**6 digits cannot round
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------- hedges

# Words that offer another answer or take the first one back.
_HEDGE_WORDS = re.compile(
    r"\b(?:or|actually|alternatively|either|possibly|perhaps|maybe)\b", re.IGNORECASE
)
_OPTION_PAIR = re.compile(
    r"^\(?([A-Z])\)?\s*(?:,|/|&|\bor\b|\band\b)\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE
)
_OPTION_CORRECTION = re.compile(
    r"\b(?:actually|instead|rather|alternatively|possibly|perhaps|maybe|wait|correction)\b"
    r"[\s,:;.!-]*(?:(?:it\s+is|it's|no|option|choice|answer)[\s,:;.!-]+){0,3}\(?([A-Z])\)?(?![A-Za-z])",
    re.IGNORECASE,
)


def hedged_option(text: str) -> str | None:
    """Why a multiple-choice answer names two options (``B or C``, ``B. Actually, C``), or None."""
    text = clean_latex(text)
    first = extract_option(text)
    pair = _OPTION_PAIR.match(text)
    if pair and pair.group(1).upper() != pair.group(2).upper():
        return f"hedged between options {pair.group(1).upper()} and {pair.group(2).upper()}"
    for match in _OPTION_CORRECTION.finditer(text):
        if first is not None and match.group(1) != first and match.group(1).isupper():
            return f"names option {first}, then option {match.group(1)}"
    return None


def hedged_answer(answer: str, extracted: str) -> str | None:
    """Why an exact-match answer offers alternatives (``12 or 14``), or None.

    Only words the reference does not itself contain count (a reference ``A or B`` is an answer).
    """
    gold_words = {w.lower() for w in _HEDGE_WORDS.findall(clean_latex(answer))}
    for word in _HEDGE_WORDS.findall(clean_latex(extracted)):
        if word.lower() not in gold_words:
            return f"hedged answer ({word!r} offers an alternative)"
    return None


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
    text = clean_latex(text).strip()
    for pattern in _OPTION_PATTERNS:
        match = pattern.match(text)
        if match:
            return match.group(1).upper()
    return None


# --------------------------------------------------------------------------- answer forms

_PROSE_LEAD = re.compile(
    r"^(?:(?!not\b|never\b|no\b)[A-Za-z][A-Za-z'-]*\s+){1,6}(?:is|are|equals|=|:)\s*:?\s*",
    re.IGNORECASE,
)
_MATH_UNIT = re.compile(
    r"^(?:\$[^$]+\$|\\\((?:(?!\\\)).)+\\\)|\\\[(?:(?!\\\]).)+\\\])[.\s]*$", re.DOTALL
)
_NAME_EQUALS = re.compile(
    r"^[A-Za-z\\][\w\\{}^]{0,19}(?:\([^()=]{0,20}\))?\s*=\s*(?P<value>[^=]+)$"
)
_APPROX = re.compile(r"^(?P<value>.+?)\s*(?:\\approx|≈|\\simeq)\s*[^=≈]+$", re.DOTALL)


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i]
    return None


def answer_form(answer: str, extracted: str) -> tuple[str, list[str]]:
    """The extracted answer without what does not change its value, and what was removed:
    prose around it (``the value is $\\boxed{7\\sqrt 3}$``), a leading ``name =``, a trailing
    ``\\approx 1.414`` (each only when the reference has none of it)."""
    form, notes = extracted.strip(), []
    boxed = _last_boxed(form)
    if boxed is not None and "\\boxed" not in answer:
        form, notes = boxed.strip(), ["\\boxed"]
    lead = _PROSE_LEAD.match(form)
    if lead and _MATH_UNIT.match(form[lead.end() :]) and not _PROSE_LEAD.match(answer):
        form = form[lead.end() :].strip()
        notes.append("prose")
    cleaned = clean_latex(form)
    named = _NAME_EQUALS.match(cleaned)
    if named and "=" not in answer:
        cleaned = named.group("value").strip()
        notes.append("name =")
    approx = _APPROX.match(cleaned)
    if approx and not re.search(r"\\approx|≈|\\simeq", answer):
        cleaned = approx.group("value").strip()
        notes.append("approximation")
    return (cleaned if notes else form), notes


# --------------------------------------------------------------------------- math-verify

# Function and constant names that may appear in a mathematical answer.
_MATH_WORDS = {
    "ln", "log", "lg", "exp", "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos",
    "arctan", "sinh", "cosh", "tanh", "sqrt", "frac", "pi", "infty", "inf", "lim", "sum",
    "prod", "int", "binom", "cdot", "times", "max", "min", "det", "mod", "gcd", "lcm", "deg",
    "pm", "mp", "begin", "end", "matrix", "cup", "cap", "to", "in", "mathcal", "vec", "hat",
    "bar", "alpha", "beta", "gamma", "delta", "epsilon", "theta", "lambda", "mu", "sigma",
    "omega", "phi", "psi", "rho", "tau", "zeta", "eta", "nu", "xi", "chi", "kappa", "iota",
}  # fmt: skip


def looks_mathematical(answer: str) -> bool:
    """True for answers math-verify may read: no word of two or more letters but mathematical
    names (``\\ln``, ``\\sqrt``, ``\\pi``, ...). Plain words ("No", "Benin and Madagascar") stay
    text: math-verify would read them as products of symbols, so "No" would equal "On"."""
    text = normalize_for_number(answer)
    if not text.strip():
        return False
    words = re.findall(r"(?<![\w])\\?[^\W\d_]{2,}", text)
    return all(w.lstrip("\\").lower() in _MATH_WORDS for w in words)


class _TimeoutNote(logging.Filter):
    """Notes math-verify's "Timeout during ..." warnings for the verdict instead of printing them."""

    state = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Timeout during"):
            self.state.timed_out = True
            return False
        return True


for _name in ("math_verify.grader", "math_verify.parser"):
    logging.getLogger(_name).addFilter(_TimeoutNote())

# Off the main thread math-verify has no timeout (signal.alarm), so only inputs of bounded cost
# go to it there: no exponent or factorial of three digits or more, no power tower.
_COSTLY = re.compile(r"\^\s*\{?\s*[+-]?\d{3,}|\^\s*\{[^{}]*\^|\d{3,}\s*!|!\s*!|\d{40,}")
OFF_MAIN_THREAD_MAX_CHARS = 200


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@lru_cache(maxsize=4096)
def _parse_math(text: str, timeout: int | None) -> tuple:
    from math_verify import parse

    try:
        return tuple(parse(f"${text}$", parsing_timeout=timeout))
    except Exception:  # math-verify raises on pathological input; then it cannot decide
        logger.debug("math-verify could not parse %r", text, exc_info=True)
        return ()


def _math_verify(answer: str, extracted: str) -> tuple[bool, str] | None:
    gold_text, pred_text = clean_latex(answer), clean_latex(extracted)
    if not (looks_mathematical(gold_text) and looks_mathematical(pred_text)):
        return None
    longest = max(len(gold_text), len(pred_text))
    timeout: int | None = MATH_VERIFY_TIMEOUT_S
    if not _in_main_thread():
        timeout = None
        if longest > OFF_MAIN_THREAD_MAX_CHARS or _COSTLY.search(gold_text + " " + pred_text):
            return None
    if longest > MATH_VERIFY_MAX_CHARS:
        return None
    from math_verify import verify

    _TimeoutNote.state.timed_out = False
    gold = [g for g in _parse_math(gold_text, timeout) if not isinstance(g, str)]
    pred = [p for p in _parse_math(pred_text, timeout) if not isinstance(p, str)]
    if not gold or not pred:
        return None
    try:
        same = verify(gold, pred, timeout_seconds=timeout)
    except Exception:
        logger.debug("math-verify failed on %r vs %r", extracted, answer, exc_info=True)
        return None
    if getattr(_TimeoutNote.state, "timed_out", False):
        return None  # it gave up: not a verdict
    try:
        shown = (str(pred[0])[:80], str(gold[0])[:80])
    except Exception:  # printing a pathological sympy object can fail too
        shown = (extracted[:80], answer[:80])
    if same:
        return True, f"math-verify: {shown[0]} is equivalent to {shown[1]}"
    return False, f"math-verify: {shown[0]} is not equivalent to {shown[1]}"


# --------------------------------------------------------------------------- the judge


def _same_value(answer: str, extracted: str, rel_tol: float, use_math_verify: bool) -> bool:
    """One element of a tuple/list/set against the reference's: any rule but sequences."""
    if normalize_text(answer) == normalize_text(extracted):
        return True
    numeric = compare_numbers(answer, extracted, rel_tol)
    if numeric is not None:
        return numeric[0]
    gold_int, pred_int = eval_integer(answer), eval_integer(extracted)
    if gold_int is not None and pred_int is not None:
        return gold_int == pred_int
    symbolic = _math_verify(answer, extracted) if use_math_verify else None
    return bool(symbolic and symbolic[0])


def _exact_match(
    answer: str, extracted: str, rel_tol: float, use_math_verify: bool
) -> tuple[bool, str, str]:
    if normalize_text(extracted) == normalize_text(answer):
        return True, "normalised text matches", "text"
    hedge = hedged_answer(answer, extracted)
    if hedge:
        return False, hedge, "hedge"
    form, notes = answer_form(answer, extracted)
    after = f" (without its {', '.join(notes)})" if notes else ""
    if notes and normalize_text(form) == normalize_text(answer):
        return True, f"normalised text matches{after}", "text"
    # Two numbers (with compatible units or none) are decided here: math-verify would drop units.
    numeric = compare_numbers(answer, form, rel_tol)
    if numeric is not None:
        return numeric[0], numeric[1] + after, "number"
    gold_int, pred_int = eval_integer(answer), eval_integer(form)
    if gold_int is not None and pred_int is not None:
        if gold_int == pred_int:
            return True, f"integer expressions both equal {_short(gold_int)}{after}", "integer"
        return False, f"integer {_short(pred_int)} != {_short(gold_int)}", "integer"
    sequence = compare_sequences(
        answer, form, lambda g, p: _same_value(g, p, rel_tol, use_math_verify)
    )
    if sequence is not None:
        return sequence[0], sequence[1] + after, "sequence"
    if use_math_verify:
        symbolic = _math_verify(answer, form)
        if symbolic is not None:
            return symbolic[0], symbolic[1] + after, "math-verify"
    return False, f"{_clip(extracted)} differs from {_clip(answer)} (text)", "text"


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
    (normalised text, then numbers: equal, equal at the reference's precision, or within
    ``rel_tol`` for non-integers; integer expressions; tuples, lists and sets; then
    math-verify). A hedged answer is incorrect. Never raises on any response or reference; an
    unknown ``answer_type`` is a ``ValueError``.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {ANSWER_TYPES} (got {answer_type!r})")
    answer = unicodedata.normalize("NFC", str(answer))
    confidence = extract_confidence(response)
    extracted = extract_answer(response)
    if extracted is None:
        return Verdict(False, None, confidence, "no 'Answer:' line in the response", "none")
    if len(extracted) > max(MAX_ANSWER_CHARS, 20 * len(answer)):
        reason = f"an answer of {len(extracted):,} characters is not a final answer"
        return Verdict(False, extracted, confidence, reason, "text")

    if answer_type == "multipleChoice":
        gold_option = extract_option(answer)
        if gold_option is not None:
            hedge = hedged_option(extracted)
            if hedge:
                return Verdict(False, extracted, confidence, hedge, "hedge")
            option = extract_option(strip_delimiters(extracted))
            if option is None:
                reason = f"no option letter in {_clip(extracted)}"
                return Verdict(False, extracted, confidence, reason, "option")
            if option == gold_option:
                return Verdict(True, extracted, confidence, f"option {option} matches", "option")
            reason = f"option {option} != {gold_option}"
            return Verdict(False, extracted, confidence, reason, "option")
        # A reference that is not a letter falls through to the exact-match rules.

    correct, reason, method = _exact_match(answer, extracted, rel_tol, use_math_verify)
    return Verdict(correct, extracted, confidence, _clip_reason(reason), method)


def _short(value: int) -> str:
    if value.bit_length() > 3000:  # str() of a huge int is slow, and limited by Python
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    text = str(value)
    return text if len(text) <= 40 else f"{text[:18]}...{text[-18:]}"


def _clip_reason(reason: str, width: int = 300) -> str:
    return reason if len(reason) <= width else reason[: width - 3] + "..."


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(str(text)[: width * 4].split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")
