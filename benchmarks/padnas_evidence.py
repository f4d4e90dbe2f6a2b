"""PAD-NAS evidence in miniature on NAS-Bench-201 (issue 18; padnas.txt Tables 7 / 8, Fig. 7, the final front).

Three steps, each writing into ``--work`` (run folders, not committed) and the last one into
``benchmarks/results/padnas_evidence.json``:

``runs``    PAD-NAS with M = 2 (I-Supernet), 3 (P-Supernet) and 4 (PAD-NAS) at equal total training epochs for each
            seed (``configs/padnas-nb201-cpu.yaml`` at 16x16 px; the split of the epochs over the training stages
            follows the paper's 120/80/40 for M = 4; M = 3 gets 2/3 + 1/3, M = 2 all of them). Each stage's
            supernet gets Kendall tau against the NB201 table on ``kendall_n`` uniform cells of its own space.
``fig7``    Fig. 7: on the I-Supernet of one seed, CES (the ``nsga2`` strategy with the latency bounds) and the SPOS
            evolution (``spos-evolution``, same bounds, same number of evaluations) are each run with 5 seeds; the
            op distribution of what each keeps (CES: non-domination rank < 10; SPOS: the same number of best
            architectures by one-shot accuracy) is estimated per layer; the variance over the 5 seeds is reported.
``report``  Table 8 (tau per stage and per M, params_tau of the same cells), Table 7 (random architectures under the
            latency bound from the designed space vs the original one: the exact mean over every cell, 5-cell
            draws as in the paper, and random searches of k = 10 / 50 cells picked by 12-epoch validation accuracy), and each PAD-NAS run's best cell vs the optimum under the bound and vs random
            search with the same supernet and the same number of evaluations.

    python benchmarks/padnas_evidence.py runs --seeds 0 1 2 --total-epochs 60 --work /tmp/padnas_ev
    python benchmarks/padnas_evidence.py fig7 --work /tmp/padnas_ev --seed 0
    python benchmarks/padnas_evidence.py report --work /tmp/padnas_ev
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from nasforge.cost import CostFunction
from nasforge.eval.oneshot import OneShotEvaluator
from nasforge.methods.padnas import load_padnas_config, run_padnas
from nasforge.registry import get_space
from nasforge.strategies import Constraint, get_strategy
from nasforge.supernet.lut import load_lut
from nasforge.supernet.opsets import op_frequencies, ranked_op_frequencies
from nasforge.supernet.run import open_supernet
from nasforge.trial import Trial, TrialState

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "padnas-nb201-cpu.yaml"
RESULT = ROOT / "benchmarks" / "results" / "padnas_evidence.json"
ASSETS = ROOT / "src" / "nasforge" / "assets" / "nb201"
SPLITS = {2: (1.0,), 3: (2 / 3, 1 / 3), 4: (1 / 2, 1 / 3, 1 / 6)}  # paper, M = 4: 120 / 80 / 40 of 240
LR = (2.0, 0.4, 0.4)  # the one-shot core's 16 px SPOS rate, and the paper's 0.5 -> 0.1 ratio for fine-tuning


def _overrides(m: int, total: float, seed: int, args: argparse.Namespace) -> list[str]:
    epochs = [round(total * f, 3) for f in SPLITS[m]]
    return [f"M={m}", f"epochs={json.dumps(epochs)}", f"lr={json.dumps(list(LR[:m - 1]))}", f"seed={seed}",
            "data.image_size=16", "data.crop_padding=2", f"population_size={args.population}",
            f"max_iterations={args.iterations}", f"kendall_n={args.kendall_n}", "progress=false",
            f"threads={args.threads}", f"name=padnas-ev-m{m}-s{seed}"]


def cmd_runs(args: argparse.Namespace) -> None:
    work = Path(args.work)
    for seed in args.seeds:
        for m in args.M:
            out = work / f"M{m}_s{seed}"
            if (out / "padnas.json").is_file() and json.loads((out / "padnas.json").read_text()).get("best"):
                print(f"{out}: done", flush=True)
                continue
            config = load_padnas_config(CONFIG, _overrides(m, args.total_epochs, seed, args))
            start = time.perf_counter()
            summary = run_padnas(config, out, resume=(out / "padnas.sqlite").exists())
            taus = [s.get("kendall_tau") for s in summary["stages"]]
            print(f"{out}: {time.perf_counter() - start:.0f} s, tau per stage {taus}, "
                  f"sizes {[s['size'] for s in summary['stages']]}", flush=True)


# ------------------------------------------------------------------------------------------------ NB201 truth
def _table() -> tuple[dict[str, float], dict[str, float]]:
    with gzip.open(ASSETS / "nb201_accuracy.csv.gz", "rt") as f:
        acc = {r["arch_str"]: float(r["cifar10_test_hp200"]) for r in csv.DictReader(f)}
    with gzip.open(ASSETS / "nb201_latency_ms.csv.gz", "rt") as f:
        lat = {r["arch_str"]: float(r["pixel3"]) for r in csv.DictReader(f)}
    return acc, lat


def _valid_hp12() -> dict[str, float]:
    """The 12-epoch CIFAR-10 validation accuracy of every cell: what a random search that trains each pick
    briefly would see (it selects by this and reports the 200-epoch test accuracy of its pick)."""
    with gzip.open(ASSETS / "nb201_accuracy.csv.gz", "rt") as f:
        return {r["arch_str"]: float(r["cifar10_valid_hp12"]) for r in csv.DictReader(f)}


def _random_search_table(pool: list[str], k: int, seeds: range, valid: dict, acc: dict) -> list[float]:
    """Per seed: k cells drawn without replacement from ``pool``, the best by 12-epoch validation accuracy,
    reported by its 200-epoch test accuracy."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        picks = [pool[i] for i in rng.choice(len(pool), min(k, len(pool)), replace=False)]
        out.append(acc[max(picks, key=lambda a: valid[a])])
    return out


