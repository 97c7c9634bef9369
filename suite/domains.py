"""The value domain of a config field: what values it accepts, checked when a config is built, and how to say
so in one line ("must be a finite number in (0, 1)").

Each :class:`suite.config.RunConfig` field declares one next to its default (``_f(default, scope, domain)``);
``RunConfig.from_dict`` checks every field against it, and ``suite run --list-keys`` prints
:meth:`Domain.describe`. Cross-field rules (a batch divisible by the world size, …) stay in
``RunConfig.validate``. :func:`coerce_scalar` turns a raw YAML / ``--set`` / JSON value into the field's type
first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


class Domain:
    """What a field accepts. :meth:`problem` is ``None`` for a value inside, else the sentence that follows
    ``field KEY=VALUE`` in the error (the value is already coerced to the field's type)."""

    def describe(self) -> str:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True)
class OneOf(Domain):
    choices: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(str(c) for c in self.choices)

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else "is not one of " + ", ".join(str(c) for c in self.choices)


@dataclass(frozen=True)
class Flag(Domain):
    def describe(self) -> str:
        return "true or false"

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"


@dataclass(frozen=True)
class Text(Domain):
    """A string matching ``pattern`` (any string when ``None``); ``what`` says what it is."""

    what: str
    pattern: str | None = None

    def describe(self) -> str:
        return self.what

    def problem(self, value: Any) -> str | None:
        ok = isinstance(value, str) and (self.pattern is None or re.fullmatch(self.pattern, value))
        return None if ok else f"must be {self.what}"


def _bound(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Number(Domain):
    """A finite number (``integer``: an integer) in an interval, optionally a multiple of ``step``.

    ``lo``/``hi`` ``None`` = unbounded; ``open_lo``/``open_hi`` exclude the bound itself.
    """

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    integer: bool = False
    step: int | None = None

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.open_lo else "[", ")" if self.open_hi else "]"
            text = f"{kind} in {left}{_bound(self.lo)}, {_bound(self.hi)}{right}"
        elif self.lo is not None:
            text = f"{kind} {'>' if self.open_lo else '>='} {_bound(self.lo)}"
        elif self.hi is not None:
            text = f"{kind} {'<' if self.open_hi else '<='} {_bound(self.hi)}"
        else:
            text = kind
        if self.step:
            text += f", a multiple of {self.step}"
        return text

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.open_hi else value > self.hi):
            return False
        return not (self.step and value % self.step)

    def problem(self, value: Any) -> str | None:
        return None if self.contains(value) else f"must be {self.describe()}"


def Int(lo: int | None = None, hi: int | None = None, *, step: int | None = None) -> Number:
    """An integer in [lo, hi] (closed; ``None`` = unbounded)."""
    return Number(lo, hi, integer=True, step=step)


@dataclass(frozen=True)
class ListOf(Domain):
    """A list of values each in ``item`` (a :class:`Number`); ``length`` fixes how many, ``increasing``
    requires strictly increasing values."""

    item: Number
    length: int | None = None
    what: str = ""  # what the values are, for the reader ("blocks per stage")
    increasing: bool = False

    def describe(self) -> str:
        what = f" ({self.what})" if self.what else ""
        n = f"{self.length} values{what}" if self.length is not None else f"values{what}"
        text = f"a list of {n}, each {self.item.describe()}"
        return text + ", strictly increasing" if self.increasing else text

    def problem(self, value: Any) -> str | None:
        ok = isinstance(value, tuple | list)
        ok = ok and (self.length is None or len(value) == self.length)
        ok = ok and all(self.item.contains(v) for v in value)
        ok = ok and (not self.increasing or all(a < b for a, b in zip(value, value[1:], strict=False)))
        return None if ok else f"must be {self.describe()}"


def coerce_scalar(default: Any, value: Any) -> Any:
    """``value`` as the type of ``default`` (bool, int, float or str); ValueError when it is not one."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError
    if isinstance(default, int):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError
        return str(value)
    raise TypeError(f"no coercion to {type(default).__name__}")
