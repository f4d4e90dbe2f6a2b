"""Shared pieces of the ``nasforge`` command line: the sub-command registry and the output helpers.

Every sub-command takes ``--format table|json``; user errors print one line (``nasforge: error: ...``) and exit
with status 2, never a traceback. ``nasforge COMMAND --help`` documents each command.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidValue, NasforgeError

__all__ = ["command", "COMMANDS", "emit", "format_table", "parse_input_shape", "int_at_least",
           "format_validation_error", "pydantic_error"]

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], argparse.ArgumentParser], Handler]] = {}


def command(name: str, help: str) -> Callable[[Handler], Handler]:
    """Register a sub-command; the decorated function gets the parsed args. Options come from ``options[name]``."""

    def deco(fn: Handler) -> Handler:
        def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
            return sub.add_parser(name, help=help, description=(fn.__doc__ or help).strip(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)

        COMMANDS[name] = (add, fn)
        return fn

    return deco


# ------------------------------------------------------------------------------------------------ output helpers
def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``3x32x32`` -> (3, 32, 32) (channels x height x width)."""
    try:
        c, h, w = (int(t) for t in text.lower().split("x"))
        if min(c, h, w) < 1:
            raise ValueError
        return c, h, w
    except ValueError:
        raise InvalidValue("--input", text, "CxHxW with positive ints, e.g. 3x32x32 or 1x28x28") from None


def int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: an int >= ``low`` (the error names the option ``what``, the value and the range)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: an int >= {low}")
        return value

    return convert


def emit(args: argparse.Namespace, rows: list[dict[str, Any]] | dict[str, Any], columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` as JSON (``--format json``) or as an aligned text table."""
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=_json_default))
        return
    if isinstance(rows, dict):
        width = max((len(k) for k in rows), default=0)
        for k, v in rows.items():
            print(f"{k:<{width}}  {_cell(v)}")
        return
    print(format_table(rows, columns))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return str(obj)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def format_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def pydantic_error() -> type[BaseException]:
    try:
        from pydantic import ValidationError

        return ValidationError
    except ImportError:  # pragma: no cover
        return NasforgeError


def format_validation_error(exc: Any) -> str:
    """A pydantic ValidationError as '<field>: got <value>; <message>' lines joined by '; '."""
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())) or "config"
        parts.append(f"{loc}: got {e.get('input')!r}; {e.get('msg')}")
    return " | ".join(parts)

