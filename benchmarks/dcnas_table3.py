"""DCNAS evidence in miniature on NAS-Bench-201 (dcnas.txt Table 3 and the training overhead).

One variant per call (each a run folder under ``--work``, not committed); the row goes into
``benchmarks/results/dcnas_table3.json`` (keyed by variant and seed, so calls accumulate):

``global``  M = 1: global weight sharing (the SPOS supernet), trained on the pool A;
``random``  M = 2, every member of A on uniformly random copies fixed at the start (Table 3 "Random Assign");
``dcnas``   M = 2, the copies learnt by Algorithm 1;
``dcnas-M3`` / ``dcnas-N300``: Table 4 (M = 3) and Table 5 (N = 300 instead of 1,000) in miniature;
``global-3x``: global sharing for 3.2x the epochs (95.6 = 19 + 18 x 3.2 + 19), about DCNAS's wall-clock for its
30 epochs (equal wall-clock instead of equal epochs).

All variants share ``configs/dcnas-nb201-cpu.yaml`` (10,000 images at 16 px, N = 1000, 30 epochs) with the
overrides below (no search, one thread) (equal epochs: T_w + L 2T + T_f;
pair-step epochs of ``global`` / ``random`` are plain training epochs) and no search; each supernet gets Kendall
tau against the NB201 table (cifar10_test_hp200) on ``kendall_n`` members of A (the same members for every
variant of a seed), with params_tau of the same members. ``train_seconds`` is the wall time of the training
phases (clustering included), from which the overhead ratio dcnas / global follows.

    python benchmarks/dcnas_table3.py --variant dcnas --seed 0 --work /tmp/dcnas_ev
    python benchmarks/dcnas_table3.py --report      # the markdown table of docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from nasforge.methods.dcnas import load_dcnas_config, run_dcnas

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dcnas_table3.json"
OVERRIDES = ["search=false", "kendall_n=100", "progress=false", "threads=1"]
VARIANTS = {"global": ["M=1", "sharing=random"], "random": ["M=2", "sharing=random"],
            "dcnas": ["M=2", "sharing=learned"], "dcnas-M3": ["M=3", "sharing=learned"],
            "dcnas-N300": ["M=2", "sharing=learned", "N=300"],
            "global-3x": ["M=1", "sharing=random", "T_w=19", "T=1.6", "T_f=19"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=sorted(VARIANTS))
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/dcnas_ev")
    ap.add_argument("--set", dest="extra", action="append", default=[])
    args = ap.parse_args()
    if args.report:
        return report()
    if args.variant is None:
        ap.error("--variant is required (or --report)")
    overrides = OVERRIDES + VARIANTS[args.variant] + [f"seed={args.seed}"] + args.extra
    config = load_dcnas_config(ROOT / "configs" / "dcnas-nb201-cpu.yaml", overrides)
    out = Path(args.work) / f"{args.variant}-s{args.seed}"
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    summary = run_dcnas(config, out, resume=out.exists())
    wall = time.perf_counter() - t0
    row = {"variant": args.variant, "seed": args.seed, "overrides": overrides, **summary.get("rank", {}),
           "steps": summary["steps"], "epochs": summary["epochs"], "train_seconds": summary["train_seconds"],
           "wall_seconds": round(wall, 1), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": "2 shared CPU cores",
           "python": platform.python_version()}
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": []}
    results["rows"] = [r for r in results["rows"] if (r["variant"], r["seed"]) != (args.variant, args.seed)] + [row]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(row, indent=2))


def report() -> None:
    rows = sorted(json.loads(RESULTS.read_text())["rows"], key=lambda r: (list(VARIANTS).index(r["variant"]),
                                                                          r["seed"]))
    base = {r["seed"]: r["train_seconds"] for r in rows if r["variant"] == "global"}
    print("| variant | seed | Kendall tau | Spearman rho | params tau | train s | / global | load (start) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['train_seconds'] / base[r['seed']]:.2f}" if r["seed"] in base else "-"
        print(f"| {r['variant']} | {r['seed']} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} | "
              f"{r['params_tau']:.3f} | {r['train_seconds']:.0f} | {ratio} | {r['loadavg_start'][0]:.1f} |")


if __name__ == "__main__":
    main()
