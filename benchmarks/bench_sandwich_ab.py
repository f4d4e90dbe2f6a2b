"""Sandwich step / static largest step, this tree against a baseline git ref, interleaved in one run (issue 12).

``bench_supernet.py --experiments sandwich`` measures the ratio for one version of the code. This script runs it
alternately on two versions of ``src/``: the working tree's and ``--baseline`` (a git ref, exported with
``git archive`` into a temporary folder), one subprocess per (round, version), the order alternating each round,
so both versions see the same machine load. Each subprocess times its own ratio (sandwich vs extracted largest
child, interleaved inside it, ``--inner-rounds`` rounds); the headline per version is the median over the outer
rounds. Results: ``benchmarks/results/supernet_sandwich_ab.json``; docs/benchmarks.md "Sandwich ratio".

    python benchmarks/bench_sandwich_ab.py --baseline main --rounds 5 --settings bignas-cpu table1
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def export_src(ref: str, into: Path) -> Path:
    """``src/`` of git ref ``ref`` extracted under ``into`` (no worktree, no checkout)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def one_round(src: Path, setting: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """One subprocess of bench_supernet.py's sandwich experiment with ``src`` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_supernet.py"), "--experiments", "sandwich",
           "--sandwich-settings", setting, "--sandwich-rounds", str(args.inner_rounds),
           "--sandwich-steps", str(args.steps), "--threads", str(args.threads), "--out-dir", str(out_dir)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    report = json.loads((out_dir / "supernet_sandwich.json").read_text(encoding="utf-8"))
    r = report["results"][setting]
    return {"ratio": r["ratio"], "ratio_cpu": r["ratio_cpu"], "ms_per_step": r["ms_per_step"],
            "static_children_over_largest": r["static_children_over_largest"],
            "analytic_flops_ratio": r["analytic_flops_ratio"], "load_avg_1m": report["machine"]["load_avg_1m"]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", help="git ref of the baseline code")
    ap.add_argument("--settings", nargs="+", default=["bignas-cpu", "table1"], choices=["bignas-cpu", "table1"])
    ap.add_argument("--rounds", type=int, default=5, help="outer rounds (one subprocess per version each)")
    ap.add_argument("--inner-rounds", type=int, default=2, help="interleaved rounds inside each subprocess")
    ap.add_argument("--steps", type=int, default=3, help="training steps per side per inner round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "supernet_sandwich_ab.json")
    args = ap.parse_args(argv)
    started = dt.datetime.now().isoformat(timespec="seconds")
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sandwich_ab_") as tmp:
        versions = {"baseline": export_src(args.baseline, Path(tmp)), "this": ROOT / "src"}
        for setting in args.settings:
            rows: dict[str, list[dict[str, Any]]] = {k: [] for k in versions}
            for r in range(args.rounds):
                for name in (list(versions) if r % 2 == 0 else list(reversed(versions))):
                    out_dir = Path(tmp) / f"{setting}-{name}-{r}"
                    out_dir.mkdir()
                    row = one_round(versions[name], setting, args, out_dir)
                    rows[name].append(row)
                    print(f"{setting:10s} round {r} {name:8s} ratio {row['ratio']:.3f} (cpu {row['ratio_cpu']:.3f}) "
                          f"sandwich {row['ms_per_step']['sandwich']:.0f} ms, largest "
                          f"{row['ms_per_step']['largest_alone']:.0f} ms, load {row['load_avg_1m']:.1f}", flush=True)
            results[setting] = {
                name: {"median_ratio": statistics.median(x["ratio"] for x in rs),
                       "median_ratio_cpu": statistics.median(x["ratio_cpu"] for x in rs),
                       "median_sandwich_ms": statistics.median(x["ms_per_step"]["sandwich"] for x in rs),
                       "median_largest_ms": statistics.median(x["ms_per_step"]["largest_alone"] for x in rs),
                       "median_static_children_over_largest": statistics.median(
                           x["static_children_over_largest"] for x in rs),
                       "analytic_flops_ratio": rs[0]["analytic_flops_ratio"], "rounds": rs}
                for name, rs in rows.items()}
            b, t = results[setting]["baseline"], results[setting]["this"]
            print(f"{setting}: baseline {b['median_ratio']:.3f} -> this {t['median_ratio']:.3f} (cpu "
                  f"{b['median_ratio_cpu']:.3f} -> {t['median_ratio_cpu']:.3f}); static children / largest "
                  f"{t['median_static_children_over_largest']:.3f}; analytic {t['analytic_flops_ratio']:.3f}",
                  flush=True)
    report = {"benchmark": "bench_sandwich_ab", "date": started, "baseline": f"{args.baseline} ({rev})",
              "this": f"working tree at {head} (+ uncommitted changes, if any)", "target_ratio": 2.3,
              "command": "python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:])),
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "cpu_count": os.cpu_count(),
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
