"""Overhead of ``nasforge.train.train`` over a minimal hand-written PyTorch loop.

Both loops train the same model (identical initial weights: each run starts from a deep copy of one network) on the
same batches (seeded synthetic tensors, already on the device), with the same optimizer (SGD, momentum 0.9,
Nesterov, weight decay 5e-4) and the same per-step cosine schedule through ``LambdaLR``. The hand-written loop does
exactly ``zero_grad, forward, cross_entropy, backward, optimizer.step, scheduler.step`` per batch; nasforge's does
the same plus its bookkeeping (on-device loss / accuracy buffers, a finite-loss check every 50 steps, epoch
statistics, first-batch validation, optimizer / scheduler construction), progress bar off. The two are run
interleaved, alternating which goes first, over ``--repeats`` rounds on ``--threads`` threads. The headline is the
median over rounds of the paired ratio nasforge / hand-written of the same round (target <= 1.05): pairing adjacent
runs cancels slow drifts of a shared machine; the ratio of the medians, of the minima and of the process CPU times
(which do not count the time the process waits for a core) are recorded too, with
the cost of nasforge's per-step additions measured alone (``bookkeeping_us_per_step``).

Two models: ``tiny`` (a 2-conv net on 28x28, where per-step Python overhead matters most) and ``cnn32`` (a
4-conv net on 32x32 with 32-64 channels, a typical small search candidate).

    python benchmarks/bench_train_overhead.py               # writes benchmarks/results/bench_train_overhead.json
    python benchmarks/bench_train_overhead.py --repeats 3 --steps 20   # quick look
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.io import write_json
from nasforge.train import TrainConfig, build_optimizer, build_scheduler, train

RESULTS = Path(__file__).resolve().parent / "results"


def tiny() -> tuple[nn.Module, tuple[int, int, int]]:
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    return net, (1, 28, 28)


def cnn32() -> tuple[nn.Module, tuple[int, int, int]]:
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    net = nn.Sequential(*block(3, 32, 1), *block(32, 32, 2), *block(32, 64, 1), *block(64, 64, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    return net, (3, 32, 32)


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[int, int, int]]]] = {"tiny": tiny, "cnn32": cnn32}


def make_batches(shape: tuple[int, int, int], steps: int, batch: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, *shape, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(steps)]


def hand_loop(model: nn.Module, batches: list, config: TrainConfig) -> None:
    """The reference: the minimal loop a PyTorch user writes (same optimizer and schedule as nasforge)."""
    opt = build_optimizer(model, config)
    sched = build_scheduler(opt, config, len(batches), len(batches))
    model.train()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sched.step()


def nasforge_loop(model: nn.Module, batches: list, config: TrainConfig) -> None:
    train(model, batches, config=config, epochs=1, progress=False)


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def bookkeeping_us(batch: int, n: int = 2000) -> float:
    """Microseconds per step of nasforge's per-step additions alone (device moves that are no-ops, the autocast
    no-op context, the loss and correct-count buffer writes, the step counters), best of 5 rounds: a
    contention-robust bound on the per-step overhead, independent of the model."""
    import contextlib

    dev = torch.device("cpu")
    x, y = torch.randn(batch, 3, 8, 8), torch.randint(0, 10, (batch,))
    logits, loss = torch.randn(batch, 10), torch.tensor(2.3)
    losses, correct = torch.zeros(n), torch.zeros(n, dtype=torch.int64)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        seen = 0
        for i in range(n):
            xx, yy = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with contextlib.nullcontext():
                pass
            losses[i] = loss.detach()
            correct[i] = (logits.argmax(1) == yy).sum()
            seen += yy.shape[0]
        best = min(best, (time.perf_counter() - t0) / n)
    return 1e6 * best


def bench_model(name: str, steps: int, batch: int, repeats: int, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)  # a benchmark script may seed; library code never does
    base, shape = MODELS[name]()
    batches = make_batches(shape, steps, batch, seed)
    config = TrainConfig(lr=0.05, batch_size=batch)
    runners = {"hand": hand_loop, "nasforge": nasforge_loop}
    for fn in runners.values():  # warm-up: allocator, kernels, lazy init
        fn(copy.deepcopy(base), batches[: max(2, steps // 10)], config)
    times: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(repeats):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for key in order:
            model = copy.deepcopy(base)
            wall, used = timed(lambda: runners[key](model, batches, config))
            times[key].append(wall)
            cpu[key].append(used)
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = [n / h for n, h in zip(times["nasforge"], times["hand"])]
    paired_cpu = [n / h for n, h in zip(cpu["nasforge"], cpu["hand"])]
    return {
        "model": name, "input_shape": list(shape), "batch_size": batch, "steps": steps, "repeats": repeats,
        "params": sum(p.numel() for p in base.parameters()),
        "median_s": med, "all_s": times,
        "images_per_s": {k: steps * batch / v for k, v in med.items()},
        "ms_per_step": {k: 1000 * v / steps for k, v in med.items()},
        "ratio_nasforge_over_hand": statistics.median(paired),
        "ratio_of_medians": med["nasforge"] / med["hand"],
        "paired_ratios": paired,
        "ratio_cpu_time": statistics.median(paired_cpu),
        "cpu_s": cpu,
        "ratio_min_nasforge_over_min_hand": min(times["nasforge"]) / min(times["hand"]),
        "bookkeeping_us_per_step": bookkeeping_us(batch),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_train_overhead.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {m: bench_model(m, args.steps, args.batch, args.repeats, args.seed) for m in args.models}
    for m, r in results.items():
        print(f"{m:6s} hand {r['ms_per_step']['hand']:7.2f} ms/step ({r['images_per_s']['hand']:8.0f} img/s)  "
              f"nasforge {r['ms_per_step']['nasforge']:7.2f} ms/step ({r['images_per_s']['nasforge']:8.0f} img/s)  "
              f"ratio {r['ratio_nasforge_over_hand']:.3f} (min/min {r['ratio_min_nasforge_over_min_hand']:.3f}, "
              f"cpu {r['ratio_cpu_time']:.3f})  "
              f"bookkeeping {r['bookkeeping_us_per_step']:.0f} us/step")
    report = {
        "benchmark": "bench_train_overhead",
        "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu",
                    "cpu_count": os.cpu_count(), "load_avg_1m_at_end": os.getloadavg()[0]},
        "target_ratio": 1.05,
        "results": results,
        "worst_ratio": max(r["ratio_nasforge_over_hand"] for r in results.values()),
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
