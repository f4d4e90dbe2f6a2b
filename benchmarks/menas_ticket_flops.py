"""How much do MENAS lottery tickets prune? FLOPs reduction of pruning proposals and tickets (issue 12, item 5).

menas.txt (Fig. 3 caption, "Search Space"): "pruning rates are used for expansion ratios in inverted bottleneck
layers"; Table 1's rates are 0.7-1.0 in steps of 0.025, and a proposal is one rate per layer (Eq. 1 truncates the
expansion channels). nasforge does exactly that (:func:`nasforge.prune.pruning_proposals`: the expansion, i.e.
mid, channels of every layer with expand ratio > 1; the depthwise conv, SE and projection input shrink with them).
This script measures what that removes:

* ``proposals``: for ``--nets`` random networks inside each config's FLOPs constraint (seeded), the analytic FLOPs
  reduction ``1 - FLOPs(proposal) / FLOPs(net)`` of the K=40 proposals that ``explore_lottery_tickets`` draws,
  and the most any pruning vector could remove (every prunable layer at 0.7) -- for ``configs/menas-cpu.yaml``
  (28x28x1, the CPU miniature) and ``configs/menas.yaml`` (224x224x3, 1000 classes, the paper's setting).
* ``tickets``: the FLOPs reduction of the lottery tickets (top-2 by re-calibrated accuracy) that the stored
  menas-cpu search runs (``benchmarks/results/menas_search_runs.json``) actually selected, against the net they
  were pruned from.

* ``size_metric``: which "model size" large-model regularisation should rank by in ``configs/menas-cpu.yaml``
  (issue 12, item 4): over ``--nets`` x 4 random nets in its FLOPs window, the share of parameters in the head,
  the rank correlation of params and of FLOPs with the FLOPs a ticket can remove (every layer at 0.7: the "broader
  range" of tickets the paper keeps large models for), and, from the stored runs, the rank correlation of each
  with the BN-calibrated accuracy of random nets trained E_init epochs (large models are the ones an early stop
  underrates).

Writes ``benchmarks/results/menas_ticket_flops.json``; docs/benchmarks.md "Lottery tickets: FLOPs removed".

    python benchmarks/menas_ticket_flops.py     # analytic, no training: 35 CPU s (3 min wall on the loaded 2-core VM)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nasforge.config import build_space, load_config
from nasforge.io import write_json
from nasforge.prune import pruning_proposals

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def quantiles(values: Sequence[float]) -> dict[str, float]:
    """min, 10/25/50/75/90 % quantiles and max of ``values`` (in %, 2 decimals), with their count."""
    v = np.asarray(values, dtype=float) * 100.0
    q = np.quantile(v, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    return {"n": int(v.size), **{k: round(float(x), 2) for k, x in zip(("min", "p10", "p25", "median", "p75", "p90",
                                                                            "max"), q)},
            "mean": round(float(v.mean()), 2)}


def proposals_of(config: Path, nets: int, k: int, seed: int) -> dict[str, Any]:
    """FLOPs reduction of ``k`` proposals of ``nets`` random nets within the config's FLOPs constraint."""
    cfg = load_config(config)
    space = build_space(cfg)
    shape = tuple(cfg.input_shape) if cfg.input_shape else None
    if shape is None:  # the data decides (embedded Fashion-MNIST: 1x28x28, 10 classes)
        from nasforge.data import load_data

        splits = load_data(cfg.data)
        shape, classes = tuple(splits.input_shape), splits.num_classes
    else:
        classes = cfg.num_classes
    flops_c = next(c for c in cfg.constraints if c.name == "flops")
    rng = np.random.default_rng(seed)
    reductions, best, bound = [], [], []
    for _ in range(nets):
        arch = next(a for a in iter(lambda: space.sample(rng), None)
                    if flops_c.min <= space.flops(a, shape, classes) <= flops_c.max)
        base = space.flops(arch, shape, classes)
        props = pruning_proposals(space, arch, k, rng)
        red = [1.0 - space.flops(p, shape, classes) / base for p in props]
        reductions += red
        best.append(max(red) if red else 0.0)
        layers = space.prunable_layers(arch)
        dims = {d.label: d.choices for d in space.dimensions()}
        lowest = [min(dims[f"{lid}.prune"]) for lid in layers]
        floor = space.with_pruning(arch, lowest) if layers else arch
        bound.append(1.0 - space.flops(floor, shape, classes) / base)
    return {"config": str(config.relative_to(ROOT)), "input_shape": list(shape), "num_classes": classes,
            "flops_window": [flops_c.min, flops_c.max], "nets": nets, "k": k, "seed": seed,
            "proposals_pct": quantiles(reductions), "best_proposal_per_net_pct": quantiles(best),
            "all_layers_at_0.7_pct": quantiles(bound)}


