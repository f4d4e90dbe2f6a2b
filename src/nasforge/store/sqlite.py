"""The durable trial store: one SQLite database file in the run directory (stdlib :mod:`sqlite3`, WAL mode).

Crash safety (DESIGN.md, "TrialStore"; "resume after a kill loses no trial"):

* Every state change is ONE SQLite transaction: ``create_trial`` is a single ``INSERT`` (the dense id is computed
  inside it); ``complete_trial`` / ``fail_trial`` update the row and upsert the given ``meta`` entries between
  ``BEGIN IMMEDIATE`` and ``COMMIT``. SQLite's atomic commit means a reader after any crash sees the trial and
  the strategy state written with it together, or neither.
* ``journal_mode=WAL`` with ``synchronous=NORMAL`` (the default here). A transaction is committed when its frames
  are appended to the WAL file; with NORMAL the WAL is fsynced only at checkpoints, not at every commit. A
  process crash (SIGKILL, OOM kill, an exception) therefore loses nothing that was committed, because the
  written frames are in the operating system's page cache, which survives the process; the database can never
  be corrupted. Only an operating-system crash or power loss can roll back commits made since the last WAL
  sync (never half a commit). SQLite alone syncs at size-based checkpoints (every ~1000 pages), which for a
  slow study could be hours of trials; this store therefore also runs a checkpoint (which fsyncs the WAL and
  then the database) after a write when ``sync_interval`` seconds (default 1) have passed since the last one.
  A power loss thus costs at most about a second of commits, i.e. re-evaluating those trials, while a fast
  tabular loop pays one sync per second instead of one per commit. ``synchronous="FULL"`` fsyncs the WAL at
  every commit, at the price of one fsync per write (about 12x slower in benchmarks/bench_store.py).
* The schema is versioned with ``PRAGMA user_version``; a newer file than this code knows is refused.
* A trigger refuses any ``UPDATE`` of a finished (complete / failed) row, so even a bug or a hand-written query
  cannot rewrite a result.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError, InvalidValue
from ..trial import TrialState
from .base import COLUMNS, TrialStore

__all__ = ["SQLiteStore", "SCHEMA_VERSION"]

#: the ``PRAGMA user_version`` of databases written by this code
SCHEMA_VERSION = 1

_SCHEMA = (
    """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                 -- JSON
)""",
    """
CREATE TABLE trials (
    id                INTEGER PRIMARY KEY,  -- assigned by the store, dense from 0
    arch_key          TEXT NOT NULL,
    arch_json         TEXT NOT NULL,
    arch_str          TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('running', 'complete', 'failed')),
    metrics           TEXT,                 -- JSON objects, set when complete
    costs             TEXT,
    artifacts         TEXT,
    info              TEXT,
    candidate_info    TEXT NOT NULL DEFAULT '{}',
    parents           TEXT NOT NULL DEFAULT '[]',
    generation        INTEGER NOT NULL DEFAULT 0,
    seed              INTEGER,
    started_at        REAL NOT NULL,
    finished_at       REAL,
    duration          REAL,
    checkpoint        TEXT,
    checkpoint_sha256 TEXT,
    error             TEXT
)""",
    "CREATE INDEX trials_arch_key ON trials (arch_key)",
    "CREATE INDEX trials_state ON trials (state)",
    """
CREATE TRIGGER trials_final BEFORE UPDATE ON trials WHEN OLD.state != 'running'
BEGIN
    SELECT RAISE(ABORT, 'a finished trial is never rewritten');
