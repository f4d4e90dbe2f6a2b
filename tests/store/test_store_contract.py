"""Contract suite of the trial stores: every test runs on both the MemoryStore and the SQLiteStore."""
from __future__ import annotations

import csv
import inspect
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from nasforge.arch import Architecture
from nasforge.errors import InvalidValue
from nasforge.io import save_checkpoint, sha256_file
from nasforge.store import INTERRUPTED, MemoryStore, SQLiteStore, TrialStateError, TrialStore, open_store
from nasforge.registry import STORES
from nasforge.trial import Candidate, Result, TrialState

KINDS = tuple(STORES.names())  # every registered store runs the whole suite


def _arch(i: int) -> Architecture:
    return Architecture("store-toy", {"depth": i % 3, "op": ["conv", "pool", "skip"][i % 3], "width": 8 * (1 + i)})


def _open(kind: str, tmp_path: Path) -> TrialStore:
    """A new store of ``kind``; file-backed stores get a path in the test's folder."""
    takes_path = "path" in inspect.signature(STORES.factory(kind)).parameters
    return STORES.create(kind, **({"path": tmp_path / "run" / "trials.db"} if takes_path else {}))


@pytest.fixture(params=KINDS)
def store(request, tmp_path):
    with _open(request.param, tmp_path) as s:
        yield s


def _result(i: int) -> Result:
    return Result(metrics={"acc": 0.5 + i / 100, "loss": 1.0 / (i + 1)}, costs={"flops": 1000 * i, "params": 10 * i},
                  artifacts={"log": f"logs/{i}.txt"}, info={"epochs": i, "curve": [0.1, 0.2], "nested": {"a": None}})


# ------------------------------------------------------------------------------------------------ life cycle
def test_create_assigns_dense_ids_and_records_the_candidate(store) -> None:
    trials = [store.create_trial(Candidate(_arch(i), parents=tuple(range(i)), generation=i), seed=100 + i)
              for i in range(4)]
    assert [t.id for t in trials] == [0, 1, 2, 3] and len(store) == 4
    for i, t in enumerate(store.trials()):
        assert t == trials[i]
        assert (t.state, t.arch, t.parents, t.generation, t.seed) == (TrialState.RUNNING, _arch(i), tuple(range(i)), i,
                                                                      100 + i)
        assert t.result is None and t.error is None and t.finished_at is None and t.started_at > 0


def test_complete_round_trips_the_result_and_writes_meta(store) -> None:
    t = store.create_trial(Candidate(_arch(0)))
    store.complete_trial(t.id, _result(3), meta={"strategy": {"step": 1, "rng": [1, 2]}, "best": 0.53})
    got = store.get(t.id)
    assert got.state is TrialState.COMPLETE and got.result == _result(3)
    assert got.finished_at >= got.started_at and got.metric("acc") == pytest.approx(0.53)
    assert got.metric("flops") == 3000  # costs are reachable by name too
    assert store.get_meta("strategy") == {"step": 1, "rng": [1, 2]} and store.get_meta("best") == 0.53


def test_fail_records_the_error_and_meta(store) -> None:
    t = store.create_trial(Candidate(_arch(1)))
    store.fail_trial(t.id, "CUDA out of memory", meta={"strategy": {"step": 2}})
    got = store.get(t.id)
    assert got.state is TrialState.FAILED and got.error == "CUDA out of memory" and got.result is None
    assert store.get_meta("strategy") == {"step": 2}


@pytest.mark.parametrize("second", ["complete", "fail"])
@pytest.mark.parametrize("first", ["complete", "fail"])
def test_a_finished_trial_is_never_rewritten_and_its_meta_is_not_applied(store, first, second) -> None:
    t = store.create_trial(Candidate(_arch(0)))
    finish = {"complete": lambda m: store.complete_trial(t.id, _result(1), meta=m),
              "fail": lambda m: store.fail_trial(t.id, "boom", meta=m)}
    finish[first]({"v": 1})
    before = store.to_records()
    with pytest.raises(TrialStateError, match=f"trial {t.id} state: got '(complete|failed)'"):
        finish[second]({"v": 2})
    assert store.to_records() == before and store.get_meta("v") == 1


def test_unknown_and_invalid_ids_name_the_field(store) -> None:
    store.create_trial(Candidate(_arch(0)))
    for call in (lambda: store.get(5), lambda: store.complete_trial(5, _result(0)), lambda: store.fail_trial(9, "x")):
        with pytest.raises(InvalidValue, match=r"trial_id: got \d; allowed: an existing trial id \(0..0\)"):
            call()
    for bad in (-1, "0", 1.0, True):
        with pytest.raises(InvalidValue, match="trial_id"):
            store.get(bad)


