"""Answer forms the rules judge compares: normalised text, numbers, integer expressions, sequences.

Every function here is total on any string (huge or tiny magnitudes, malformed LaTeX, any
unicode): it returns a value or ``None`` ("this rule cannot decide"), never raises. Each rule is
general (a form of writing, never an answer seen in a data set) and errs towards rejecting: a
rule that accepts a wrong answer is worse than none.
"""

from __future__ import annotations

import decimal
import re
import unicodedata
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

# Decimal arithmetic with any exponent; precision is raised per operation where exactness matters.
_CONTEXT = decimal.Context(prec=60, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
# Beyond this many digits a rounding is not attempted (the numbers are then simply unequal).
MAX_DIGITS = 10_000
# Wrappings (``$``, braces, ``\\boxed``) removed from around an answer at most (deeper is garbage).
MAX_WRAPPINGS = 20

# ---------------------------------------------------------------------------- text

_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱ", "0123456789+-=()ni", strict=True))
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓₕₖₗₘₙₚₛₜ", "0123456789+-=()aeoxhklmnpst", strict=True))
_SCRIPT_RUN = re.compile(f"[{''.join(_SUPERSCRIPTS)}]+|[{''.join(_SUBSCRIPTS)}]+")
# Wrappers that do not change the value: their argument is kept.
_WRAPPERS = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|textup|textsl|emph|mathrm|mathbf|"
    r"mathsf|mathbb|mathit|mathtt|mathnormal|mathcal|mathfrak|mathscr|boldsymbol|bm|operatorname|"
    r"mbox|hbox)\s*\{([^{}]*)\}"
)
_SCRIPT_TEXT = re.compile(r"\\text(sub|super)script\s*\{([^{}]*)\}")
_SPACING = re.compile(  # never the second backslash of a row break (``\\``)
    r"(?<!\\)\\(?:[,;:!> ]|quad|qquad|left|right|displaystyle|big|Big|bigg|Bigg)(?![a-zA-Z])"
)
_RELATIONS = (
    (re.compile(r"\\(?:geq|ge|geqslant|geqq)(?![a-zA-Z])|≥"), ">="),
    (re.compile(r"\\(?:leq|le|leqslant|leqq)(?![a-zA-Z])|≤"), "<="),
    (re.compile(r"\\(?:neq|ne)(?![a-zA-Z])|\\not\s*=|≠"), "!="),
    (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
)
_MATRIX_BEGIN = re.compile(r"\\begin\{(?:[pbBvV]?matrix|array)\}(?:\{[lcr|\s]*\})?")
_MATRIX_END = re.compile(r"\\end\{(?:[pbBvV]?matrix|array)\}")
_MATRIX_BRACKETS = re.compile(r"[(\[]\s*(\\begin\{matrix\}.*?\\end\{matrix\})\s*[)\]]", re.DOTALL)
# Markdown bold/underline around text (never a ``**`` power between digits).
_BOLD = re.compile(r"(?<![\w)}])(?:\*\*|__)(?=\S)(.+?)(?<=\S)(?:\*\*|__)(?![\w({])", re.DOTALL)
_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
# A prime in any spelling (``E'``, ``E^\prime``, ``E^{\prime\prime}``, ``E′``) is written ``'``.
_PRIMES = re.compile(r"\^\s*\{\s*((?:\\prime\s*)+)\}|\^\s*(\\prime)|\\prime(?![a-zA-Z])|′")
# A currency ``\$`` before a number is its unit, written after it (``\$1,000`` -> ``1,000 USD``).
_CURRENCY = re.compile(r"\\\$\s*([+\-]?(?:\d|[.,](?=\d)|,\\!|\{,\})+)")
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’"}


def _scripts(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        run = match.group(0)
        table, mark = (_SUPERSCRIPTS, "^") if run[0] in _SUPERSCRIPTS else (_SUBSCRIPTS, "_")
        body = "".join(table[c] for c in run)
        return f"{mark}{body}" if len(body) == 1 else f"{mark}{{{body}}}"

    return _SCRIPT_RUN.sub(replace, text)


def strip_delimiters(text: str) -> str:
    """Without enclosing ``$ $``, ``\\( \\)``, ``\\[ \\]``, ``\\boxed{}``, braces and a final period."""
    text = text.strip()
    changed, rounds = True, 0
    while changed and text and rounds < MAX_WRAPPINGS:
        changed, rounds = False, rounds + 1
        for left, right in _DELIMITERS:
            if (
                len(text) >= len(left) + len(right)
                and text.startswith(left)
                and text.endswith(right)
            ):
                text = text[len(left) : len(text) - len(right)].strip()
                changed = True
        for left in ("\\boxed{", "{"):
            if text.startswith(left) and text.endswith("}") and _balanced(text[len(left) : -1]):
                text = text[len(left) : -1].strip()
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


def clean_latex(text: str) -> str:
    """The value-preserving rewrites shared by every rule (NFKC, scripts, wrappers, relations)."""
    text = _scripts(str(text))
    text = unicodedata.normalize("NFKC", text)
    text = _PRIMES.sub(_primes, text)
    text = _BOLD.sub(r"\1", text).replace("`", "")
    text = strip_delimiters(text)
    text = _SCRIPT_TEXT.sub(lambda m: ("_" if m.group(1) == "sub" else "^") + m.group(2), text)
    for _ in range(3):  # nested wrappers (\text{\mathrm{x}}), a bounded number of times
        text = _WRAPPERS.sub(r"\1", text)
    text = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", text)
    text = _CURRENCY.sub(r"\1 USD", text).replace("\\$", " USD ")
    text = _SPACING.sub(" ", text)
    for pattern, relation in _RELATIONS:
        text = pattern.sub(relation, text)
    text = _MATRIX_END.sub(r"\\end{matrix}", _MATRIX_BEGIN.sub(r"\\begin{matrix}", text))
    text = _MATRIX_BRACKETS.sub(r"\1", text)
    text = re.sub(r"([\^_])\{(\w)\}", r"\1\2", text)
    return strip_delimiters(text.replace("$", ""))


def _primes(match: re.Match[str]) -> str:
    if match.group(1):
        return "'" * match.group(1).count("\\prime")
    return "'"


def normalize_text(text: str) -> str:
    """Text for comparison: :func:`clean_latex`, no enclosing quotes or spacing, lower case.

    Only a pair of quotes around the whole is removed: a lone trailing ``'`` is a prime
    (``E'`` is not ``E``)."""
    text = clean_latex(text).strip()
    for _ in range(MAX_WRAPPINGS):
        if len(text) < 2 or _QUOTES.get(text[0]) != text[-1]:
            break
        text = text[1:-1].strip()
    text = text.rstrip(".").strip()
    return re.sub(r"\s+", "", text).lower()


# ---------------------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"^(?P<num>[+\-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+\-]?\.\d+)"
    r"(?:\s*(?:[eE]|(?:\\times|\\cdot|×|\*|x)\s*10\s*\^)\s*\{?(?P<exp>[+\-]?\d{1,18})\}?)?"
    r"\s*(?P<unit>.*)$",
    re.DOTALL,
)
# One-letter units (SI symbols); any other single letter is a variable, not a unit.
_ONE_LETTER_UNITS = set("mgsKAVWJNLCFTHΩ")
_LATEX_UNITS = {"\\%", "\\Omega", "\\mu", "\\circ", "\\degree", "\\AA", "\\ohm", "\\celsius"}


def normalize_for_number(text: str) -> str:
    text = str(text).replace("{,}", ",").replace(",\\!", ",")
    text = clean_latex(text)
    text = text.replace("~", " ").replace("−", "-")
    text = re.sub(r"(?<=\d) (?=\d{3}(?!\d))", "", text)  # a thin space between digit groups
    text = text.replace("\\%", "%").replace("percent", "%")
    text = re.sub(r"(?<=[\d}])\s*pct(?![A-Za-z])", "%", text)
    return re.sub(r"\s+", " ", text).strip()


def parse_number(text: str) -> tuple[Decimal, str, int | None] | None:
    """A leading number, what follows it (its unit), and its significant figures when written in
    scientific notation (``3.20E+21`` -> 3); ``None`` when the text does not start with one."""
    match = _NUMBER.match(normalize_for_number(text))
    if not match:
        return None
    mantissa = match.group("num").replace(",", "")
    try:
        value = Decimal(mantissa)
        if match.group("exp"):
            value = value.scaleb(int(match.group("exp")), context=_CONTEXT)
    except (decimal.DecimalException, ValueError):
        return None
    if not value.is_finite():
        return None
    sig = len(mantissa.lstrip("+-").replace(".", "").lstrip("0")) if match.group("exp") else None
    return value, match.group("unit").strip().rstrip(".").strip(), sig or None


def decimals(text: str) -> int:
    """Digits after the decimal point of a plain (not scientific) number (``3.90`` -> 2)."""
    match = re.match(
        r"^[+\-]?[\d,]*\.(\d+)(?!\d)(?!\s*(?:[eE]|\\times|\\cdot|×))", normalize_for_number(text)
    )
    return len(match.group(1)) if match else 0


def is_unit(text: str) -> bool:
    """Empty, or a short unit-like suffix (``cm``, ``mL``, ``%``, ``\\Omega``, ``m/s^2``, ``K``).

    LaTeX mathematics after a number (``2\\sqrt{7}``) and one-letter variables (``2x``) are not
    units: the number alone would otherwise match them.
    """
    if not text:
        return True
    text = re.sub(r"\^\{?(-?\d)\}?", r"^\1", text)  # L^{-1} as L^-1
    if text in {"%", "°", "°C", "°F"} or text in _LATEX_UNITS:
        return True
    if "{" in text or "," in text or "=" in text:
        return False
    commands = re.findall(r"\\[a-zA-Z]+|\\.", text)
    if any(c not in _LATEX_UNITS for c in commands):
        return False
    if not re.match(r"^(?:[A-Za-z%°µΩ\\])", text):
        return False
    letters = re.sub(r"[^A-Za-zµΩ]", "", text)
    if len(letters) == 1 and letters not in _ONE_LETTER_UNITS:
        return False
    words = re.findall(r"[A-Za-z]{2,}", text)
    return len(text) <= 12 and len(words) <= 2 and not any(len(w) > 5 for w in words)


def _round(value: Decimal, quantum_exp: int) -> Decimal | None:
    """``value`` rounded half up to a multiple of 10**quantum_exp (None when absurdly long)."""
    digits = value.adjusted() - quantum_exp + 2
    if digits > MAX_DIGITS:
        return None
    context = _CONTEXT.copy()
    context.prec = max(28, digits)
    try:
        return value.quantize(
            Decimal(1).scaleb(quantum_exp), rounding=ROUND_HALF_UP, context=context
        )
    except decimal.DecimalException:
        return None


def _same_at_precision(pred: Decimal, gold: Decimal, quantum_exp: int) -> bool:
    if not pred.is_zero() and not gold.is_zero() and abs(pred.adjusted() - gold.adjusted()) > 1:
        return False  # an order of magnitude apart: no rounding makes them equal
    rounded = _round(pred, quantum_exp)
    return rounded is not None and rounded == gold


def _rounded_itself(value: Decimal, places: int) -> bool:
    """A reference that is itself a rounded magnitude (a decimal, or an integer ending in three
    zeros or more, ``3,198,412,000,...``), not an exact count such as ``1234567``."""
    if places or value != value.to_integral_value(context=_CONTEXT):
        return True
    digits = str(abs(value.to_integral_value(context=_CONTEXT)).normalize(context=_CONTEXT))
    if "E" in digits:  # normalize() writes trailing zeros as an exponent
        return int(digits.split("E")[1]) >= 3
    return False


def _close(pred: Decimal, gold: Decimal, rel_tol: float) -> bool:
    try:
        return abs(pred - gold) <= Decimal(repr(rel_tol)) * abs(gold)
    except decimal.DecimalException:
        return False


def compare_numbers(answer: str, extracted: str, rel_tol: float) -> tuple[bool, str] | None:
    """Two numbers with compatible units (or none given): equal, equal at the reference's
    precision (its decimals, or its significant figures in scientific notation), equal to a
    scientific-notation response of at least 3 significant figures at that precision (unless the
    reference is an exact integer, such as a count), or within
    ``rel_tol`` for non-integers; ``%`` is a unit worth 1/100. ``None``: not two numbers."""
    gold, pred = parse_number(answer), parse_number(extracted)
    if gold is None or pred is None:
        return None
    (gold_value, gold_unit, gold_sig), (pred_value, pred_unit, pred_sig) = gold, pred
    if not is_unit(gold_unit) or not is_unit(pred_unit):
        return None
    candidates = [(pred_value, "")]
    if gold_unit == "%" and not pred_unit:
        candidates.append((pred_value.scaleb(2, context=_CONTEXT), " (as a percentage)"))
    elif pred_unit == "%" and not gold_unit:
        candidates = [(pred_value.scaleb(-2, context=_CONTEXT), " (as a fraction)")]
        candidates.append((pred_value, " (with a percent sign)"))
    elif pred_unit and gold_unit and normalize_text(pred_unit) != normalize_text(gold_unit):
        return False, f"units differ: {pred_unit!r} vs {gold_unit!r}"
    note = " (unit omitted)" if gold_unit and not pred_unit and len(candidates) == 1 else ""
    note = note or (" (unit added)" if pred_unit and not gold_unit and pred_unit != "%" else "")
    places = decimals(answer)
    for value, how in candidates:
        if value == gold_value:
            return True, f"same number {value}{how}{note}"
        if places and _same_at_precision(value, gold_value, -places):
            return True, f"{value}{how} equals {gold_value} at the answer's {places} decimals{note}"
        if gold_sig and _same_at_precision(value, gold_value, gold_value.adjusted() - gold_sig + 1):
            return (
                True,
                f"{value}{how} equals {gold_value} at the answer's {gold_sig} significant figures{note}",
            )
        if (
            pred_sig
            and pred_sig >= 3
            and not how
            and _rounded_itself(gold_value, places)
            and _same_at_precision(gold_value, value, value.adjusted() - pred_sig + 1)
        ):
            return True, f"{gold_value} rounds to {value} ({pred_sig} significant figures){note}"
        non_integer = (
            places or gold_sig or gold_value != gold_value.to_integral_value(context=_CONTEXT)
        )
        if non_integer and _close(value, gold_value, rel_tol):
            return True, f"{value}{how} within relative {rel_tol:g} of {gold_value}{note}"
    return False, f"number {pred_value} != {gold_value}"


# ---------------------------------------------------------------------------- sequences


# "1 and 2", "1, 2, and 3": an enumeration of values (never of words, which stay text).
_AND = re.compile(r"\s*,?\s+and\s+")


def _enumeration(text: str) -> str | None:
    parts = _AND.split(text)
    if len(parts) < 2 or any(re.search(r"(?<!\\)[A-Za-z]{2,}", p) or not p for p in parts):
        return None
    return ", ".join(parts)


def split_sequence(text: str) -> tuple[bool, list[str]] | None:
    """A tuple, list or set as (``is_set``, elements): brackets ``() [] {} \\{\\} ⟨⟩`` or none,
    elements separated by ``,``, ``;`` or ``:`` at the top level; ``None`` for fewer than 2.
    Values joined by "and" (``1 and 2``, ``6 \\text{ and } 8``) are an enumeration: a set."""
    raw = re.sub(r"\$|\\\(|\\\)|\\left|\\right", "", str(text)).strip()
    braced = raw.startswith(("{", "\\{")) and raw.endswith("}")
    text = clean_latex(text)
    enumeration = _enumeration(text)
    text = (enumeration or text).replace("\\{", "\x01").replace("\\}", "\x02")
    text = text.replace("\\langle", "⟨").replace("\\rangle", "⟩")
    is_set = False
    pairs = {"(": ")", "[": "]", "⟨": "⟩", "\x01": "\x02", "{": "}"}
    if len(text) >= 2 and text[0] in pairs and text[-1] == pairs[text[0]]:
        inner = text[1:-1]
        if _balanced_all(inner):
            is_set = text[0] in ("\x01", "{")
            text = inner
    parts, depth, current, separator = [], 0, [], None
    for char in text:
        if char in "([{⟨\x01":
            depth += 1
        elif char in ")]}⟩\x02":
            depth -= 1
        if depth == 0 and char in ",;:" and separator in (None, char):
            separator = char
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    parts = [p.replace("\x01", "\\{").replace("\x02", "\\}") for p in parts]
    is_set = is_set or braced or enumeration is not None
    if len(parts) < 2 or any(not p for p in parts):
        return None
    return is_set, parts


def _balanced_all(text: str) -> bool:
    depth = 0
    for char in text:
        depth += 1 if char in "([{⟨\x01" else -1 if char in ")]}⟩\x02" else 0
        if depth < 0:
            return False
    return depth == 0


def compare_sequences(
    answer: str, extracted: str, same: Callable[[str, str], bool]
) -> tuple[bool, str] | None:
    """Tuples, lists or sets written with other brackets or separators (``1:4:900`` vs
    ``1;4;900``, ``{P, Q}`` vs ``\\{P,Q\\}``): element by element with ``same(gold, pred)``, in
    order unless the reference is a set. ``None`` unless both sides are sequences."""
    for side in (answer, extracted):
        plain = parse_number(side)
        if plain is not None and is_unit(plain[1]) and not re.search(r"\d", plain[1].split("^")[0]):
            return None  # a number with thousands separators (and a unit), not a list
    gold, pred = split_sequence(answer), split_sequence(extracted)
    if gold is None or pred is None:
        return None
    (gold_set, gold_items), (_, pred_items) = gold, pred
    if len(gold_items) != len(pred_items):
        return False, f"{len(pred_items)} element(s) where the answer has {len(gold_items)}"
    if not gold_set:
        for i, (g, p) in enumerate(zip(gold_items, pred_items, strict=True)):
            if not same(g, p):
                return False, f"element {i + 1}: {p[:40]!r} differs from {g[:40]!r}"
        return True, f"the same {len(gold_items)} elements in the same order"
    unmatched = list(pred_items)
    for g in gold_items:
        match = next((p for p in unmatched if same(g, p)), None)
        if match is None:
            return False, f"the set has {g[:40]!r}, which the answer lacks"
        unmatched.remove(match)
    return True, f"the same set of {len(gold_items)} elements"
