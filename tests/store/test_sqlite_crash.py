"""Crash safety of the SQLite trial store: SIGKILL a writer at random moments, then check what survived.

A child process (forked, so it starts in milliseconds instead of re-importing torch) resumes the store the way a
study does (``requeue_interrupted``), then writes trials in a loop: create -> complete (or fail) with the
strategy state in ``meta`` in the same transaction. The parent kills it with SIGKILL after a random, seeded
delay, reopens the database and checks: the file is sound (``PRAGMA integrity_check``), ids are dense, every
trial is complete with its full result, failed, or (only the last one) running, and the meta entry written with
each completion agrees with the trials, i.e. no crash separated a completion from its strategy state.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time

import numpy as np
import pytest

from nasforge.arch import Architecture
from nasforge.store import INTERRUPTED, SQLiteStore
from nasforge.trial import Candidate, Result, TrialState

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or "fork" not in multiprocessing.get_all_start_methods(),
                                reason="needs POSIX SIGKILL and fork")

KILLS = 6


def _writer(path: str, seed: int, ready) -> None:
    """Child: resume, then write trials forever (until killed). Payload sizes vary so commits span pages."""
    rng = np.random.default_rng(seed)
    store = SQLiteStore(path)
    store.requeue_interrupted()
    completed = store.get_meta("completed", 0)
    ready.set()
    while True:
        i = len(store)
        trial = store.create_trial(Candidate(Architecture("crash-toy", {"i": i}), parents=(max(i - 1, 0),)), seed=i)
        if rng.random() < 0.1:
            store.fail_trial(trial.id, "boom", meta={"failed_last": trial.id})
            continue
        n = int(rng.integers(10, 20000))
        completed += 1
        result = Result(metrics={"acc": i / 1000, "loss": 1.0 / (i + 1)}, costs={"flops": 7 * i},
                        info={"n": n, "payload": "x" * n})
        store.complete_trial(trial.id, result, meta={"completed": completed, "last": trial.id,
                                                     "strategy": {"rng": rng.bit_generator.state["state"]}})


def _check(path: str) -> tuple[int, int]:
    """Everything a resumed study relies on; returns (number of trials, number complete)."""
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
    with SQLiteStore(path) as store:
        trials = store.trials()
        assert [t.id for t in trials] == list(range(len(trials))), "ids are dense from 0"
        running = [t.id for t in trials if t.state is TrialState.RUNNING]
        assert running in ([], [len(trials) - 1]), "only the trial being written when killed may be running"
        complete = [t for t in trials if t.state is TrialState.COMPLETE]
        for t in trials:
            assert t.arch["i"] == t.id and t.seed == t.id
            if t.state is TrialState.COMPLETE:
                r = t.result
                assert r.metrics == {"acc": t.id / 1000, "loss": 1.0 / (t.id + 1)} and r.costs == {"flops": 7 * t.id}
                assert len(r.info["payload"]) == r.info["n"], "a complete trial has its full result"
            elif t.state is TrialState.FAILED:
                assert t.result is None and t.error in ("boom", INTERRUPTED)
        assert store.get_meta("completed", 0) == len(complete), "strategy state and completions never separated"
        assert store.get_meta("last") == (complete[-1].id if complete else None)
    return len(trials), len(complete)


def test_sigkill_at_random_moments_never_corrupts_or_separates_writes(tmp_path) -> None:
    path = str(tmp_path / "trials.db")
    SQLiteStore(path).close()
    str(Architecture("crash-toy", {"i": 0}))  # load the space registry here, once, so forked writers start warm
    rng = np.random.default_rng(20240601)
    ctx = multiprocessing.get_context("fork")
    sizes = []
    for round_ in range(KILLS):
        ready = ctx.Event()
        child = ctx.Process(target=_writer, args=(path, round_, ready), daemon=True)
        child.start()
        assert ready.wait(30), "the writer did not start"
        time.sleep(float(rng.uniform(0.005, 0.2)))
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        sizes.append(_check(path))
    total, complete = sizes[-1]
    assert complete > 0 and total >= complete, "the writer made progress"
    with SQLiteStore(path) as store:  # what a resuming study does first
        requeued = store.requeue_interrupted()
        assert all(t.error == INTERRUPTED for t in requeued) and store.trials("running") == []
