"""The base of the parameter blocks (pydantic v2 models) and their problems in the project's words.

A block is a frozen pydantic model that forbids unknown keys (``Block``). A field's value check
is a validator built by ``check`` (``Annotated[int, check(lambda v: v >= 1, "it must be >= 1")]``)
and a block's rules between its fields are its ``cross_checks``, run by a
``model_validator(mode="after")`` once every field is valid. Pydantic (and Kedro, which builds
the blocks that node arguments are annotated with) reports every failure at once;
``problems`` turns a ``ValidationError`` into one line per problem with its full key path and,
for an unknown key, the closest valid name (``training.grpo.tempreature: unknown key; did you
mean temperature?``). Building a block directly (``GenerationConfig(batch_size=0)``) raises
``ConfigError`` with the same lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

T = TypeVar("T", bound="Block")
_CHECK = "check"
CROSS_CHECK = "cross_check"  # ctx problems: lines of their own
UNKNOWN_KEY = "unknown_key"  # a validator's own unknown name: ctx key and known


class ConfigError(ValueError):
    """A parameter block that cannot work; ``problems`` lists each problem with its key path."""

    def __init__(self, problems: list[str], header: str = "") -> None:
        self.problems = list(problems)
        lines = [header] if header else []
        super().__init__("\n".join([*lines, *(f"  - {p}" for p in self.problems)]).strip())


def check(test: Callable[[Any], bool], requirement: str) -> Any:
    """A field validator: ``test(value)`` must hold (``None`` passes), else the problem is
    ``<path> is <value>; <requirement>.``"""

    def validate(value: Any) -> Any:
        if value is not None and not test(value):
            raise PydanticCustomError(_CHECK, "{requirement}", {"requirement": requirement})
        return value

    return AfterValidator(validate)


def at_least(minimum: float, kind: str = "a number") -> Any:
    return check(lambda v: v >= minimum, f"set it to {kind} >= {minimum:g}")


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and, for ``X | None``, without the ``None``."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (types.UnionType, typing.Union):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:
            return _strip(options[0])
    return tp


def _fields(tp: Any) -> dict[str, Any] | None:
    """A block's (or a dataclass's) field names and annotations; ``None`` for other types."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return {f.name: hints[f.name] for f in dataclasses.fields(tp)}
    return None


def _type_name(tp: Any) -> str:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {_plural(_type_name(get_args(tp)[0]))}"
    if origin is dict:
        return f"a mapping of names to {_type_name(get_args(tp)[1])}"
    if _fields(tp) is not None:
        return "a block of keys"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _plural(name: str) -> str:
    """A list's element as its plural: "a block of keys" -> "blocks of keys"."""
    plurals = {
        "a block of keys": "blocks of keys",
        "an integer": "integers",
        "a number": "numbers",
        "a string": "strings",
        "true or false": "true or false values",
    }
    return plurals.get(name, name)


def _locate(cls: type, loc: tuple[Any, ...], root: str) -> tuple[str, Any, Any]:
    """The key path of pydantic's ``loc`` in block ``cls``, the annotation there, and the type
    holding it (pydantic's names for the members of a union, at the end of ``loc``, are not
    keys and are left out)."""
    path, tp, parent = root, cls, None
    for part in loc:
        stripped = _strip(tp)
        fields = _fields(stripped)
        origin = get_origin(stripped)
        if fields is not None and isinstance(part, str):
            parent, tp = stripped, fields.get(part, Any)
        elif origin is dict:
            parent, tp = stripped, get_args(stripped)[1]
        elif origin is tuple and isinstance(part, int):
            parent, tp = stripped, get_args(stripped)[0]
            path += f"[{part}]"
            continue
        else:
            break  # a union member's name
        path += f".{part}"
    return path, tp, parent


