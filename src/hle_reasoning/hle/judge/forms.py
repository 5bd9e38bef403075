"""Ways of writing an answer around its value, which the rules judge looks through.

A named value (``|AB| = 1``, ``V_1:V_2 = 11:21``), an approximation after it
(``\\sqrt{2} \\approx 1.414``), a unit in ``\\text{}`` (``\\frac{1}{3} \\text{ meters}``), a mixed
number (``3128 1/2``), several ``\\boxed{}`` values (``\\boxed{1}, \\boxed{2}``) and matrices in any
environment. Every function is total on any string: it returns the parts or ``None`` ("not this
form"), never raises. Each errs towards rejecting: a name is only a name (never an expression
such as ``2x + z``), a unit is only words, a mixed number only a proper fraction after a whole.
"""

from __future__ import annotations

import re

from hle_reasoning.hle.judge.answers import clean_latex, parse_number, strip_delimiters

# One named quantity: an identifier (``x``, ``V_1``, ``E'``, ``f(x)``, ``\\frac{NO}{BO}``), its
# absolute value ``|AB|``, a ratio of identifiers ``V_1:V_2`` or a tuple of them ``(p, q)``.
_TERM = (
    r"(?!\\(?:sqrt|frac\s*\{?\d|sin|cos|tan|log|ln|exp|pi|infty|binom)(?![A-Za-z]))"
    r"[A-Za-z\\][\w\\{}^']{0,19}(?:\([^()=]{0,20}\))?"
)
_NAME = re.compile(
    rf"^(?:{_TERM}|\|{_TERM}\||{_TERM}(?:\s*:\s*{_TERM})+|\(\s*{_TERM}(?:\s*,\s*{_TERM})+\s*\))$"
)
_APPROX = re.compile(r"^(?P<value>.+?)\s*(?:\\approx|≈|\\simeq)\s*(?P<approx>[^=≈]+)$", re.DOTALL)
_TEXT_UNIT = re.compile(
    r"^(?P<value>.*?[\d}).])\s*(?:\\[,;: ]|~)*\s*\\(?:text|textbf|textrm|textnormal|textit|textsf|"
    r"textup|mathrm|mbox|operatorname)\s*\{\s*(?P<unit>[A-Za-zµΩ°][A-Za-zµΩ°/^\d.\s-]{0,24}?)\s*\}"
    r"\s*\.?$",
    re.DOTALL,
)
# Words that change an answer's meaning: never a unit.
_NOT_UNITS = {"not", "no", "none", "never", "only", "or", "and", "except", "without", "approx"}
_MIXED = re.compile(
    r"^(?P<sign>[+-]?)\s*(?P<whole>\d{1,12})\s*(?:\s(?P<num>\d{1,12})\s*/\s*(?P<den>\d{1,12})|"
    r"\\frac\s*(?:\{\s*(?P<fnum>\d{1,12})\s*\}|(?P<dnum>\d))\s*(?:\{\s*(?P<fden>\d{1,12})\s*\}|"
    r"(?P<dden>\d)))$"
)
_SEPARATORS = re.compile(
    r"^(?:\s|[,;.&$]|\\[()\[\],;: !]|\\q?quad(?![A-Za-z])|\band\b|\\text\s*\{\s*(?:and|,)?\s*\})*$"
)
_MATRIX = re.compile(r"^\\begin\{matrix\}(?P<body>.*)\\end\{matrix\}$", re.DOTALL)