def _in_space(op_sets: dict[str, list[str]], space, arch_strs) -> list[str]:
    restricted = space.restrict(op_sets)
    return [a for a in arch_strs if restricted.contains(space.parse(a))]


# ------------------------------------------------------------------------------------------------ Fig. 7
def _search(evaluator: OneShotEvaluator, lut, strategy_name: str, seed: int, lat: tuple[float, float],
            population: int, iterations: int, rank_limit: int, keep: int | None):
    space = evaluator.space
    cost_fn = CostFunction(space, tuple(evaluator.run.info["input_shape"]), evaluator.run.info["num_classes"],
                           lookup=lut.cost)
    hyper = {"population_size": population, "max_iterations": iterations}
    if strategy_name == "spos-evolution":
        hyper.update(mutation_num=population // 2, crossover_num=population // 2)
    else:
        hyper.update(cost="latency_ms")
    strategy = get_strategy(strategy_name, space, seed=seed, metric="accuracy", mode="max",
                            constraints=[Constraint("latency_ms", *lat)], cost_fn=cost_fn, **hyper)
    known: dict = {}
    trials = []
    i = 0
    while strategy.n_asked < strategy.budget:
        cand = strategy.ask(1)[0]
        if cand.arch.key() not in known:
            r = evaluator.evaluate(cand.arch)
            r.costs["latency_ms"] = float(lut.latency_ms(cand.arch))
            known[cand.arch.key()] = r
        t = Trial(id=i, arch=cand.arch, state=TrialState.COMPLETE, result=known[cand.arch.key()],
                  parents=cand.parents, generation=cand.generation)
        strategy.tell(t)
        trials.append(t)
        i += 1
    op_sets = space.op_sets()
    if strategy_name == "nsga2":
        freqs, counted = ranked_op_frequencies(op_sets, trials, strategy.ranks(), rank_limit)
    else:  # the same number of distinct architectures, best one-shot accuracy first
        best: dict = {}
        for t in sorted(trials, key=lambda t: -t.result.metrics["accuracy"]):
            best.setdefault(t.arch.key(), t.arch)
        chosen = list(best.values())[:keep]
        freqs, counted = op_frequencies(op_sets, chosen), len(chosen)
    return freqs, counted, len(known)


def cmd_fig7(args: argparse.Namespace) -> None:
    work = Path(args.work)
    run_dir = work / f"M2_s{args.seed}"
    config = load_padnas_config(CONFIG, _overrides(2, args.total_epochs, args.seed, args))
    run = open_supernet(run_dir)
    evaluator = OneShotEvaluator(run, calib_images=config.calib_images, score_images=config.score_images,
                                 batch_size=config.eval_batch_size, split=config.score_split, seed=args.seed,
                                 device="cpu", threads=args.threads)
    lut = load_lut(config.latency_lut)
    lat = (config.Lat_min, config.Lat_max)
    out = {"supernet": str(run_dir), "population": args.population, "iterations": args.iterations,
           "rank_limit": config.rank_limit, "seeds": list(range(5)), "ces": [], "spos": []}
    for s in range(5):
        start = time.perf_counter()
        freqs, counted, distinct = _search(evaluator, lut, "nsga2", 100 + s, lat, args.population, args.iterations,
                                           config.rank_limit, None)
        out["ces"].append({"seed": s, "frequencies": freqs, "counted": counted, "distinct": distinct})
        freqs2, counted2, distinct2 = _search(evaluator, lut, "spos-evolution", 100 + s, lat, args.population,
                                              args.iterations, config.rank_limit, counted)
        out["spos"].append({"seed": s, "frequencies": freqs2, "counted": counted2, "distinct": distinct2})
        print(f"fig7 seed {s}: CES kept {counted} of {distinct}, SPOS kept {counted2} of {distinct2} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    (work / "fig7.json").write_text(json.dumps(out, indent=1))


def _variance(runs: list[dict]) -> dict:
    labels = list(runs[0]["frequencies"])
    per_layer = {}
    for label in labels:
        ops = list(runs[0]["frequencies"][label])
        per_layer[label] = {op: float(np.var([r["frequencies"][label][op] for r in runs], ddof=1)) for op in ops}
    mean = {label: {op: float(np.mean([r["frequencies"][label][op] for r in runs])) for op in per_layer[label]}
            for label in labels}
    last = labels[-1]
    return {"mean_variance_all_layers": float(np.mean([v for d in per_layer.values() for v in d.values()])),
            "mean_variance_last_layer": float(np.mean(list(per_layer[last].values()))),
            "last_layer": last, "last_layer_mean": mean[last], "last_layer_variance": per_layer[last],
            "entropy_last_layer": float(-sum(p * np.log(p) for p in mean[last].values() if p > 0))}


# ------------------------------------------------------------------------------------------------ report
def _random_search_oneshot(run_dir: Path, config, lut, budget: int, seed: int, lat, acc, lat_of) -> dict:
    """Uniform cells of the final supernet's space under the latency bound, scored by the same supernet; the best
    one-shot cell's NB201 test accuracy."""
    run = open_supernet(run_dir)
    evaluator = OneShotEvaluator(run, calib_images=config.calib_images, score_images=config.score_images,
                                 batch_size=config.eval_batch_size, split=config.score_split, seed=seed,
                                 device="cpu")
    space = run.space
    pool = [a for a in _in_space(space.op_sets(), get_space("nb201"), acc) if lat[0] <= lat_of[a] <= lat[1]]
    rng = np.random.default_rng(seed)
    picks = [pool[i] for i in rng.choice(len(pool), size=min(budget, len(pool)), replace=False)]
    scored = [(evaluator.score(space.parse(a)), a) for a in picks]
    best = max(scored)[1]
    return {"evaluations": len(picks), "best_arch": best, "best_test_acc": acc[best]}


def cmd_report(args: argparse.Namespace) -> None:
    work = Path(args.work)
    acc, lat_of = _table()
    space = get_space("nb201")
    runs = {}
    for d in sorted(work.glob("M*_s*")):
        if (d / "padnas.json").is_file():
            s = json.loads((d / "padnas.json").read_text())
            if s.get("best"):
                runs[d.name] = (d, s)
    config = load_padnas_config(CONFIG, _overrides(4, args.total_epochs, 0, args))
    lat = (config.Lat_min, config.Lat_max)
    everything = list(acc)
    bounded = [a for a in everything if lat[0] <= lat_of[a] <= lat[1]]
    report: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
                    "command": " ".join(sys.argv), "total_epochs": args.total_epochs,
                    "population": args.population, "iterations": args.iterations, "kendall_n": args.kendall_n,
                    "latency": {"lut": config.latency_lut, "Lat_min": lat[0], "Lat_max": lat[1],
                                "cells_in_bound": len(bounded)},
                    "optimum_test_acc": max(acc.values()),
                    "optimum_test_acc_in_bound": max(acc[a] for a in bounded)}
    table8 = []
    for name, (d, s) in runs.items():
        m, seed = int(name[1]), int(name.split("_s")[1])
        for st in s["stages"]:
            if st.get("kendall"):
                table8.append({"M": m, "seed": seed, "stage": st["stage"], "size": st["size"],
                               "kendall_tau": st["kendall"]["kendall_tau"], "params_tau": st["kendall"]["params_tau"],
                               "n": st["kendall"]["n"], "train_s": st["timings"].get("train_s"),
                               "ces_s": st["timings"].get("ces_s")})
    report["table8_rows"] = table8
    summary8 = {}
    for m in sorted({r["M"] for r in table8}):
        last = [r for r in table8 if r["M"] == m and r["stage"] == m - 1]
        first = [r for r in table8 if r["M"] == m and r["stage"] == 1]
        summary8[f"M{m}"] = {"final_tau_mean": statistics.mean(r["kendall_tau"] for r in last),
                             "final_tau": [r["kendall_tau"] for r in last],
                             "final_params_tau": [r["params_tau"] for r in last],
                             "stage1_tau": [r["kendall_tau"] for r in first],
                             "final_size": [r["size"] for r in last]}
    report["table8"] = summary8
    table7, final = [], []
    for name, (d, s) in runs.items():
        m, seed = int(name[1]), int(name.split("_s")[1])
        if m < 3:
            continue
        designed = s["stages"][-1]["op_sets"]
        inside = [a for a in _in_space(designed, space, everything) if lat[0] <= lat_of[a] <= lat[1]]
        rng = np.random.default_rng(seed)
        draws_ad = [statistics.mean(acc[inside[i]] for i in rng.choice(len(inside), 5, replace=False))
                    for _ in range(1000)] if len(inside) >= 5 else []
        draws_or = [statistics.mean(acc[bounded[i]] for i in rng.choice(len(bounded), 5, replace=False))
                    for _ in range(1000)]
        valid = _valid_hp12()
        rs_table = {f"k{k}": {"designed": _random_search_table(inside, k, range(args.rs_seeds), valid, acc),
                              "original": _random_search_table(bounded, k, range(args.rs_seeds), valid, acc)}
                    for k in (10, 50)} if inside else {}
        table7.append({"M": m, "seed": seed, "designed_size": s["stages"][-1]["size"],
                       "random_search_by_valid_hp12": rs_table,
                       "designed_in_bound": len(inside),
                       "designed_mean": statistics.mean(acc[a] for a in inside) if inside else None,
                       "designed_std": statistics.pstdev(acc[a] for a in inside) if inside else None,
                       "original_mean": statistics.mean(acc[a] for a in bounded),
                       "original_std": statistics.pstdev(acc[a] for a in bounded),
                       "designed_5cell_mean_of_means": statistics.mean(draws_ad) if draws_ad else None,
                       "original_5cell_mean_of_means": statistics.mean(draws_or),
                       "p_designed_5cell_beats_original": float(np.mean(np.array(draws_ad) > np.array(draws_or)))
                       if draws_ad else None})
        best = s["best"]["arch"]
        budget = sum(st.get("evaluated") or 0 for st in s["stages"][-1:])
        rs = [_random_search_oneshot(d, config, load_lut(config.latency_lut), budget, 1000 + r, lat, acc, lat_of)
              for r in range(args.random_repeats)]
        final.append({"M": m, "seed": seed, "best_arch": best, "best_test_acc": acc[best],
                      "best_latency_ms": lat_of[best], "best_one_shot": s["best"]["accuracy"],
                      "random_search_same_supernet": rs,
                      "random_search_mean_test_acc": statistics.mean(r["best_test_acc"] for r in rs)})
    report["table7"] = table7
    report["final_front"] = final
    fig7 = work / "fig7.json"
    if fig7.is_file():
        f7 = json.loads(fig7.read_text())
        report["fig7"] = {"settings": {k: f7[k] for k in ("supernet", "population", "iterations", "rank_limit")},
                          "ces": _variance(f7["ces"]), "spos": _variance(f7["spos"]),
                          "kept": {"ces": [r["counted"] for r in f7["ces"]], "spos": [r["counted"] for r in f7["spos"]]}}
    RESULT.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("table8", "optimum_test_acc_in_bound")}, indent=1))
    for row in table7:
        print("table7", {k: row[k] for k in ("M", "seed", "designed_mean", "original_mean", "designed_in_bound")})
    for row in final:
        print("final", {k: row[k] for k in ("M", "seed", "best_test_acc", "random_search_mean_test_acc")})
    if "fig7" in report:
        print("fig7 variance CES", report["fig7"]["ces"]["mean_variance_all_layers"],
              "SPOS", report["fig7"]["spos"]["mean_variance_all_layers"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["runs", "fig7", "report"])
    p.add_argument("--work", default="/tmp/padnas_ev")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--M", type=int, nargs="+", default=[4, 3, 2])
    p.add_argument("--total-epochs", type=float, default=60.0)
    p.add_argument("--population", type=int, default=64)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--kendall-n", type=int, default=100)
    p.add_argument("--random-repeats", type=int, default=3)
    p.add_argument("--rs-seeds", type=int, default=10, help="report: seeds of the table-based random searches")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    {"runs": cmd_runs, "fig7": cmd_fig7, "report": cmd_report}[args.step](args)


if __name__ == "__main__":
    main()