def test_bad_inputs_are_rejected_before_anything_is_written(store) -> None:
    with pytest.raises(InvalidValue, match="candidate"):
        store.create_trial(_arch(0))  # an Architecture, not a Candidate
    for seed in ("7", -1, 2**64, 1.0):
        with pytest.raises(InvalidValue, match="seed"):
            store.create_trial(Candidate(_arch(0)), seed=seed)
    with pytest.raises(InvalidValue, match="parent trial id"):
        store.create_trial(Candidate(_arch(0), parents=(-2,)))
    with pytest.raises(InvalidValue, match="generation"):
        store.create_trial(Candidate(_arch(0), generation=-1))
    with pytest.raises(InvalidValue, match="candidate info"):
        store.create_trial(Candidate(_arch(0), info={"fn": print}))
    assert len(store) == 0
    t = store.create_trial(Candidate(_arch(0)))
    with pytest.raises(InvalidValue, match="result metrics"):
        store.complete_trial(t.id, Result(metrics={"acc": object()}), meta={"x": 1})
    with pytest.raises(InvalidValue, match="meta 'bad'"):
        store.complete_trial(t.id, _result(0), meta={"x": 1, "bad": {1, 2}})
    with pytest.raises(InvalidValue, match="result"):
        store.complete_trial(t.id, {"acc": 1.0})  # type: ignore[arg-type]
    assert store.get(t.id).state is TrialState.RUNNING and store.get_meta("x") is None


def test_numpy_values_are_stored_as_plain_json(store) -> None:
    t = store.create_trial(Candidate(_arch(0), parents=(np.int64(0),), generation=np.int32(1)), seed=np.uint32(5))
    assert (t.seed, t.parents, t.generation) == (5, (0,), 1) and type(t.seed) is int
    store.complete_trial(t.id, Result(metrics={"acc": np.float32(0.25)}, info={"vec": np.arange(3)}),
                         meta={"state": {"n": np.int64(4)}})
    assert (store.get(t.id).seed, store.get(t.id).parents) == (5, (0,))
    got = store.get(t.id).result
    assert got.metrics == {"acc": 0.25} and type(got.metrics["acc"]) is float and got.info == {"vec": [0, 1, 2]}
    assert store.get_meta("state") == {"n": 4}


# ------------------------------------------------------------------------------------------------ queries
def test_trials_by_state_and_find_by_arch_or_key(store) -> None:
    for i in range(6):
        t = store.create_trial(Candidate(_arch(i % 2)))
        if i % 3 == 0:
            store.complete_trial(t.id, _result(i))
        elif i % 3 == 1:
            store.fail_trial(t.id, "x")
    assert [t.id for t in store.trials("complete")] == [0, 3]
    assert [t.id for t in store.trials(TrialState.FAILED)] == [1, 4]
    assert [t.id for t in store.trials("running")] == [2, 5]
    assert [t.id for t in store.find(_arch(0))] == [0, 2, 4]
    assert [t.id for t in store.find(_arch(1).key())] == [1, 3, 5]
    assert store.find(_arch(7)) == []
    with pytest.raises(InvalidValue, match="state: got 'done'"):
        store.trials("done")
    with pytest.raises(InvalidValue, match="arch_or_key"):
        store.find("not-a-key")


def test_meta_default_overwrite_and_fresh_copies(store) -> None:
    assert store.get_meta("config") is None and store.get_meta("config", {"a": 1}) == {"a": 1}
    store.set_meta("config", {"space": "nb201", "seeds": [0, 1]})
    got = store.get_meta("config")
    got["seeds"].append(2)  # mutating what was read does not change what is stored
    assert store.get_meta("config") == {"space": "nb201", "seeds": [0, 1]}
    store.set_meta("config", (1, 2))
    assert store.get_meta("config") == [1, 2]  # JSON round-trip: tuples come back as lists
    with pytest.raises(InvalidValue, match="meta key"):
        store.set_meta("", 1)
    with pytest.raises(InvalidValue, match="meta 'f'"):
        store.set_meta("f", lambda: 0)


def test_requeue_interrupted_fails_running_trials_and_returns_them(store) -> None:
    for i in range(4):
        store.create_trial(Candidate(_arch(i)))
    store.complete_trial(1, _result(1))
    store.fail_trial(2, "boom")
    requeued = store.requeue_interrupted()
    assert [t.id for t in requeued] == [0, 3]
    assert all(t.state is TrialState.FAILED and t.error == INTERRUPTED for t in requeued)
    assert [t.arch for t in requeued] == [_arch(0), _arch(3)]
    assert store.get(2).error == "boom" and store.get(1).state is TrialState.COMPLETE
    assert store.requeue_interrupted() == [] and store.trials("running") == []


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_checksum_recorded_and_verified(store, tmp_path) -> None:
    path = tmp_path / "ckpt" / "t0.pt"
    digest = save_checkpoint(path, {"w": np.arange(4).tolist()})
    t0, t1 = store.create_trial(Candidate(_arch(0))), store.create_trial(Candidate(_arch(1)))
    store.complete_trial(t0.id, _result(0), checkpoint=path)  # sha256 computed by the store
    store.complete_trial(t1.id, _result(1), checkpoint=str(path), checkpoint_sha256=digest)
    got = store.get(t0.id)
    assert got.checkpoint == str(path) and got.checkpoint_sha256 == digest == sha256_file(path)
    assert store.verify_checkpoint(got) and store.verify_checkpoint(t1.id)
    path.write_bytes(path.read_bytes() + b"tampered")
    assert not store.verify_checkpoint(got)
    path.unlink()
    assert not store.verify_checkpoint(got)


