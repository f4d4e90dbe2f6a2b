"""SQLite-specific behaviour of the trial store: durability across reopen, pragmas, schema versioning."""
from __future__ import annotations

import shutil
import sqlite3
import threading

import pytest

from nasforge.arch import Architecture
from nasforge.errors import DataError, InvalidValue
from nasforge.store import SCHEMA_VERSION, SQLiteStore
from nasforge.trial import Candidate, Result, TrialState


def _cand(i: int) -> Candidate:
    return Candidate(Architecture("store-toy", {"i": i}), parents=(i - 1,) if i else (), generation=i)


def test_trials_and_meta_survive_close_and_reopen(tmp_path) -> None:
    path = tmp_path / "runs" / "exp" / "trials.db"
    with SQLiteStore(path) as s:
        for i in range(3):
            s.create_trial(_cand(i), seed=i)
        s.complete_trial(0, Result({"acc": 0.9}, {"flops": 12}), meta={"strategy": {"told": 1}})
        s.fail_trial(1, "nan loss")
        s.set_meta("config", {"space": "store-toy", "seed": 7})
        before = s.to_records()
    with SQLiteStore(path) as s:
        assert s.to_records() == before
        assert s.get_meta("strategy") == {"told": 1} and s.get_meta("config")["seed"] == 7
        assert s.get(2).state is TrialState.RUNNING
        assert s.create_trial(_cand(3)).id == 3  # ids continue densely after reopening


def test_pragmas_schema_and_indexes(tmp_path) -> None:
    with SQLiteStore(tmp_path / "t.db") as s:
        s.create_trial(_cand(0))
        s.create_trial(_cand(1))
        s.complete_trial(1, Result({"acc": 0.5}))
        assert s.integrity_check() == "ok"
    raw = sqlite3.connect(tmp_path / "t.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[1] for r in raw.execute("PRAGMA index_list(trials)")}
        assert {"trials_arch_key", "trials_state"} <= indexes
        columns = [r[1] for r in raw.execute("PRAGMA table_info(trials)")]
        assert columns[:5] == ["id", "arch_key", "arch_json", "arch_str", "state"] and "checkpoint_sha256" in columns
        with pytest.raises(sqlite3.IntegrityError):  # the state column only takes the three states
            raw.execute("UPDATE trials SET state = 'paused' WHERE id = 0")
        with pytest.raises(sqlite3.IntegrityError, match="never rewritten"):  # even by hand, a result is final
            raw.execute("UPDATE trials SET metrics = '{}' WHERE id = 1")
    finally:
        raw.close()


@pytest.mark.parametrize("mode,level", [("NORMAL", 1), ("FULL", 2)])
def test_synchronous_mode_is_applied(tmp_path, mode, level) -> None:
    with SQLiteStore(tmp_path / "t.db", synchronous=mode) as s:
        assert s._db().execute("PRAGMA synchronous").fetchone()[0] == level


def test_bad_options_and_foreign_files_are_refused(tmp_path) -> None:
    with pytest.raises(InvalidValue, match="synchronous: got 'OFF'; allowed: 'NORMAL', 'FULL'"):
        SQLiteStore(tmp_path / "t.db", synchronous="OFF")
    with pytest.raises(InvalidValue, match="store path"):
        SQLiteStore(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match="not a usable SQLite database"):
        SQLiteStore(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="not a nasforge trial store"):
        SQLiteStore(other)


def test_a_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "t.db"
    SQLiteStore(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="schema version 2 is newer"):
        SQLiteStore(path)


def test_two_connections_to_one_file_share_ids_and_results(tmp_path) -> None:
    with SQLiteStore(tmp_path / "t.db") as a, SQLiteStore(tmp_path / "t.db") as b:
        ids = [a.create_trial(_cand(0)).id, b.create_trial(_cand(1)).id, a.create_trial(_cand(2)).id]
        assert ids == [0, 1, 2]
        b.complete_trial(0, Result({"acc": 1.0}), meta={"who": "b"})
        assert a.get(0).state is TrialState.COMPLETE and a.get_meta("who") == "b"


def test_a_closed_store_says_so(tmp_path) -> None:
    s = SQLiteStore(tmp_path / "t.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(InvalidValue, match="an open store"):
        s.trials()


def test_creation_is_atomic_and_racing_creators_share_one_file(tmp_path) -> None:
    """The file appears only fully initialised (made under a temporary name, then linked into place)."""
    path = tmp_path / "run" / "trials.db"
    errors: list[BaseException] = []

    def open_and_write(i: int) -> None:
        try:
            with SQLiteStore(path) as s:
                s.create_trial(_cand(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    with SQLiteStore(path) as s:
        assert [t.id for t in s.trials()] == [0, 1, 2, 3]
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("trials.db")) == []


def _main_file_only(path, tmp_path):
    """What the database file alone holds (as after a power loss that dropped the un-synced WAL)."""
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    con = sqlite3.connect(copy)
    try:
        return con.execute("SELECT id, state FROM trials ORDER BY id").fetchall()
    finally:
        con.close()


def test_sync_interval_bounds_what_only_the_wal_holds(tmp_path) -> None:
    path = tmp_path / "t.db"
    with SQLiteStore(path, sync_interval=0) as s:  # every write is checkpointed into the database file
        s.create_trial(_cand(0))
        s.complete_trial(0, Result({"acc": 0.5}))
        s.create_trial(_cand(1))
        assert _main_file_only(path, tmp_path) == [(0, "complete"), (1, "running")]
    with pytest.raises(InvalidValue, match="sync_interval"):
        SQLiteStore(tmp_path / "u.db", sync_interval=-1)
    with SQLiteStore(tmp_path / "f.db", synchronous="FULL") as s:
        assert s.sync_interval is None  # FULL syncs every commit already
