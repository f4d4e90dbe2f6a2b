"""Benchmark tables: a CSV (optionally gzip-compressed) read into ``{column: tuple of strings}``, cached per
(file, modification time, size). The NAS-Bench-201 space numbers its cells from the packaged table and the tabular
evaluator looks metrics up in such tables.
"""
from __future__ import annotations

import csv
import functools
import gzip
import io
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from ..errors import DataError, InvalidValue

__all__ = ["Table", "read_table", "file_key", "read_cached", "require_columns"]

Table = Mapping[str, tuple[str, ...]]


def file_key(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    p = Path(path).expanduser()
    try:
        st = p.resolve().stat()
    except OSError:
        raise DataError(f"table: got {str(path)!r}; allowed: an existing CSV or CSV.gz file") from None
    if not p.is_file():
        raise DataError(f"table: got {str(path)!r}; allowed: an existing CSV or CSV.gz file")
    return str(p.resolve()), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=16)
def read_cached(key: tuple[str, int, int]) -> Table:
    path = key[0]
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"table {path}: cannot read ({exc}); allowed: UTF-8 CSV, optionally gzip-compressed") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or not rows[0]:
        raise DataError(f"table {path}: got an empty file; allowed: a CSV with a header row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise DataError(f"table {path}: got duplicate column names in header {header}; allowed: unique names")
    body = [r for r in rows[1:] if r]
    for line, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise DataError(f"table {path}, line {line}: got {len(r)} fields; allowed: {len(header)} (the header)")
    columns = list(zip(*body)) if body else [()] * len(header)
    return MappingProxyType({h: tuple(c) for h, c in zip(header, columns)})


def read_table(path: str | os.PathLike[str], *, required: Sequence[str] = ()) -> Table:
    """Read a CSV or gzip-compressed CSV into ``{column: tuple of strings}`` (stdlib ``csv`` + ``gzip``; cached).

    Raises :class:`~nasforge.errors.DataError` for a missing or malformed file, or when a ``required`` column is
    absent (naming it and the columns that exist).
    """
    table = read_cached(file_key(path))
    require_columns(table, required, path)
    return table


def require_columns(table: Table, columns: Sequence[str], path: Any) -> None:
    for col in columns:
        if col not in table:
            raise InvalidValue("column", col, list(table), where=f"table {Path(path).name}")
