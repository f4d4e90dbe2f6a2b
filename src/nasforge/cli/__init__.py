"""The ``nasforge`` command line.

Every sub-command takes ``--format table|json``; user errors print one line (``nasforge: error: ...``) and exit
with status 2, never a traceback. ``nasforge COMMAND --help`` documents each command. The sub-commands live in
this package's modules (:mod:`.commands`, :mod:`.search`, :mod:`.export`, :mod:`.supernet`) and register
themselves with :func:`~nasforge.cli.base.command`; method-specific steps are looked up in
:data:`nasforge.registry.METHODS`, so this package names no method.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from .. import __version__
from ..errors import NasforgeError
from . import commands, export, search, supernet  # noqa: F401  (register the sub-commands)
from .base import (
    COMMANDS,
    command,
    emit,
    format_table,
    format_validation_error,
    pydantic_error,
)

__all__ = ["main", "build_parser", "command", "emit", "format_table"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasforge", description="Neural architecture search on PyTorch.")
    parser.add_argument("--version", action="version", version=f"nasforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add, fn) in COMMANDS.items():
        p = add(sub)
        p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default: table)")
        getattr(fn, "configure", lambda p: None)(p)
        p.set_defaults(handler=fn)
    return parser


def _show_warning(original):  # noqa: ANN001, ANN202 - wraps warnings.showwarning
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if "nasforge" in str(filename):  # nasforge's own warnings: one line, like its errors
            print(f"nasforge: warning: {message}", file=sys.stderr if file is None else file)
        else:
            original(message, category, filename, lineno, file, line)
    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning(warnings.showwarning)
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
    except pydantic_error() as exc:  # config validation: one line per field
        print(f"nasforge: error: {format_validation_error(exc)}", file=sys.stderr)
        return 2


