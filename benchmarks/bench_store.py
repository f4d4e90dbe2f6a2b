"""Trial-store overhead: a 10,000-trial tabular random-search loop on the SQLite store vs the in-memory store.

Each trial of the loop does what a study does around a free (table look-up) evaluation:

1. ask: sample a random architecture of the ``nb201`` space (or of a synthetic 6-gene space when ``nb201`` is not
   registered), skipping architectures already evaluated. Dedup is done the way the strategies do it, with an
   in-memory set of keys (``dedup="strategy"``, the headline figures), and also by asking the store
   (``dedup="store"``: one ``store.find`` per draw, i.e. a read transaction on the arch_key index);
2. ``create_trial`` (state running);
3. evaluate: a dict look-up in a precomputed table;
4. ``complete_trial`` with the result AND the strategy state (the RNG state) in ``meta``, one transaction.

The stores run side by side in one process, interleaved over ``--repeats`` rounds; the median round is reported.
Besides the whole-loop time (the target: SQLite <= 2x memory), the time spent inside store calls alone is
reported, so the ratio cannot hide behind a slow sampler. ``synchronous=FULL`` (an fsync per commit) is measured
too, on ``--full-trials`` trials, to show what the default ``NORMAL`` saves.

    python benchmarks/bench_store.py                      # writes benchmarks/results/bench_store.json
    python benchmarks/bench_store.py --trials 2000 --repeats 1 --full-trials 500   # quick look
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nasforge import Architecture, get_space, list_spaces
from nasforge.io import write_json
from nasforge.store import MemoryStore, SQLiteStore, TrialStore
from nasforge.trial import Candidate, Result

SYNTH_CHOICES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def make_sampler(seed: int) -> tuple[str, Callable[[], Architecture], np.random.Generator]:
    """The ``nb201`` sampler if that space is registered, else a synthetic 6-gene one of the same size."""
    rng = np.random.default_rng(seed)
    if "nb201" in list_spaces():
        space = get_space("nb201")
        return "nb201", lambda: space.sample(rng), rng
    return "synthetic", lambda: Architecture("bench-synth", {f"e{i}": SYNTH_CHOICES[int(rng.integers(5))]
                                                             for i in range(6)}), rng


def make_table(n: int, seed: int) -> tuple[dict[str, Result], str]:
    """A look-up table of exactly the ``n`` distinct architectures the loop will meet (same sampler, same seed)."""
    name, sample, _ = make_sampler(seed)
    acc_rng = np.random.default_rng(seed + 1)
    table: dict[str, Result] = {}
    while len(table) < n:
        arch = sample()
        if arch.key() not in table:
            acc = float(acc_rng.uniform(10, 95))
            table[arch.key()] = Result(metrics={"accuracy": acc, "test_accuracy": acc - 1.0},
                                       costs={"params": float(acc_rng.integers(10**5, 10**6)),
                                              "flops": float(acc_rng.integers(10**7, 10**8))})
    return table, name


def search_loop(store: TrialStore, table: dict[str, Result], n: int, seed: int, dedup: str) -> dict[str, float]:
    """Run ``n`` trials; returns total seconds, seconds inside store calls, samples drawn."""
    _, sample, rng = make_sampler(seed)
    in_store, drawn, seen_keys = 0.0, 0, set()
    start = time.perf_counter()
    for i in range(n):
        while True:
            arch = sample()
            drawn += 1
            if dedup == "strategy":
                key = arch.key()
                if key not in seen_keys:
                    seen_keys.add(key)
                    break
                continue
            t0 = time.perf_counter()
            seen = store.find(arch)
            in_store += time.perf_counter() - t0
            if not seen:
                break
        t0 = time.perf_counter()
        trial = store.create_trial(Candidate(arch), seed=i)
        in_store += time.perf_counter() - t0
        result = table[arch.key()]
        t0 = time.perf_counter()
        store.complete_trial(trial.id, result, meta={"strategy": {"told": i + 1, "rng": rng.bit_generator.state}})
        in_store += time.perf_counter() - t0
    total = time.perf_counter() - start
    assert len(store) == n
    return {"total_s": total, "store_s": in_store, "drawn": drawn}


def run_round(kind: str, table: dict[str, Result], n: int, seed: int, workdir: Path) -> dict[str, float]:
    """``kind`` is ``memory`` / ``sqlite`` / ``sqlite-full``, optionally with ``+find`` (dedup through the store)."""
    dedup = "store" if kind.endswith("+find") else "strategy"
    kind = kind.removesuffix("+find")
    if kind == "memory":
        with MemoryStore() as store:
            return search_loop(store, table, n, seed, dedup)
    path = workdir / f"{kind}-{time.monotonic_ns()}.db"
    with SQLiteStore(path, synchronous="FULL" if kind == "sqlite-full" else "NORMAL") as store:
        out = search_loop(store, table, n, seed, dedup)
        out["integrity"] = store.integrity_check() == "ok"
    out["db_mb"] = sum(p.stat().st_size for p in workdir.glob(path.name + "*")) / 2**20
    return out


def summarise(rounds: list[dict[str, float]], n: int) -> dict[str, Any]:
    med = statistics.median(r["total_s"] for r in rounds)
    store = statistics.median(r["store_s"] for r in rounds)
    return {"trials": n, "rounds": len(rounds), "total_s": med, "store_s": store,
            "us_per_trial": med / n * 1e6, "store_us_per_trial": store / n * 1e6,
            "all_rounds_total_s": [r["total_s"] for r in rounds],
            **{k: rounds[-1][k] for k in ("drawn", "integrity", "db_mb") if k in rounds[-1]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--full-trials", type=int, default=2_000, help="trials for the synchronous=FULL run (0: skip)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="where the databases go (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "bench_store.json")
    args = ap.parse_args()

    table, space = make_table(args.trials, args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.workdir))
    main_kinds = ("memory", "sqlite", "memory+find", "sqlite+find")
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in main_kinds}
    for kind in main_kinds:  # untimed warm-up: imports, allocator, caches
        run_round(kind, table, min(args.trials, 500), args.seed, workdir)
    for _ in range(args.repeats):  # interleaved, so machine noise hits both stores alike
        for kind in main_kinds:
            rounds[kind].append(run_round(kind, table, args.trials, args.seed, workdir))
    if args.full_trials:  # an fsync per commit: measured on fewer trials, against memory on the same count
        rounds["sqlite-full"] = [run_round("sqlite-full", table, args.full_trials, args.seed, workdir)]
        rounds["memory-small"] = [run_round("memory", table, args.full_trials, args.seed, workdir)]
    results = {k: summarise(v, args.trials if k in main_kinds else args.full_trials) for k, v in rounds.items()}
    mem, sql = results["memory"], results["sqlite"]
    report = {
        "benchmark": "bench_store", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "workdir": str(workdir)},
        "command": "python benchmarks/bench_store.py " + " ".join(
            f"--{k.replace('_', '-')} {os.path.relpath(v) if isinstance(v, Path) else v}"
            for k, v in vars(args).items() if v is not None),
        "space": space, "results": results,
        "ratio_total_sqlite_over_memory": sql["total_s"] / mem["total_s"],
        "ratio_store_only_sqlite_over_memory": sql["store_s"] / mem["store_s"],
        "ratio_total_with_store_dedup": results["sqlite+find"]["total_s"] / results["memory+find"]["total_s"],
        "target_ratio": 2.0,
    }
    if "sqlite-full" in results:
        full, small = results["sqlite-full"], results["memory-small"]
        report["ratio_total_sqlite_full_over_memory"] = full["total_s"] / small["total_s"]
    write_json(args.out, report)
    for p in workdir.iterdir():
        p.unlink()
    workdir.rmdir()
    print(json.dumps({k: v for k, v in report.items() if k.startswith("ratio")}, indent=2))
    for k, v in results.items():
        print(f"{k:13s} {v['trials']:6d} trials  {v['us_per_trial']:8.1f} us/trial  "
              f"(store calls {v['store_us_per_trial']:7.1f} us/trial)")


if __name__ == "__main__":
    main()
