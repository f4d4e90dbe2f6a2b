"""Training and inference throughput (images/s) of the smallest, a middle and the largest architecture of every
registered search space, built at 3x32x32 with 10 classes, on CPU threads.

* smallest / largest: ``space.smallest()`` / ``space.largest()`` (fewest / most FLOPs);
* middle: the median-FLOPs architecture of ``--samples`` seeded samples (``space.sample(rng)``).

A training step is ``zero_grad, forward, cross_entropy, backward, SGD step`` in train mode (the step nasforge's
``train`` runs); inference is a forward pass in eval mode under ``torch.inference_mode``. Each is timed with
``torch.utils.benchmark.Timer.blocked_autorange`` (``--min-time`` seconds, median reported) on ``--threads``
threads. The batch is ``--train-batch`` / ``--infer-batch`` images, halved for very large networks until one call
is at most ``--max-gflop`` GFLOP (so the largest MobileNet-style nets finish); the batch used is recorded.

    python benchmarks/bench_throughput.py                 # writes benchmarks/results/bench_throughput.json
    python benchmarks/bench_throughput.py --spaces nb201 --min-time 0.2   # quick look
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.benchmark import Timer

from nasforge import Architecture, get_space, list_spaces
from nasforge.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = (3, 32, 32)
CLASSES = 10


def pick(space: Any, samples: int, seed: int) -> dict[str, Architecture]:
    """Smallest, median-FLOPs of ``samples`` seeded samples, and largest architecture of ``space``."""
    rng = np.random.default_rng(seed)
    pool = sorted({space.sample(rng) for _ in range(samples)}, key=lambda a: space.flops(a, SHAPE, CLASSES))
    return {"smallest": space.smallest(), "middle": pool[len(pool) // 2], "largest": space.largest()}


def fit_batch(batch: int, flops_per_image: float, factor: float, max_gflop: float) -> int:
    """Halve ``batch`` until one call costs at most ``max_gflop`` GFLOP (never below 2)."""
    while batch > 2 and batch * flops_per_image * factor > max_gflop * 1e9:
        batch //= 2
    return batch


def train_step_timer(model: nn.Module, batch: int, threads: int) -> Timer:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, *SHAPE, generator=g), torch.randint(0, CLASSES, (batch,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return Timer("step()", globals={"step": step}, num_threads=threads)


def infer_timer(model: nn.Module, batch: int, threads: int) -> Timer:
    x = torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(1))
    model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    return Timer("forward()", globals={"forward": forward}, num_threads=threads)


def bench_arch(space: Any, arch: Architecture, args: argparse.Namespace) -> dict[str, Any]:
    flops = float(space.flops(arch, SHAPE, CLASSES))
    model = space.build(arch, input_shape=SHAPE, num_classes=CLASSES)
    out: dict[str, Any] = {"arch": str(arch), "key": arch.key(), "mflops": flops / 1e6,
                           "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    tb = fit_batch(args.train_batch, flops, 3.0, args.max_gflop)  # backward ~ 2x forward
    ib = fit_batch(args.infer_batch, flops, 1.0, args.max_gflop)
    for kind, batch, timer in (("train", tb, train_step_timer(model, tb, args.threads)),
                               ("infer", ib, infer_timer(model, ib, args.threads))):
        timer.timeit(1)  # warm-up
        m = timer.blocked_autorange(min_run_time=args.min_time)
        out[kind] = {"batch": batch, "median_ms": 1000 * m.median, "images_per_s": batch / m.median,
                     "measurements": len(m.times)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=None, help="default: every registered space")
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--infer-batch", type=int, default=64)
    ap.add_argument("--max-gflop", type=float, default=60.0)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_throughput.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    spaces = args.spaces or list_spaces()
    results: dict[str, Any] = {}
    for name in spaces:
        space = get_space(name)
        results[name] = {}
        for which, arch in pick(space, args.samples, args.seed).items():
            r = bench_arch(space, arch, args)
            results[name][which] = r
            print(f"{name:16s} {which:8s} {r['mflops']:9.1f} MFLOPs  train {r['train']['images_per_s']:8.1f} img/s"
                  f" (b{r['train']['batch']})  infer {r['infer']['images_per_s']:8.1f} img/s (b{r['infer']['batch']})",
                  flush=True)
    report = {
        "benchmark": "bench_throughput",
        "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": "cpu", "cpu_count": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0]},
        "input_shape": list(SHAPE), "num_classes": CLASSES, "spaces": spaces, "results": results,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