END""",
)

_INSERT_COLS = [c for c in COLUMNS if c != "id"]
_INSERT = (f"INSERT INTO trials (id, {', '.join(_INSERT_COLS)}) "
           f"SELECT COALESCE(MAX(id) + 1, 0), {', '.join('?' * len(_INSERT_COLS))} FROM trials")
_UPSERT_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_SYNC_MODES = ("NORMAL", "FULL")
_AUTOCHECKPOINT_PAGES = 10_000  # SQLite's default is 1000 (4 MB of WAL); 40 MB here
_WAL_SIZE_LIMIT = 64 * 2**20  # the WAL file is truncated back to this size after a checkpoint


def _create_schema(conn: sqlite3.Connection) -> None:
    """Tables, indexes, trigger and ``user_version`` (inside the caller's transaction)."""
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _create_file(path: Path) -> None:
    """Create the database fully initialised (WAL mode, schema) under a temporary name, then hard-link it into
    place, so that no reader (another process polling the run directory) ever sees a half-made store. When
    another process created ``path`` first, its file wins and the temporary one is discarded."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".init", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # recorded in the file header
            conn.execute("BEGIN IMMEDIATE")
            _create_schema(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


class SQLiteStore(TrialStore):
    """A :class:`TrialStore` in the SQLite file ``path`` (created with its folder if missing).

    ``synchronous`` is ``"NORMAL"`` (safe against process crashes; against power loss up to the last
    ``sync_interval`` seconds; see the module docstring) or ``"FULL"`` (every commit synced). ``sync_interval``
    ``None`` leaves syncing to SQLite's size-based checkpoints. ``timeout`` is how long a write waits for another
    process holding the lock. The store may be shared between threads (a lock serialises its connection).
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL",
                 sync_interval: float | None = 1.0, timeout: float = 30.0) -> None:
        if synchronous not in _SYNC_MODES:
            raise InvalidValue("synchronous", synchronous, _SYNC_MODES)
        if sync_interval is not None and (not isinstance(sync_interval, (int, float)) or sync_interval < 0):
            raise InvalidValue("sync_interval", sync_interval, "seconds >= 0, or None")
        self.sync_interval = None if synchronous == "FULL" else sync_interval
        self._last_sync = time.monotonic()
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidValue("store path", str(self.path), "a database file path, not a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            _create_file(self.path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self.synchronous = synchronous
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DataError(f"trial store {str(self.path)!r}: journal_mode is {mode!r}; needs 'wal' "
                                "(a local file system that supports shared memory)")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            if self.sync_interval is not None:  # durability is bounded by time: size-based checkpoints can be rarer
                self._conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
                self._conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise DataError(f"trial store {str(self.path)!r}: not a usable SQLite database ({exc})") from None
        except BaseException:
            self.close()
            raise

    def _init_schema(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
                if tables:
                    raise DataError(f"trial store {str(self.path)!r}: an SQLite file that is not a nasforge "
                                    f"trial store (tables: {', '.join(t[0] for t in tables)})")
                _create_schema(conn)
            elif version > SCHEMA_VERSION:
                raise DataError(f"trial store {str(self.path)!r}: schema version {version} is newer than this "
                                f"nasforge supports ({SCHEMA_VERSION}); upgrade nasforge")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InvalidValue("trial store", str(self.path), "an open store (it was closed)")
        return self._conn

    def close(self) -> None:
        """Close the connection (the last one to close checkpoints the WAL into the database file)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------------------------ primitives
    def _insert(self, row: dict[str, Any]) -> int:
        with self._lock:
            conn = self._db()
            cur = conn.execute(_INSERT, [row.get(c) for c in _INSERT_COLS])  # one statement: atomic
            self._sync_if_due(conn)
            return int(cur.lastrowid)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the lock; ``ROLLBACK`` on any exception."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._sync_if_due(conn)

    def _sync_if_due(self, conn: sqlite3.Connection) -> None:
        """After a commit: checkpoint (fsync WAL, copy, fsync database) when ``sync_interval`` has passed."""
        if self.sync_interval is not None and time.monotonic() - self._last_sync >= self.sync_interval:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._last_sync = time.monotonic()

    def _finish(self, trial_id: int, fields: dict[str, Any], meta: dict[str, str]) -> str | None:
        sets = ", ".join(f"{c} = ?" for c in fields)
        with self._transaction() as conn:
            cur = conn.execute(f"UPDATE trials SET {sets}, duration = ? - started_at "
                               "WHERE id = ? AND state = 'running'", [*fields.values(), fields["finished_at"], trial_id])
            if cur.rowcount == 1:
                conn.executemany(_UPSERT_META, meta.items())
                return TrialState.RUNNING.value
            found = conn.execute("SELECT state FROM trials WHERE id = ?", (trial_id,)).fetchone()
            return None if found is None else str(found[0])

    def _rows(self, *, trial_id: int | None = None, state: str | None = None,
              arch_key: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        for column, value in (("id", trial_id), ("state", state), ("arch_key", arch_key)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM trials" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        with self._lock:
            return [dict(r) for r in self._db().execute(sql, args).fetchall()]

    def _count(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def _get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, items: dict[str, str]) -> None:
        with self._transaction() as conn:
            conn.executemany(_UPSERT_META, items.items())

    def _requeue(self, error: str, now: float) -> list[int]:
        with self._transaction() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM trials WHERE state = 'running' ORDER BY id")]
            conn.execute("UPDATE trials SET state = 'failed', error = ?, finished_at = ?, duration = ? - started_at "
                         "WHERE state = 'running'", (error, now, now))
            return ids

    # ------------------------------------------------------------------------------------ maintenance
    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for a sound database file."""
        with self._lock:
            return str(self._db().execute("PRAGMA integrity_check").fetchone()[0])

    def __repr__(self) -> str:
        return f"<SQLiteStore {str(self.path)!r}>"
