"""lnas.txt Table 1 in miniature (issue 14, "Evidence", first bullet), on the shipped CIFAR-10 subset at 16 px over
the NB201 cell: the DARTS baseline vs LNAS variant 1 (weight pruning with rewinding) vs variant 2 (alpha pruning)
per sparsity, each derived network retrained ``--retrain`` epochs (variant 1: one pruning round at half of them,
the paper's "prune at epoch 10 of 20"); reported: best held-out accuracy up to the half and up to the end of the
retraining (Table 1's "Epoch 10 / Epoch 20" columns), FLOPs of the non-zero weights, search and retraining time.
The search is configs/darts-nb201-cpu.yaml / lnas-nb201-cpu.yaml with ``--steps`` steps per epoch. Each finished
run is appended to ``benchmarks/results/lnas_table1.json``.

    python benchmarks/lnas_table1.py --sparsities 0.5 0.95 --retrain 4 --steps 20 --work /tmp/lnas_t1
    python benchmarks/lnas_table1.py --sparsities 0.25 0.5 0.75 0.95 --retrain 8 --seed 1 --work /tmp/lnas_t1
    python benchmarks/lnas_table1.py --report --retrain 8
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from nasforge.methods.darts import load_darts_config, run_darts
from nasforge.methods.lnas import load_lnas_config, run_lnas

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lnas_table1.json"


def row(name: str, sparsity: float | None, seed: int, result: dict, retrain: int, wall: float, load: tuple) -> dict:
    timeline = result["retrain"]["timeline"]
    half = retrain // 2
    return {"run": name, "sparsity": sparsity, "seed": seed, "retrain_epochs": retrain, "arch": result["arch"],
            "nb201_test_accuracy": result["nb201"]["test_accuracy"],
            "best_acc_half": max(timeline[:half]), "best_acc_end": max(timeline), "timeline": timeline,
            "weight_sparsity": result["costs"]["weight_sparsity"], "nonzero_flops": result["costs"]["nonzero_flops"],
            "nonzero_params": result["costs"]["nonzero_params"], "params": result["costs"]["params"],
            "alpha_sparsity": result.get("alpha_sparsity", 0.0), "search_seconds": result["search_seconds"],
            "wall_s": round(wall, 1), "load_before": load, "load_after": os.getloadavg(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def key(r: dict) -> tuple:
    """A row's identity: run, sparsity, seed and retraining epochs (rows from before seeds were recorded: seed 0,
    4 epochs)."""
    return r["run"], r["sparsity"], r.get("seed", 0), r.get("retrain_epochs", 4)


def report(retrain: int) -> None:
    """The markdown table of docs/benchmarks.md: rows of ``retrain`` epochs, mean +- sample std over their seeds of
    the held-out accuracy after epoch ``retrain // 2`` and after the last epoch (not the best so far: variant 1's
    best would include the epochs before its pruning)."""
    import statistics

    rows = [r for r in json.loads(RESULTS.read_text())["runs"] if r.get("retrain_epochs", 4) == retrain]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["run"], r["sparsity"]), []).append(r)

    def ms(values: list[float]) -> str:
        sd = f" +- {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        return f"{statistics.fmean(values):.2f}{sd}"

    print(f"| run | p | seeds | NB201 acc. | epoch {retrain // 2} | epoch {retrain} | weight sparsity | "
          "alpha sparsity | non-zero FLOPs (M) | search s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {"darts": 0, "v1": 1, "v2": 2}
    for (run, p), rs in sorted(groups.items(), key=lambda kv: (kv[0][1] or 0, order[kv[0][0]])):
        rs = sorted(rs, key=lambda r: r.get("seed", 0))
        print(f"| {run} | {p if p is not None else '-'} | {','.join(str(r.get('seed', 0)) for r in rs)} | "
              f"{ms([r['nb201_test_accuracy'] for r in rs])} | {ms([r['timeline'][retrain // 2 - 1] for r in rs])} | "
              f"{ms([r['timeline'][-1] for r in rs])} | {statistics.fmean(r['weight_sparsity'] for r in rs):.2f} | "
              f"{statistics.fmean(r['alpha_sparsity'] for r in rs):.2f} | "
              f"{statistics.fmean(r['nonzero_flops'] for r in rs) / 1e6:.2f} | "
              f"{statistics.fmean(r['search_seconds'] for r in rs):.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.95])
    ap.add_argument("--retrain", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lnas_t1"))
    ap.add_argument("--report", action="store_true", help="print the table of the --retrain rows and exit")
    args = ap.parse_args()
    if args.report:
        return report(args.retrain)
    torch.set_num_threads(1)
    common = [f"seed={args.seed}", "progress=false", f"search.steps_per_epoch={args.steps}",
              f"retrain_epochs={args.retrain}"]
    jobs = [("darts", None)] + [(f"v{v}", p) for p in args.sparsities for v in (1, 2)]
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
    data.update(machine="2 shared CPU cores", python=platform.python_version(), torch=torch.__version__,
                settings={"steps_per_epoch": args.steps, "seed": "per row", "retrain_epochs": "per row"})
    for name, p in jobs:
        out = args.work / f"s{args.seed}-r{args.retrain}" / (name if p is None else f"{name}-p{p}")
        t0, load = time.perf_counter(), os.getloadavg()
        if p is None:
            result = run_darts(load_darts_config(ROOT / "configs" / "darts-nb201-cpu.yaml", common), out,
                               resume=out.exists())
        else:
            extra = [f"variant={name[1]}", f"sparsity={p}", f"k={args.retrain // 2}", "n_weights=1"]
            result = run_lnas(load_lnas_config(ROOT / "configs" / "lnas-nb201-cpu.yaml", [*common, *extra]), out,
                              resume=out.exists())
        r = row(name, p, args.seed, result, args.retrain, time.perf_counter() - t0, load)
        if RESULTS.is_file():  # re-read: another invocation (another seed) may have added rows meanwhile
            data["runs"] = json.loads(RESULTS.read_text())["runs"]
        data["runs"] = [x for x in data["runs"] if key(x) != key(r)] + [r]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=1))
        print(json.dumps({k: r[k] for k in ("run", "sparsity", "best_acc_half", "best_acc_end", "nonzero_flops",
                                              "wall_s")}), flush=True)


if __name__ == "__main__":
    main()