def problems(error: ValidationError, cls: type, path: str) -> list[str]:
    """Pydantic's errors of block ``cls`` (read at key ``path``) as the project's problem lines:
    one per key path, with the closest valid name for an unknown key."""
    lines: list[str] = []
    seen: set[str] = set()
    for e in error.errors():
        where, tp, parent = _locate(cls, tuple(e["loc"]), path)
        kind, value, ctx = e["type"], e.get("input"), e.get("ctx") or {}
        if kind == CROSS_CHECK:
            lines += [p for p in ctx["problems"] if p not in lines]
            continue
        if where in seen:
            continue  # a union's members each report the value: one problem
        seen.add(where)
        if kind in ("extra_forbidden", "unexpected_keyword_argument", UNKNOWN_KEY):
            if kind == UNKNOWN_KEY:
                known, key = list(ctx["known"]), str(ctx["key"])
                where = f"{where}.{key}"
            else:
                known = list(_fields(parent) or {}) if parent is not None else []
                key = where.rsplit(".", 1)[-1]
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(sorted(known))}."
            )
            lines.append(f"{where}: unknown key; {hint}")
        elif kind == "missing":
            lines.append(f"{where} is missing; set it (see conf/base).")
        elif kind == _CHECK:
            if _strip(tp) is float and isinstance(value, int):
                value = float(value)  # the check saw the number as the block holds it
            lines.append(f"{where} is {value!r}; {ctx['requirement']}.")
        elif get_origin(_strip(tp)) is Literal and get_origin(tp) not in (
            types.UnionType,
            typing.Union,
        ):
            lines.append(f"{where} is {value!r}; choose {_type_name(tp)}.")
        else:
            lines.append(f"{where} is {value!r}; it must be {_type_name(tp)}.")
    return lines


class Block(BaseModel):
    """Base of the parameter blocks: frozen, unknown keys forbidden, finite numbers only.

    ``PATH`` is the block's key path in the parameters (its problems are named from it).
    ``cross_checks`` returns the problems between its fields (run once they are all valid).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True
    )
    PATH: ClassVar[str] = ""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            found = problems(error, type(self), self.PATH)
            raise ConfigError(found, header=f"{self.PATH} cannot work as configured:") from None

    # Only the error's type changes here, not what is validated: pydantic may validate a block
    # nested in another without calling this (as it does for BaseModel's own __init__), so a
    # nested block's problems stay pydantic errors with their full key path. The marker is the
    # one pydantic sets on BaseModel.__init__ and RootModel.__init__ (not in its documentation):
    # without it, a nested block's problems would reach the message as one folded line (tests
    # test_config.py::test_building_a_block_directly_runs_the_same_checks and test_generation's
    # fail then).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @field_validator("*", mode="before")
    @classmethod
    def _as_the_yaml_means_it(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` is not a number, and a number is the text of a choice (``--params
        evaluation.metrics.p=1`` arrives as the integer 1)."""
        if info.field_name is None:
            return value
        tp = _strip(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool) and tp in (int, float):
            raise PydanticCustomError("bool_is_not_a_number", "a number, not true or false")
        if (
            get_origin(tp) is Literal
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and str(value) in get_args(tp)
        ):
            return str(value)
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Block:
        found = self.cross_checks()
        if found:
            raise PydanticCustomError(
                CROSS_CHECK, "{text}", {"text": "\n".join(found), "problems": found}
            )
        return self

    def cross_checks(self) -> list[str]:
        return []

    @classmethod
    def from_params(cls: type[T], params: Mapping[str, Any] | None) -> T:
        return parse_or_raise(cls, params or {}, cls.PATH)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def _parse(cls: type[T], data: Mapping[str, Any], path: str, problem_lines: list[str]) -> T | None:
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        problem_lines.extend(problems(error, cls, path))
        return None


def parse(cls: type[T], data: Mapping[str, Any] | None, path: str) -> tuple[T | None, list[str]]:
    """``data`` as a ``cls`` block (``None`` when it cannot be), and every problem found."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        return None, [f"{path} is {data!r}; it must be a block of keys."]
    found: list[str] = []
    return _parse(cls, data, path, found), found


def parse_or_raise(cls: type[T], data: Mapping[str, Any] | None, path: str) -> T:
    """``data`` as a ``cls`` block, or ``ConfigError`` listing every problem."""
    block, found = parse(cls, data, path)
    if found or block is None:
        raise ConfigError(found, header=f"{path} cannot work as configured:")
    return block