def test_checkpoint_errors_name_the_field(store, tmp_path) -> None:
    t = store.create_trial(Candidate(_arch(0)))
    with pytest.raises(InvalidValue, match="checkpoint: got .*missing.pt"):
        store.complete_trial(t.id, _result(0), checkpoint=tmp_path / "missing.pt")
    with pytest.raises(InvalidValue, match="checkpoint_sha256"):
        store.complete_trial(t.id, _result(0), checkpoint=tmp_path / "x.pt", checkpoint_sha256="abc")
    with pytest.raises(InvalidValue, match="checkpoint_sha256"):
        store.complete_trial(t.id, _result(0), checkpoint_sha256="0" * 64)
    store.complete_trial(t.id, _result(0))
    with pytest.raises(InvalidValue, match="trial 0 checkpoint"):
        store.verify_checkpoint(t.id)


# ------------------------------------------------------------------------------------------------ export
def test_records_and_csv_export(store, tmp_path) -> None:
    for i in range(3):
        t = store.create_trial(Candidate(_arch(i), parents=(0,) if i else (), generation=i, info={"op": "mutate"}),
                               seed=i)
        if i < 2:
            store.complete_trial(t.id, _result(i))
    records = store.to_records()
    json.dumps(records)  # JSON-compatible
    assert [r["id"] for r in records] == [0, 1, 2] and records[1]["metrics.acc"] == pytest.approx(0.51)
    assert records[1]["costs.flops"] == 1000 and records[1]["parents"] == [0]
    assert records[2]["state"] == "running" and "metrics.acc" not in records[2]
    assert records[0]["candidate_info"] == {"op": "mutate"} and records[0]["info"]["epochs"] == 0
    assert Architecture.from_json(records[2]["arch_json"], validate=False) == _arch(2)
    out = store.export_csv(tmp_path / "out" / "trials.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["0", "1", "2"]
    assert float(rows[1]["metrics.acc"]) == pytest.approx(0.51) and rows[2]["metrics.acc"] == ""
    assert json.loads(rows[1]["parents"]) == [0] and rows[0]["arch_key"] == _arch(0).key()


# ------------------------------------------------------------------------------------------------ both alike
def _script(s: TrialStore) -> list[dict]:
    """The same sequence of operations, including refused ones, whose visible outcome must not depend on the store."""
    s.set_meta("config", {"space": "store-toy"})
    for i in range(5):
        t = s.create_trial(Candidate(_arch(i), parents=(max(i - 1, 0),), generation=i // 2), seed=i)
        if i % 2 == 0:
            s.complete_trial(t.id, _result(i), meta={"strategy": {"told": i}})
        elif i == 3:
            s.fail_trial(t.id, "diverged")
    for bad in (lambda: s.complete_trial(0, _result(0)), lambda: s.fail_trial(2, "x")):
        with pytest.raises(TrialStateError):
            bad()
    s.requeue_interrupted()
    drop = ("started_at", "finished_at", "duration")
    return [{k: v for k, v in r.items() if k not in drop} for r in s.to_records()] + [
        {"meta": [s.get_meta("config"), s.get_meta("strategy")]}]


def test_memory_and_sqlite_stores_behave_identically(tmp_path) -> None:
    with MemoryStore() as mem, SQLiteStore(tmp_path / "t.db") as db:
        assert _script(mem) == _script(db)


def test_open_store_picks_the_backend(tmp_path) -> None:
    assert isinstance(open_store(None), MemoryStore) and isinstance(open_store(":memory:"), MemoryStore)
    with open_store(tmp_path / "a.db", synchronous="FULL") as s:
        assert isinstance(s, SQLiteStore) and s.synchronous == "FULL"


def test_concurrent_threads_get_unique_dense_ids(store) -> None:
    def worker(k: int) -> None:
        for i in range(25):
            t = store.create_trial(Candidate(_arch(k * 100 + i)))
            store.complete_trial(t.id, _result(i), meta={f"w{k}": i})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    trials = store.trials()
    assert [t.id for t in trials] == list(range(100)) and all(t.state is TrialState.COMPLETE for t in trials)
    assert sorted(store.get_meta(f"w{k}") for k in range(4)) == [24] * 4
