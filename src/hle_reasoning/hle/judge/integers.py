"""Exact integer expressions for the rules judge: ``5!^2``, ``2^{40}``, ``\\binom{30}{12}``.

Total on any string: :func:`eval_integer` returns the value or ``None`` (not an integer
expression, or beyond ``MAX_BITS``), never raises.
"""

from __future__ import annotations

import re

from hle_reasoning.hle.judge.answers import normalize_for_number

_TOKEN = re.compile(r"\s*(\d+|\\binom|\\times|\\cdot|\*\*|[-+*×^!(){}])")
MAX_BITS = 100_000  # the largest integer an expression may reach (about 30,000 digits)


class _TooBig(Exception):
    pass


def eval_integer(text: str) -> int | None:
    """The exact value of an integer expression (``5!^2``, ``2^{40}``, ``\\binom{30}{12}``,
    ``3 \\times 7``, ``{58 \\choose 22}``, ``131,681,894,400``), or ``None`` (not one, or beyond
    ``MAX_BITS``)."""
    text = normalize_for_number(text).replace("\\left", "").replace("\\right", "")
    if len(text) > 200:
        return None
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators
    choose = re.fullmatch(r"\{?\s*([^{}]+?)\s*\\choose\s*([^{}]+?)\s*\}?", text)
    if choose:
        text = f"\\binom{{{choose.group(1)}}}{{{choose.group(2)}}}"
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            return None if text[pos:].strip() else _finish(tokens)
        tokens.append(match.group(1))
        pos = match.end()
    return _finish(tokens)


def _finish(tokens: list[str]) -> int | None:
    if not tokens:
        return None
    parser = _IntegerParser(tokens)
    try:
        value = parser.expr()
    except (_TooBig, IndexError, ValueError, RecursionError):
        return None
    return value if parser.pos == len(tokens) else None


class _IntegerParser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        if expected is not None and token != expected:
            raise ValueError(token)
        self.pos += 1
        return token

    @staticmethod
    def check(value: int) -> int:
        if value.bit_length() > MAX_BITS:
            raise _TooBig
        return value

    def expr(self) -> int:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = self.check(value + self.term() if self.take() == "+" else value - self.term())
        return value

    def term(self) -> int:
        value = self.unary()
        while self.peek() in ("*", "×", "\\times", "\\cdot"):
            self.take()
            value = self.check(value * self.unary())
        return value

    def unary(self) -> int:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> int:
        base = self.postfix()
        if self.peek() in ("^", "**"):
            self.take()
            exponent = self.unary()
            if exponent < 0 or (abs(base) > 1 and exponent * abs(base).bit_length() > MAX_BITS):
                raise _TooBig
            return self.check(base**exponent)
        return base

    def postfix(self) -> int:
        value = self.atom()
        while self.peek() == "!":
            self.take()
            if value < 0 or value > 5000:
                raise _TooBig
            product = 1
            for factor in range(2, value + 1):
                product = self.check(product * factor)
            value = product
        return value

    def atom(self) -> int:
        token = self.take()
        if token.isdigit():
            return self.check(int(token)) if len(token) < 5000 else self.check(1 << MAX_BITS)
        if token in ("(", "{"):
            value = self.expr()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\binom":
            self.take("{")
            n = self.expr()
            self.take("}")
            self.take("{")
            k = self.expr()
            self.take("}")
            if n < 0 or k < 0 or n > 100_000:
                raise _TooBig
            from math import comb

            return self.check(comb(n, k))
        raise ValueError(token)
