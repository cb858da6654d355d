"""Building blocks shared by every config section: the error type and small validators.

Every section is a dataclass whose fields carry a docstring (the string literal right after the field). A
section may define ``validate(self, path)`` that yields :class:`ConfigError` for each problem it finds; the loader
collects them all and reports them together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class ConfigError(Exception):
    """A configuration problem that names the key, the bad value and what is allowed."""

    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{self.key}={self.value!r}: {self.allowed}"


class ConfigValidationError(ValueError):
    """Raised by the loader with every :class:`ConfigError` found in one config."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"invalid configuration ({len(errors)} problem{'s' * (len(errors) != 1)}):\n{lines}")

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.errors]


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def check_choice(path: str, value: Any, choices: Iterable[Any]) -> Iterator[ConfigError]:
    choices = list(choices)
    if value not in choices:
        yield ConfigError(path, value, "must be one of " + ", ".join(repr(c) for c in choices))


def check_range(
    path: str,
    value: float | int | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> Iterator[ConfigError]:
    if value is None:
        return
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "[" if low_inclusive and low is not None else "("
        hb = "]" if high_inclusive and high is not None else ")"
        yield ConfigError(path, value, f"must lie in {lb}{lo}, {hi}{hb}")


def check_positive(path: str, value: float | int | None) -> Iterator[ConfigError]:
    yield from check_range(path, value, low=0, low_inclusive=False)


def check_non_negative(path: str, value: float | int | None) -> Iterator[ConfigError]:
    yield from check_range(path, value, low=0)
