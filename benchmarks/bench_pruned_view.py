"""Eq. 1 step per lottery proposal: a rebuilt pruned network vs PrunedView.set (issue 12, item 2).

One random net of ``configs/menas-cpu.yaml`` inside its FLOPs window, its 40 proposals; each round times, per
proposal, building the pruned network with the trained weights truncated into it (the former path) and
re-pointing the once-built view; interleaved rounds, one torch thread, medians. Writes
``benchmarks/results/menas_pruned_view.json``.

    python benchmarks/bench_pruned_view.py
"""
from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nasforge.config import build_space, load_config
from nasforge.eval.train_eval import init_weights
from nasforge.io import write_json
from nasforge.prune import pruning_proposals
from nasforge.prune.lottery import _pruned_network
from nasforge.prune.view import PrunedView

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "menas-cpu.yaml")
    space, shape, classes = build_space(cfg), (1, 28, 28), 10
    lo, hi = cfg.constraints[0].min, cfg.constraints[0].max
    rng = np.random.default_rng(0)
    arch = next(a for a in iter(lambda: space.sample(rng), None) if lo <= space.flops(a, shape, classes) <= hi)
    model = init_weights(space.build(arch, shape, classes), torch.Generator().manual_seed(0)).eval()
    props = pruning_proposals(space, arch, 40, np.random.default_rng(2))
    state, cpu = model.state_dict(), torch.device("cpu")
    view = PrunedView(model, space, arch, shape, classes)
    runs = {"rebuild": lambda p: _pruned_network(space, arch, p, state, shape, classes, cpu), "view": view.set}
    ms: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(5):
        for k in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            t0 = time.perf_counter()
            for p in props:
                runs[k](p)
            ms[k].append(1000 * (time.perf_counter() - t0) / len(props))
    med = {k: statistics.median(v) for k, v in ms.items()}
    report = {"benchmark": "bench_pruned_view", "date": dt.datetime.now().isoformat(timespec="seconds"),
              "command": "python " + " ".join(sys.argv), "arch": space.format(arch), "proposals": len(props),
              "ms_per_proposal": ms, "median_ms_per_proposal": med, "ratio": med["rebuild"] / med["view"],
              "threads": 1, "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    write_json(ROOT / "benchmarks" / "results" / "menas_pruned_view.json", report)
    print(f"per proposal: rebuild {med['rebuild']:.1f} ms, view {med['view']:.1f} ms ({report['ratio']:.1f}x)")
    return report


if __name__ == "__main__":
    main()
