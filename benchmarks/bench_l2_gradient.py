"""The L2 penalty of a BigNAS step on the Table 1 supernet: backpropagating ``l2_penalty`` vs ``add_l2_gradient``.

Both give every >= 2-D supernet weight the gradient ``wd * p`` (issue 12, item 3). Interleaved rounds in one
process, one torch thread, medians; writes ``benchmarks/results/supernet_l2_gradient.json``.

    python benchmarks/bench_l2_gradient.py
"""
from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from nasforge import get_space
from nasforge.io import write_json
from nasforge.supernet.mbconv import ElasticMBConvSupernet
from nasforge.supernet.train import add_l2_gradient, l2_penalty


def main() -> dict:
    torch.set_num_threads(1)
    net = ElasticMBConvSupernet(get_space("bignas"), (3, 32, 32), 10, generator=torch.Generator().manual_seed(0))
    params = [p for p in net.parameters() if p.ndim >= 2]
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    runs = {"graph": lambda: l2_penalty(params, 1e-5).backward(), "direct": lambda: add_l2_gradient(params, 1e-5)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(9):
        for k in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            t0 = time.perf_counter()
            runs[k]()
            times[k].append(1000 * (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {"benchmark": "bench_l2_gradient", "date": dt.datetime.now().isoformat(timespec="seconds"),
              "command": "python " + " ".join(sys.argv), "decayed_params_M": sum(p.numel() for p in params) / 1e6,
              "tensors": len(params), "ms": times, "median_ms": med,
              "ratio_graph_over_direct": med["graph"] / med["direct"],
              "threads": 1, "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    write_json(Path(__file__).resolve().parent / "results" / "supernet_l2_gradient.json", report)
    print(f"{report['decayed_params_M']:.2f} M params in {len(params)} tensors: graph {med['graph']:.1f} ms, "
          f"direct {med['direct']:.1f} ms per step")
    return report


if __name__ == "__main__":
    main()
