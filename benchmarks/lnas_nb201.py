"""LNAS evidence in miniature on NAS-Bench-201 (issue 14, "Evidence", second bullet): first-order DARTS vs LNAS
variant 2 (alpha pruning during the search) at the CPU budget of configs/darts-nb201-cpu.yaml and
configs/lnas-nb201-cpu.yaml (NB201 cell, C=8, N=1, CIFAR-10 subset at 16 px, 10 search epochs of 40 steps). The
question: does pruning alpha avoid DARTS' all-skip collapse (NB201 test accuracy 54.30)? Each run's derived cell is
looked up in the NB201 table (200-epoch CIFAR-10 test accuracy). LNAS' retraining is cut to 1 epoch here (its
accuracy is not the point of this benchmark). Results are appended per run to the JSON, so a killed invocation
keeps what finished; the machine load (os.getloadavg) is recorded before and after each run.

    python benchmarks/lnas_nb201.py --seeds 0 --methods darts lnas --work /tmp/lnas_ev
    python benchmarks/lnas_nb201.py --seeds 0 --methods darts --set search.order=2 --work /tmp/lnas_ev
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
RESULTS = ROOT / "benchmarks" / "results" / "lnas_nb201.json"


def one(method: str, seed: int, work: Path, extra: list[str]) -> dict:
    out = work / "-".join([method, f"s{seed}", *(e.replace("=", "").replace(".", "_") for e in extra)])
    common = [f"seed={seed}", "progress=false", *extra]
    t0 = time.perf_counter()
    load = os.getloadavg()
    if method == "darts":
        config = load_darts_config(ROOT / "configs" / "darts-nb201-cpu.yaml", common)
        result = run_darts(config, out, resume=out.exists())
    else:
        config = load_lnas_config(ROOT / "configs" / "lnas-nb201-cpu.yaml",
                                  [*common, "retrain_epochs=1", "variant=2"])
        result = run_lnas(config, out, resume=out.exists())
    hist = result["history"]
    return {"method": method, "seed": seed, "overrides": common, "arch": result["arch"],
            "nb201_test_accuracy": result["nb201"]["test_accuracy"],
            "skip_edges": result["arch"].count("skip_connect"),
            "alpha_sparsity": result.get("alpha_sparsity", 0.0), "sparsity": result.get("sparsity"),
            "search_seconds": result["search_seconds"], "wall_s": round(time.perf_counter() - t0, 1),
            "final_search_val_accuracy": hist[-1]["val_accuracy"],
            "final_probabilities": hist[-1]["probabilities"], "load_before": load, "load_after": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=["darts", "lnas"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lnas_ev"))
    ap.add_argument("--set", dest="extra", action="append", default=[])
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
    data.update(machine="2 shared CPU cores", python=platform.python_version(), torch=torch.__version__)
    for seed in args.seeds:
        for method in args.methods:
            row = one(method, seed, args.work, args.extra)
            row["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            data["runs"] = [r for r in data["runs"] if (r["method"], r["seed"], r["overrides"]) !=
                            (method, seed, row["overrides"])] + [row]
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(data, indent=1))
            print(json.dumps({k: row[k] for k in ("method", "seed", "arch", "nb201_test_accuracy", "wall_s")}),
                  flush=True)


if __name__ == "__main__":
    main()
