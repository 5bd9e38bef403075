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
  integer expressions, tuples/lists/sets (:mod:`hle_reasoning.hle.judge.answers`, :mod:`hle_reasoning.hle.judge.integers`), then lets
  math-verify decide whenever both sides read as mathematics.

Every :class:`Verdict` says which rule decided (``method``) and why (``reason``).
``judge_response`` is also the correctness reward of GRPO training: it never raises on any
response or reference text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hle_reasoning.hle.data.schema import ANSWER_TYPES
from hle_reasoning.hle.judge.answers import (
    clean_latex,
    compare_numbers,
    compare_sequences,
    normalize_text,
    parse_number,
    strip_delimiters,
)
from hle_reasoning.hle.judge.forms import (
    answer_form,
    matrix_cells,
    mixed_number,
    named_value,
    reference_values,
    text_unit,
)
from hle_reasoning.hle.judge.integers import eval_integer
from hle_reasoning.hle.judge.symbolic import looks_mathematical, math_verify

logger = logging.getLogger(__name__)

# The official judge's instruction for responses without a confidence.
DEFAULT_CONFIDENCE = 100
DEFAULT_REL_TOL = 1e-4
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
    ``integer``, ``sequence``, ``matrix``, ``math-verify``, ``none``; ``llm`` for the LLM judge).
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
    lead = re.match(r"^\(?([A-Z])\)?(?![A-Za-z])", text)
    first = extract_option(text) or (lead.group(1) if lead else None)
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

# --------------------------------------------------------------------------- the judge


def _same_value(answer: str, extracted: str, rel_tol: float, use_math_verify: bool) -> bool:
    """One element of a tuple/list/set/matrix against the reference's: any rule but sequences
    (``AB=4`` against ``4``: the value after a name on one side only)."""
    if "=" not in extracted:
        answer = named_value(answer) or answer
    if "=" not in answer:
        extracted = named_value(extracted) or extracted
    if normalize_text(answer) == normalize_text(extracted):
        return True
    numeric = compare_numbers(answer, extracted, rel_tol)
    if numeric is not None:
        return numeric[0]
    gold_int, pred_int = eval_integer(answer), eval_integer(extracted)
    if gold_int is not None and pred_int is not None:
        return gold_int == pred_int
    symbolic = math_verify(answer, extracted) if use_math_verify else None
    return bool(symbolic and symbolic[0])


def _plain_unit(text: str) -> str:
    """The unit written after a number (``125 miles``, ``125 m``), or "". After another value
    (``\\frac{1}{3} m``) the words stay in the text, which no rule then matches to a bare value."""
    parsed = parse_number(text)
    if parsed is not None and re.fullmatch(r"[A-Za-zµΩ°][\w/^°.\s-]*", parsed[1]):
        return parsed[1]
    return ""


def _without_unit(text: str, unit: str) -> str:
    cleaned = clean_latex(text).rstrip(".").rstrip()
    return cleaned[: len(cleaned) - len(unit)].strip() if unit else text


def _text_units(
    answer: str, form: str, after: str, rel_tol: float, use_math_verify: bool
) -> tuple[bool, str, str] | None:
    """A unit in ``\\text{}`` on either side: the same unit (or none on one side) and the same
    value; a different unit on the other side, written in any way, is a different answer."""
    gold, pred = text_unit(answer), text_unit(form)
    if gold is None and pred is None:
        return None
    gold_unit = gold[1] if gold else _plain_unit(answer)
    pred_unit = pred[1] if pred else _plain_unit(form)
    if gold_unit and pred_unit and normalize_text(gold_unit) != normalize_text(pred_unit):
        return False, f"units differ: {pred_unit!r} vs {gold_unit!r}", "number"
    gold_value = gold[0] if gold else _without_unit(answer, gold_unit)
    pred_value = pred[0] if pred else _without_unit(form, pred_unit)
    note = " (unit omitted)" if not pred_unit else " (unit added)" if not gold_unit else ""
    return _decide(gold_value, pred_value, note + after, rel_tol, use_math_verify)


def _same_matrix(
    answer: str, form: str, rel_tol: float, use_math_verify: bool
) -> tuple[bool, str] | None:
    gold, pred = matrix_cells(answer), matrix_cells(form)
    if gold is None or pred is None:
        return None
    if [len(row) for row in gold] != [len(row) for row in pred]:
        return False, "matrices of different shapes"
    for i, (g_row, p_row) in enumerate(zip(gold, pred, strict=True)):
        for j, (g, p) in enumerate(zip(g_row, p_row, strict=True)):
            if not _same_value(g, p, rel_tol, use_math_verify):
                return False, f"matrix entry ({i + 1}, {j + 1}): {_clip(p)} differs from {_clip(g)}"
    return True, f"the same {len(gold)}-row matrix, entry by entry"


def _decide(
    answer: str, form: str, after: str, rel_tol: float, use_math_verify: bool
) -> tuple[bool, str, str]:
    """The value rules on the answer's form: text, units, numbers, integer expressions,
    sequences, matrices, then math-verify (a mixed number read as its improper fraction)."""
    if normalize_text(form) == normalize_text(answer):
        return True, f"normalised text matches{after}", "text"
    mixed_gold, mixed_pred = mixed_number(answer), mixed_number(form)
    if mixed_gold or mixed_pred:
        answer, form = mixed_gold or answer, mixed_pred or form
        after = " (a mixed number as a fraction)" + after
    units = _text_units(answer, form, after, rel_tol, use_math_verify)
    if units is not None:
        return units
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
    matrix = _same_matrix(answer, form, rel_tol, use_math_verify)
    if matrix is not None:
        return matrix[0], matrix[1] + after, "matrix"
    if use_math_verify:
        symbolic = math_verify(answer, form)
        if symbolic is not None:
            return symbolic[0], symbolic[1] + after, "math-verify"
    return False, f"{_clip(form)} differs from {_clip(answer)} (text)", "text"


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
    verdict = _decide(answer, form, after, rel_tol, use_math_verify)
    if verdict[0]:
        return verdict
    for value, how in reference_values(answer):
        other = _decide(value, form, after, rel_tol, use_math_verify)
        if other[0]:
            return True, f"{other[1]} (against the reference's {how})", other[2]
    if verdict[2] == "text":  # no rule could read it: the extracted text as it was written
        return False, f"{_clip(extracted)} differs from {_clip(answer)} (text)", "text"
    return verdict


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
