"""Exceptions raised by nasforge.

Every error a user can cause is a :class:`NasforgeError` whose message is one line naming the field, the value
that was given and what is allowed, e.g. ``kernel 'l3' of space 'menas-mt': got 9; allowed: 3, 5, 7``.
The CLI prints the message and exits with status 2; it never shows a traceback for these.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = [
    "NasforgeError",
    "InvalidValue",
    "InvalidArchitecture",
    "ParseError",
    "UnknownName",
    "DataError",
]


def _fmt_allowed(allowed: Any) -> str:
    if isinstance(allowed, str):
        return allowed
    if isinstance(allowed, Iterable):
        items = [repr(a) if isinstance(a, str) else str(a) for a in allowed]
        if len(items) > 12:
            items = items[:6] + ["..."] + items[-3:]
        return ", ".join(items)
    return str(allowed)


class NasforgeError(ValueError):
    """Base class of every error caused by user input (bad config, architecture, data, path...)."""


class InvalidValue(NasforgeError):
    """A named field holds a value outside what is allowed."""

    def __init__(self, field: str, value: Any, allowed: Any, *, where: str | None = None) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        loc = f"{field} of {where}" if where else field
        super().__init__(f"{loc}: got {value!r}; allowed: {_fmt_allowed(allowed)}")


class InvalidArchitecture(InvalidValue):
    """An architecture gene is missing, unknown or out of range for its search space."""


class ParseError(NasforgeError):
    """A string could not be parsed into an architecture or a config value."""

    def __init__(self, what: str, text: str, expected: str) -> None:
        self.what, self.text, self.expected = what, text, expected
        shown = text if len(text) <= 120 else text[:117] + "..."
        super().__init__(f"{what}: cannot parse {shown!r}; expected {expected}")


class UnknownName(InvalidValue):
    """A name (space, strategy, dataset, op...) that is not registered."""


class DataError(NasforgeError):
    """A data path is missing or a file has the wrong shape or format."""