def _top_level_split(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    return [*parts, "".join(current)]


def is_name(text: str) -> bool:
    """A named quantity (``x``, ``|AB|``, ``V_1:V_2``, ``(p, q)``, ``f(x)``), not an expression."""
    cleaned = clean_latex(text).strip()
    return bool(_NAME.match(cleaned)) and not re.search(r"\d", re.sub(r"_\{?\w+\}?", "", cleaned))


def named_value(text: str) -> str | None:
    """The value of ``name = value`` (``|AB| = 1`` -> ``1``, ``V_1:V_2 = 11:21`` -> ``11:21``);
    ``None`` unless the text has one ``=`` with a named quantity on its left."""
    cleaned = clean_latex(text)
    if re.search(r"[<>!]=|=[<>]", cleaned):
        return None
    parts = _top_level_split(cleaned, "=")
    if len(parts) != 2 or not parts[1].strip() or not _NAME.match(parts[0].strip()):
        return None
    return parts[1].strip()


def approximation(text: str) -> tuple[str, str] | None:
    """``(value, approximation)`` of ``value \\approx approximation`` (either may be a name)."""
    match = _APPROX.match(clean_latex(text))
    if not match or not match.group("value").strip() or not match.group("approx").strip():
        return None
    return match.group("value").strip(), match.group("approx").strip()


def text_unit(text: str) -> tuple[str, str] | None:
    """``(value, unit)`` of a value followed by a unit in ``\\text{}`` (``\\frac{1}{3}
    \\text{ meters}``, ``125\\textnormal{ miles}``); the unit is one to three words."""
    match = _TEXT_UNIT.match(strip_delimiters(str(text)))
    if not match:
        return None
    unit = " ".join(match.group("unit").split())
    words = re.findall(r"[A-Za-z]+", unit)
    if len(unit.split()) > 3 or any(w.lower() in _NOT_UNITS for w in words):
        return None
    return match.group("value").strip(), unit


def mixed_number(text: str) -> str | None:
    """A mixed number (``3128 1/2``, ``3128\\frac{1}{2}``, ``-2 \\frac34``) as ``\\frac{6257}{2}``;
    ``None`` unless a whole number is followed by a proper fraction."""
    match = _MIXED.match(clean_latex(text).strip())
    if not match:
        return None
    num = int(match.group("num") or match.group("fnum") or match.group("dnum"))
    den = int(match.group("den") or match.group("fden") or match.group("dden"))
    if not 0 < num < den:
        return None
    sign = "-" if match.group("sign") == "-" else ""
    return f"{sign}\\frac{{{int(match.group('whole')) * den + num}}}{{{den}}}"


def boxed_values(text: str) -> list[str] | None:
    """The contents of two or more ``\\boxed{}`` with nothing but separators between them
    (commas, "and", spacing, math delimiters); ``None`` otherwise."""
    values, rest, start = [], [], 0
    while (begin := text.find("\\boxed{", start)) >= 0:
        depth, end = 0, None
        for i in range(begin + len("\\boxed"), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                end = i
                break
        if end is None:
            return None
        rest.append(text[start:begin])
        values.append(text[begin + len("\\boxed{") : end].strip())
        start = end + 1
    rest.append(text[start:])
    if len(values) < 2 or any(not v for v in values) or not _SEPARATORS.match("".join(rest)):
        return None
    return values


def matrix_cells(text: str) -> list[list[str]] | None:
    """The rows and cells of a matrix in any environment (``pmatrix``, ``bmatrix``,
    ``\\left[\\begin{array}{cc}``), ``None`` when the text is not one matrix."""
    match = _MATRIX.match(clean_latex(text).strip())
    if not match or "\\begin" in match.group("body"):
        return None
    rows = [r for r in re.split(r"\\\\", match.group("body")) if r.strip()]
    cells = [[c.strip() for c in row.split("&")] for row in rows]
    if not cells or any(not c for row in cells for c in row):
        return None
    return cells


# --------------------------------------------------------------------------- the whole answer

_PROSE_LEAD = re.compile(
    r"^(?:(?:(?!not\b|never\b|no\b)[A-Za-z][A-Za-z'-]*\s+){1,6}(?:is|are|equals|=|:)"
    r"|(?:the\s+|final\s+)*answer)\s*:?\s*",
    re.IGNORECASE,
)
_MATH_UNIT = re.compile(
    r"^(?:\$\$(?:(?!\$\$).)+\$\$|\$[^$]+\$|\\\((?:(?!\\\)).)+\\\)|\\\[(?:(?!\\\]).)+\\\])[.\s]*$",
    re.DOTALL,
)


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
    boxed, several = _last_boxed(form), boxed_values(form)
    if several is not None:
        form, notes = ", ".join(several), ["\\boxed"]
    elif boxed is not None and "\\boxed" not in answer:
        form, notes = boxed.strip(), ["\\boxed"]
    lead = _PROSE_LEAD.match(form)
    if lead and _MATH_UNIT.match(form[lead.end() :]) and not _PROSE_LEAD.match(answer):
        form = form[lead.end() :].strip()
        notes.append("prose")
    cleaned = clean_latex(form)
    named = named_value(cleaned)
    if named is not None and "=" not in answer:
        cleaned = named
        notes.append("name =")
    approx = approximation(cleaned)
    if approx is not None:  # x \approx 11: the name's value is the approximation
        cleaned = approx[1] if is_name(approx[0]) else approx[0]
        notes.append("approximation")
    return (cleaned if notes else form), notes


def reference_values(answer: str) -> list[tuple[str, str]]:
    """What else the reference's value may be written as, and how: the set of its several
    ``\\boxed{}``, the value after its name (``|AB| = 1``), the value before its ``\\approx`` and a
    numeric approximation after it (``\\sqrt{2} \\approx 1.414``)."""
    values = []
    several = boxed_values(answer)
    if several is not None:
        values.append(("\\{" + ", ".join(several) + "\\}", "set of \\boxed values"))
    named = named_value(answer)
    if named is not None:
        values.append((named, "value after its name"))
    approx = approximation(named if named is not None else answer)
    if approx is not None:
        exact = named_value(approx[0]) or approx[0]
        if not is_name(exact):
            values.append((exact, "value before its \\approx"))
        if parse_number(approx[1]) is not None:
            values.append((approx[1], "approximation"))
    return values
