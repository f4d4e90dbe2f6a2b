"""The ``nasforge`` command line.

Every sub-command takes ``--format table|json``; user errors print one line (``nasforge: error: ...``) and exit
with status 2, never a traceback. ``nasforge COMMAND --help`` documents each command.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InvalidValue, NasforgeError

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], argparse.ArgumentParser], Handler]] = {}


def command(name: str, help: str) -> Callable[[Handler], Handler]:
    """Register a sub-command; the decorated function gets the parsed args. Options come from ``options[name]``."""

    def deco(fn: Handler) -> Handler:
        def add(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
            return sub.add_parser(name, help=help, description=(fn.__doc__ or help).strip(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)

        _COMMANDS[name] = (add, fn)
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


# ------------------------------------------------------------------------------------------------ parser / main
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from . import cli_commands  # noqa: F401  (registers the sub-commands)

    parser = argparse.ArgumentParser(prog="nasforge", description="Neural architecture search on PyTorch.")
    parser.add_argument("--version", action="version", version=f"nasforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add, fn) in _COMMANDS.items():
        p = add(sub)
        p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default: table)")
        getattr(fn, "configure", lambda p: None)(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except NasforgeError as exc:
        print(f"nasforge: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be created, read or written
        print(f"nasforge: error: {exc.strerror or exc}: {exc.filename!r}" if exc.filename else
              f"nasforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasforge: interrupted", file=sys.stderr)
        return 130
    except _pydantic_error() as exc:  # config validation: one line per field
        print(f"nasforge: error: {format_validation_error(exc)}", file=sys.stderr)
        return 2


def _pydantic_error() -> type[BaseException]:
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

