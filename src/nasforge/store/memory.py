"""An in-memory :class:`~nasforge.store.base.TrialStore` with the same behaviour as the SQLite store.

Rows are kept encoded exactly as the SQLite store keeps them (JSON text columns), so values read back are fresh
copies with the same JSON round-trip; nothing survives the process. Useful for tests, notebooks and benchmarks.
"""
from __future__ import annotations

import threading
from typing import Any

from ..trial import TrialState
from .base import COLUMNS, TrialStore

__all__ = ["MemoryStore"]

_RUNNING = TrialState.RUNNING.value


class MemoryStore(TrialStore):
    """Trials and meta in Python lists/dicts, guarded by a lock (safe to share between threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trials: list[dict[str, Any]] = []
        self._by_key: dict[str, list[int]] = {}
        self._meta: dict[str, str] = {}

    def _insert(self, row: dict[str, Any]) -> int:
        full = dict.fromkeys(COLUMNS)
        full.update(row)
        with self._lock:
            full["id"] = len(self._trials)
            self._trials.append(full)
            self._by_key.setdefault(full["arch_key"], []).append(full["id"])
        return full["id"]

    def _finish(self, trial_id: int, fields: dict[str, Any], meta: dict[str, str]) -> str | None:
        with self._lock:
            if trial_id >= len(self._trials):
                return None
            row = self._trials[trial_id]
            before = row["state"]
            if before == _RUNNING:
                row.update(fields)
                row["duration"] = row["finished_at"] - row["started_at"]
                self._meta.update(meta)
            return before

    def _rows(self, *, trial_id: int | None = None, state: str | None = None,
              arch_key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if trial_id is not None:
                rows = self._trials[trial_id:trial_id + 1]
            elif arch_key is not None:
                rows = [self._trials[i] for i in self._by_key.get(arch_key, [])]
            else:
                rows = self._trials
            return [dict(r) for r in rows if (state is None or r["state"] == state)
                    and (arch_key is None or r["arch_key"] == arch_key)]

    def _count(self) -> int:
        return len(self._trials)

    def _get_meta(self, key: str) -> str | None:
        with self._lock:
            return self._meta.get(key)

    def _set_meta(self, items: dict[str, str]) -> None:
        with self._lock:
            self._meta.update(items)

    def _requeue(self, error: str, now: float) -> list[int]:
        with self._lock:
            ids = [r["id"] for r in self._trials if r["state"] == _RUNNING]
            for i in ids:
                row = self._trials[i]
                row.update(state=TrialState.FAILED.value, error=error, finished_at=now,
                           duration=now - row["started_at"])
            return ids

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._trials)} trials>"