def size_metric(config: Path, nets: int, seed: int, runs_json: Path) -> dict[str, Any]:
    """Params vs FLOPs as the size of large-model regularisation in ``config`` (module docstring)."""
    from scipy import stats

    from nasforge.data import load_data
    from nasforge.spaces.state import empty_network

    cfg = load_config(config)
    space, splits = build_space(cfg), load_data(cfg.data)
    shape, classes = tuple(splits.input_shape), splits.num_classes
    flops_c = next(c for c in cfg.constraints if c.name == "flops")
    dims = {d.label: d.choices for d in space.dimensions()}
    rng = np.random.default_rng(seed + 1)
    rows = []
    while len(rows) < nets:
        arch = space.sample(rng)
        flops = space.flops(arch, shape, classes)
        if not flops_c.min <= flops <= flops_c.max:
            continue
        params = space.params(arch, shape, classes)
        head = sum(v.numel() for k, v in empty_network(space, arch, shape, classes).state_dict().items()
                   if k.startswith("head.") and not k.endswith("num_batches_tracked"))
        layers = space.prunable_layers(arch)
        floor = space.with_pruning(arch, [min(dims[f"{lid}.prune"]) for lid in layers]) if layers else arch
        rows.append((params, flops, head / params, flops - space.flops(floor, shape, classes)))
    p, f, share, removable = (list(c) for c in zip(*rows))
    out: dict[str, Any] = {
        "config": str(config.relative_to(ROOT)), "nets": nets, "head_params_share_pct": quantiles(share),
        "spearman_params_flops": float(stats.spearmanr(p, f)[0]),
        "spearman_removable_flops": {"params": float(stats.spearmanr(p, removable)[0]),
                                     "flops": float(stats.spearmanr(f, removable)[0])}}
    if runs_json.exists():
        data = json.loads(runs_json.read_text(encoding="utf-8"))
        trials = [t for r in data["runs"] for t in r["trials"]
                  if t.get("kind") == "random" and t.get("bn_calibrated_accuracy") is not None]
        acc = [t["bn_calibrated_accuracy"] for t in trials]
        out["spearman_calibrated_accuracy_random_nets"] = {
            "n": len(trials), "source": str(runs_json.relative_to(ROOT)),
            "params": float(stats.spearmanr(acc, [t["params"] for t in trials])[0]),
            "flops": float(stats.spearmanr(acc, [t["flops"] for t in trials])[0])}
    return out


def tickets_of(runs_json: Path) -> dict[str, Any]:
    """FLOPs reduction of the tickets in stored search runs, per variant that explores tickets."""
    data = json.loads(runs_json.read_text(encoding="utf-8"))
    out: dict[str, Any] = {"source": str(runs_json.relative_to(ROOT)), "date": data.get("date"),
                           "command": data.get("command")}
    per: dict[str, list[float]] = {}
    for run in data["runs"]:
        by_id = {t["id"]: t for t in run["trials"]}
        for t in run["trials"]:
            if t.get("kind") != "ticket" or not t.get("parents") or t.get("flops") is None:
                continue
            parent = by_id.get(t["parents"][0])
            if parent and parent.get("flops"):
                per.setdefault(run["variant"], []).append(1.0 - t["flops"] / parent["flops"])
    out["tickets_pct"] = {v: quantiles(r) for v, r in per.items()}
    out["tickets_pct"]["all"] = quantiles([x for r in per.values() for x in r])
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=int, default=50)
    ap.add_argument("--k", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", nargs="+", type=Path,
                    default=[ROOT / "configs" / "menas-cpu.yaml", ROOT / "configs" / "menas.yaml"])
    ap.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "results" / "menas_search_runs.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "menas_ticket_flops.json")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"benchmark": "menas_ticket_flops",
                              "date": dt.datetime.now().isoformat(timespec="seconds"),
                              "command": "python " + " ".join([sys.argv[0]] + list(argv or sys.argv[1:])),
                              "proposals": [proposals_of(c.resolve(), args.nets, args.k, args.seed)
                                            for c in args.configs]}
    if args.runs.exists():
        report["tickets"] = tickets_of(args.runs.resolve())
    report["size_metric"] = size_metric((ROOT / "configs" / "menas-cpu.yaml").resolve(), 4 * args.nets, args.seed,
                                        args.runs.resolve())
    print("size metric:", json.dumps(report["size_metric"]), flush=True)
    for p in report["proposals"]:
        print(f"{p['config']}: proposals median {p['proposals_pct']['median']}% (p10 {p['proposals_pct']['p10']}, "
              f"p90 {p['proposals_pct']['p90']}, max {p['proposals_pct']['max']}); best per net median "
              f"{p['best_proposal_per_net_pct']['median']}%; all layers at 0.7: median "
              f"{p['all_layers_at_0.7_pct']['median']}%", flush=True)
    if "tickets" in report:
        for v, q in report["tickets"]["tickets_pct"].items():
            print(f"tickets ({v}): n {q['n']} median {q['median']}% (p10 {q['p10']}, p90 {q['p90']}, max {q['max']})")
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
