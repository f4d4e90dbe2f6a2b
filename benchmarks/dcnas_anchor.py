"""dcnas.txt Table 2 anchor in miniature (issue 13, "Evidence", third bullet): the cell DCNAS finds on NB201 at the
CPU config, against random search given the same CPU time.

1. DCNAS: ``configs/dcnas-nb201-cpu.yaml`` as shipped (30 epochs, N = 1000, M = 2, learnt copies, then the SPOS
   evolution inside A with the one-shot evaluator), one torch thread, ``kendall_n=0`` (no rank-consistency pass:
   it is not part of a search). Its CPU seconds (``time.process_time`` of this process) are the budget.
2. Random search: uniformly sampled NB201 cells (seeded), each trained from scratch with the shipped train
   evaluator (same C=8 N=1 network, the same 9k/1k split at 16 px, ``--epochs`` epochs, the nb201 recipe,
   BN calibrated as ``calibrate_bn: auto`` does), one at a time until the same CPU time is used; the best by
   validation accuracy is the result.
3. Both results are looked up in the NB201 table (``cifar10_test_hp200``, the 200-epoch CIFAR-10 test accuracy;
   optimum 94.37) with their percentile among the 15,625 cells.

Rows are appended to ``benchmarks/results/dcnas_anchor.json`` keyed by (method, seed).

    python benchmarks/dcnas_anchor.py --seed 0 --work /tmp/dcnas_anchor
    python benchmarks/dcnas_anchor.py --report
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from nasforge.eval.derived import nb201_accuracy
from nasforge.eval.tabular import TabularEvaluator
from nasforge.eval.train_eval import TrainEvaluator
from nasforge.methods.dcnas import load_dcnas_config, run_dcnas
from nasforge.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dcnas_anchor.json"
CONFIG = ROOT / "configs" / "dcnas-nb201-cpu.yaml"
_TABLE: np.ndarray | None = None


def percentile(acc: float) -> float:
    """Share (%) of the NB201 table's cells whose 200-epoch CIFAR-10 test accuracy is below ``acc``."""
    global _TABLE
    if _TABLE is None:
        table = TabularEvaluator.nb201("cifar10", "hp200-test", costs=False)
        _TABLE = np.asarray([table.evaluate(a).metrics["test_accuracy"] for a in table.architectures()])
    return round(float((_TABLE < acc).mean() * 100), 1)


def save(row: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
    data.update(machine="2 shared CPU cores", python=platform.python_version(), torch=torch.__version__)
    data["runs"] = [r for r in data["runs"] if (r["method"], r["seed"]) != (row["method"], row["seed"])] + [row]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))


def dcnas(seed: int, work: Path) -> dict:
    out = work / f"dcnas-s{seed}"
    config = load_dcnas_config(CONFIG, [f"seed={seed}", "threads=1", "kendall_n=0", "progress=false"])
    load, t0, c0 = os.getloadavg(), time.perf_counter(), time.process_time()
    summary = run_dcnas(config, out, resume=out.exists())
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    space = config.built_space()
    arch = space.parse(summary["best"]["arch"])
    truth = nb201_accuracy(arch)
    return {"method": "dcnas", "seed": seed, "arch": summary["best"]["arch"],
            "search_accuracy": summary["best"]["accuracy"], "nb201_test_accuracy": truth["test_accuracy"],
            "percentile": percentile(truth["test_accuracy"]), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "train_seconds": summary.get("train_seconds"), "search_seconds": summary.get("search_seconds"),
            "load_before": load, "load_after": os.getloadavg(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def random_search(seed: int, cpu_budget: float, epochs: float) -> dict:
    config = load_dcnas_config(CONFIG, [f"seed={seed}"])
    space = config.built_space()
    evaluator = TrainEvaluator(space, config.data, epochs=epochs, device="cpu", threads=1, checkpoints=False,
                               train_config=TrainConfig.from_recipe("nb201", batch_size=128), eval_batch_size=256)
    rng = np.random.default_rng(seed)
    load, t0, c0 = os.getloadavg(), time.perf_counter(), time.process_time()
    trials: list[dict] = []
    while time.process_time() - c0 < cpu_budget:
        arch = space.sample(rng)
        res = evaluator.evaluate(arch, seed=seed * 1000 + len(trials))
        trials.append({"arch": space.format(arch), "val_accuracy": res.metrics["accuracy"],
                       "nb201_test_accuracy": nb201_accuracy(arch)["test_accuracy"]})
        print(json.dumps(trials[-1]), flush=True)
    best = max(trials, key=lambda t: t["val_accuracy"])
    return {"method": "random", "seed": seed, "arch": best["arch"], "search_accuracy": best["val_accuracy"],
            "nb201_test_accuracy": best["nb201_test_accuracy"], "percentile": percentile(best["nb201_test_accuracy"]),
            "trials": trials, "epochs_per_trial": epochs, "cpu_budget_s": round(cpu_budget, 1),
            "cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "load_before": load, "load_after": os.getloadavg(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def report() -> None:
    data = json.loads(RESULTS.read_text())
    print("| method | seed | cell found | NB201 test acc. | percentile | trials | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(data["runs"], key=lambda r: (r["seed"], r["method"])):
        n = len(r.get("trials", [])) or "-"
        print(f"| {r['method']} | {r['seed']} | `{r['arch']}` | {r['nb201_test_accuracy']:.2f} | {r['percentile']} | "
              f"{n} | {r['cpu_s']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dcnas_anchor"))
    ap.add_argument("--epochs", type=float, default=3.0, help="training epochs per random-search trial")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        return report()
    torch.set_num_threads(1)
    row = dcnas(args.seed, args.work)
    save(row)
    print(json.dumps({k: v for k, v in row.items() if k != "trials"}), flush=True)
    rs = random_search(args.seed, row["cpu_s"], args.epochs)
    save(rs)
    print(json.dumps({k: v for k, v in rs.items() if k != "trials"}), flush=True)


if __name__ == "__main__":
    main()
