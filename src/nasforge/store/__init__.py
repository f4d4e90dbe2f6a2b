"""Trial stores: where a study records every trial (DESIGN.md, "TrialStore").

* :class:`SQLiteStore` — the durable store, one SQLite file (WAL) in the run directory; survives a SIGKILL at
  any moment and lets a crashed study resume (:meth:`TrialStore.requeue_interrupted`).
* :class:`MemoryStore` — the same behaviour in memory, for tests and notebooks.

>>> from nasforge.store import open_store
>>> with open_store("runs/exp1/trials.db") as store:          # doctest: +SKIP
...     trial = store.create_trial(Candidate(arch), seed=0)
...     store.complete_trial(trial.id, Result({"acc": 0.9}), meta={"strategy": strategy.state_dict()})
"""
from __future__ import annotations

import os

from ..registry import STORES
from .base import INTERRUPTED, TrialStateError, TrialStore
from .memory import MemoryStore
from .sqlite import SCHEMA_VERSION, SQLiteStore

STORES.register("sqlite")(SQLiteStore)
STORES.register("memory")(MemoryStore)

__all__ = ["TrialStore", "TrialStateError", "MemoryStore", "SQLiteStore", "SCHEMA_VERSION", "INTERRUPTED",
           "open_store"]


def open_store(path: str | os.PathLike[str] | None, **sqlite_options: object) -> TrialStore:
    """A :class:`SQLiteStore` at ``path``, or a :class:`MemoryStore` when ``path`` is ``None`` or ``":memory:"``."""
    if path is None or str(path) == ":memory:":
        return STORES.create("memory")
    return STORES.create("sqlite", path=path, **sqlite_options)
