"""math-verify as the rules judge uses it: only on mathematics, always with a bound on its work.

math-verify's own timeouts use ``signal.alarm``, which works only in the main thread. In the main
thread every parse and comparison gets ``MATH_VERIFY_TIMEOUT_S`` seconds; off it (where no alarm
can fire) math-verify is given only inputs of bounded cost (at most
``OFF_MAIN_THREAD_MAX_CHARS`` characters a side, no exponent or factorial of three digits or more,
no power tower) and otherwise does not decide. Its "Timeout during ..." warnings are not printed:
a comparison that timed out simply does not decide.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

from hle_reasoning.hle.judge.answers import clean_latex, normalize_for_number

logger = logging.getLogger(__name__)

# Seconds math-verify may spend on one parse or comparison (huge powers can take forever).
MATH_VERIFY_TIMEOUT_S = 2
# Longer answers are not given to math-verify (its parser's cost grows quickly with length).
MATH_VERIFY_MAX_CHARS = 1000

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
    """Keeps math-verify's timeout warnings off the console: "Timeout during ..." (noted for the
    verdict, which then does not decide) and "Timeout is disabled ..." (this module bounds the
    work itself where the alarm cannot work)."""

    state = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Timeout during"):
            self.state.timed_out = True
            return False
        return not message.startswith("Timeout is disabled")


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


_PLAIN_NAMES = re.compile(
    r"(?<![\\A-Za-z])(sqrt|pi|ln|log|exp|sin|cos|tan|arcsin|arccos|arctan|sinh|cosh|tanh|infty"
    r"|alpha|beta|gamma|delta|theta|lambda|mu|sigma|omega|phi|max|min|gcd|lcm|det)(?![A-Za-z])"
)


def _latex_source(text: str) -> str:
    """LaTeX for math-verify: plain-text function and constant names as commands (``sqrt(3)/pi``
    -> ``\\sqrt(3)/\\pi``), which its LaTeX parser would otherwise read as products of letters."""
    text = _PLAIN_NAMES.sub(r"\\\1", clean_latex(text))
    return re.sub(r"\\sqrt\s*\(([^()]*)\)", r"\\sqrt{\1}", text)


def _lost_letters(text: str, parsed: list) -> bool:
    """math-verify read a number where the text has variables: it dropped part of the text
    (``1\\2\\sqrt{3+1/n^2}`` parses as 1), so its verdict would be about something else."""
    try:
        if any(getattr(p, "free_symbols", None) for p in parsed):
            return False
    except Exception:
        return True
    bare = re.sub(r"\\[A-Za-z]+", " ", text)
    return bool(re.search(r"[A-DF-HJ-Za-df-hj-z]", bare))


def math_verify(answer: str, extracted: str) -> tuple[bool, str] | None:
    gold_text, pred_text = _latex_source(answer), _latex_source(extracted)
    if not (looks_mathematical(gold_text) and looks_mathematical(pred_text)):
        return None
    if gold_text.count("'") != pred_text.count("'"):  # math-verify reads E' as E, f'(x) as f(x)
        return False, f"primes differ: {extracted[:80]!r} vs {answer[:80]!r}"
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
    if _lost_letters(gold_text, gold) or _lost_letters(pred_text, pred):
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
