"""MENAS lottery-ticket exploration cost, this tree against a baseline git ref, interleaved in one run (issue 12).

Runs ``bench_menas.py lottery`` (configs/menas-cpu.yaml unmodified, K=40 proposals of one trained net, one torch
thread) alternately on the working tree's ``src/`` and on ``--baseline``'s (``git archive`` into a temporary
folder), one subprocess per (round, version), the order alternating each round. Per version, the medians over
rounds of: (a) exploration time / the net's own E_init training (wall and CPU seconds, both measured in the same
subprocess) and (b) images/s through the proposals / plain inference of the same pruned networks (wall, and
the same ratio in process CPU seconds, which a loaded machine disturbs less). Results:
``benchmarks/results/menas_lottery_ab.json``; docs/benchmarks.md "Lottery-ticket exploration".

    python benchmarks/bench_lottery_ab.py --baseline main --rounds 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from bench_sandwich_ab import ROOT, export_src

RESULTS = Path(__file__).resolve().parent / "results"


def one_round(src: Path, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_menas.py"), "lottery", "--rounds", str(args.inner_rounds),
           "--k", str(args.k), "--seed", str(args.seed), "--out-dir", str(out_dir)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    rep = json.loads((out_dir / "menas_lottery_cost.json").read_text(encoding="utf-8"))
    rounds = rep["rounds"]
    return {"explore_over_train_wall": rep["a_fraction_of_training"]["wall_median"],
            "explore_over_train_cpu": rep["a_fraction_of_training"]["cpu_median"],
            "throughput_ratio": rep["b_throughput_ratio"]["median"],
            "throughput_ratio_cpu": statistics.median(r["plain"]["cpu_s"] / r["explore"]["cpu_s"] for r in rounds),
            "explore_s": statistics.median(r["explore"]["total_s"] for r in rounds),
            "explore_cpu_s": statistics.median(r["explore"]["cpu_s"] for r in rounds),
            "plain_s": statistics.median(r["plain"]["seconds"] for r in rounds),
            "train_wall_s": rep["train"]["wall_s"], "train_cpu_s": rep["train"]["cpu_s"],
            "share": rep["explore_share_median"],
            "max_abs_accuracy_diff": rep["accuracy_max_abs_diff_explore_vs_plain"],
            "load_avg_1m": rep["machine"]["load_avg_1m"], "settings": rep["settings"]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", help="git ref of the baseline code")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inner-rounds", type=int, default=1, help="explore / plain rounds inside each subprocess")
    ap.add_argument("--k", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "menas_lottery_ab.json")
    args = ap.parse_args(argv)
    started = dt.datetime.now().isoformat(timespec="seconds")
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="lottery_ab_") as tmp:
        versions = {"baseline": export_src(args.baseline, Path(tmp)), "this": ROOT / "src"}
        rows: dict[str, list[dict[str, Any]]] = {k: [] for k in versions}
        for r in range(args.rounds):
            for name in (list(versions) if r % 2 == 0 else list(reversed(versions))):
                out_dir = Path(tmp) / f"{name}-{r}"
                out_dir.mkdir()
                row = one_round(versions[name], args, out_dir)
                rows[name].append(row)
                print(f"round {r} {name:8s} explore/train wall {row['explore_over_train_wall']:.3f} cpu "
                      f"{row['explore_over_train_cpu']:.3f}  throughput {row['throughput_ratio']:.3f} (cpu "
                      f"{row['throughput_ratio_cpu']:.3f})  explore "
                      f"{row['explore_s']:.1f} s  plain {row['plain_s']:.1f} s  train {row['train_wall_s']:.1f} s  "
                      f"load {row['load_avg_1m']:.1f}", flush=True)
    keys = ("explore_over_train_wall", "explore_over_train_cpu", "throughput_ratio", "throughput_ratio_cpu",
            "explore_s", "plain_s",
            "train_wall_s", "train_cpu_s")
    results = {name: {**{f"median_{k}": statistics.median(x[k] for x in rs) for k in keys}, "rounds": rs}
               for name, rs in rows.items()}
    for name, res in results.items():
        print(f"{name}: explore/train wall {res['median_explore_over_train_wall']:.3f} (cpu "
              f"{res['median_explore_over_train_cpu']:.3f}), throughput {res['median_throughput_ratio']:.3f} (cpu "
              f"{res['median_throughput_ratio_cpu']:.3f})")
    report = {"benchmark": "bench_lottery_ab", "date": started, "baseline": f"{args.baseline} ({rev})",
              "this": f"working tree at {head} (+ uncommitted changes, if any)",
              "targets": {"explore_over_train": 0.10, "throughput_ratio": 0.9},
              "command": "python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:])),
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "cpu_count": os.cpu_count(),
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
