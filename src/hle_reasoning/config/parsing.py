"""Parsing parameter blocks into frozen dataclasses: types, unknown keys, every problem at once.

A block is a frozen, keyword-only dataclass whose fields are typed (``int``, ``float``, ``bool``,
``str``, ``X | None``, ``Literal[...]``, ``tuple[X, ...]``, ``dict[str, X]`` or another block).
A field may carry a check in its metadata (``field(metadata=check(...))``) and a block may define
``cross_checks()`` for rules between its fields. ``parse`` walks a mapping down the tree and
collects every problem with its full key path (``training.grpo.tempreature: unknown key; did you
mean temperature?``) instead of stopping at the first; building a block directly
(``GenerationConfig(batch_size=0)``) runs the same checks and raises ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")
CHECK = "check"


class ConfigError(ValueError):
    """A parameter block that cannot work; ``problems`` lists each problem with its key path."""

    def __init__(self, problems: list[str], header: str = "") -> None:
        self.problems = list(problems)
        lines = [header] if header else []
        super().__init__("\n".join([*lines, *(f"  - {p}" for p in self.problems)]).strip())


def check(test: Callable[[Any], bool], requirement: str) -> dict[str, Any]:
    """Field metadata: ``test(value)`` must hold, else ``<path> is <value>; <requirement>``."""
    return {CHECK: (test, requirement)}


def at_least(minimum: float, kind: str = "a number") -> dict[str, Any]:
    return check(lambda v: v is None or v >= minimum, f"set it to {kind} >= {minimum:g}")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a block of keys"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Invalid(Exception):
    pass


def _convert(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """``value`` as type ``tp``; a problem is recorded (and ``_Invalid`` raised) when it is not."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            problems.append(f"{path} is {value!r}; it must be {_type_name(tp)}.")
            raise _Invalid
        parsed = _parse(tp, value, path, problems)
        if parsed is None:
            raise _Invalid
        return parsed
    if origin in (types.UnionType, typing.Union):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path, [])
            except _Invalid:
                continue
        problems.append(f"{path} is {value!r}; it must be {_type_name(tp)}.")
        raise _Invalid
    if origin is Literal:
        for choice in get_args(tp):
            # A choice given on the command line may arrive as its text (or a number as text).
            if value == choice and type(value) is type(choice):
                return choice
            if isinstance(choice, str) and not isinstance(value, bool) and str(value) == choice:
                return choice
        problems.append(f"{path} is {value!r}; choose {_type_name(tp)}.")
        raise _Invalid
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            problems.append(f"{path} is {value!r}; it must be {_type_name(tp)}.")
            raise _Invalid
        item = get_args(tp)[0]
        before = len(problems)
        out = []
        for i, element in enumerate(value):
            try:
                out.append(_convert(element, item, f"{path}[{i}]", problems))
            except _Invalid:
                pass
        if len(problems) > before:
            raise _Invalid
        return tuple(out)
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{path} is {value!r}; it must be {_type_name(tp)}.")
            raise _Invalid
        item = get_args(tp)[1]
        before = len(problems)
        out = {}
        for key, element in value.items():
            try:
                out[str(key)] = _convert(element, item, f"{path}.{key}", problems)
            except _Invalid:
                pass
        if len(problems) > before:
            raise _Invalid
        return out
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            # A string: "1e-4", which YAML 1.1 and the command line leave as text.
            try:
                number = float(value)
            except (ValueError, OverflowError):
                number = math.nan
            if not math.isnan(number) and not math.isinf(number):
                return number
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    problems.append(f"{path} is {value!r}; it must be {_type_name(tp)}.")
    raise _Invalid


def unknown_key_problem(path: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(sorted(known))}."
    return f"{path}.{key}: unknown key; {hint}"


def field_problems(instance: Any, path: str) -> list[str]:
    """The failed field checks of a built block (types are the parser's business)."""
    problems = []
    for f in dataclasses.fields(instance):
        rule = f.metadata.get(CHECK)
        value = getattr(instance, f.name)
        if rule and value is not None and not rule[0](value):
            problems.append(f"{path}.{f.name} is {value!r}; {rule[1]}.")
    return problems


def _parse(cls: type[T], data: Mapping[str, Any], path: str, problems: list[str]) -> T | None:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    before = len(problems)
    for key in data:
        if key not in known:
            problems.append(unknown_key_problem(path, key, list(known)))
    values: dict[str, Any] = {}
    for name, f in known.items():
        where = f"{path}.{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{where} is missing; set it (see conf/base).")
            continue
        try:
            values[name] = _convert(data[name], hints[name], where, problems)
        except _Invalid:
            continue
        rule = f.metadata.get(CHECK)
        if rule and values[name] is not None and not rule[0](values[name]):
            problems.append(f"{where} is {values[name]!r}; {rule[1]}.")
    if len(problems) > before:
        return None
    try:
        instance = cls(**values)
    except ConfigError as error:
        problems.extend(error.problems)
        return None
    return instance


def parse(cls: type[T], data: Mapping[str, Any] | None, path: str) -> tuple[T | None, list[str]]:
    """``data`` as a ``cls`` block (``None`` when it cannot be), and every problem found."""
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        return None, [f"{path} is {data!r}; it must be a block of keys."]
    return _parse(cls, data, path, problems), problems


def parse_or_raise(cls: type[T], data: Mapping[str, Any] | None, path: str) -> T:
    """``data`` as a ``cls`` block, or ``ConfigError`` listing every problem."""
    block, problems = parse(cls, data, path)
    if problems or block is None:
        raise ConfigError(problems, header=f"{path} cannot work as configured:")
    return block


class Block:
    """Base of the parameter blocks: field checks and ``cross_checks`` run when one is built."""

    PATH: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        problems = field_problems(self, self.PATH)
        if not problems:
            problems = self.cross_checks()
        if problems:
            raise ConfigError(problems, header=f"{self.PATH} cannot work as configured:")

    def cross_checks(self) -> list[str]:
        return []

    @classmethod
    def from_params(cls: type[T], params: Mapping[str, Any] | None) -> T:
        return parse_or_raise(cls, params or {}, cls.PATH)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
