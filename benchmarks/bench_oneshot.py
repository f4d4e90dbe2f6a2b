"""One-shot core benchmarks (nasforge issue 11): choice-block supernets, the one-shot evaluator, rank consistency.

Experiments, each writing ``benchmarks/results/oneshot_<name>.json`` (settings, raw numbers, machine):

* ``equality`` -- max |activated - extracted| output over sampled children (eval mode, after a few training-mode
  forwards so BN statistics are not the identity) for ``nb201`` (C=16 N=5 and C=8 N=1) and ``proxyless-basic``.
* ``slicing`` -- forward + backward time of a child run inside the choice-block supernet (``with net.activate``)
  over the same child extracted as a static module; interleaved rounds, median of per-round ratios. Goal <= 1.10.
* ``throughput`` -- architectures per hour of :class:`~nasforge.eval.oneshot.OneShotEvaluator` (1,000 calibration
  + 1,000 scored images, 2 threads) on a trained ``configs/spos-nb201-cpu.yaml`` supernet. Goal >= 450.
* ``rank`` -- ``configs/spos-nb201-cpu.yaml`` trained for each of ``--epochs`` (each its own run, its own linear
  schedule), then :func:`~nasforge.eval.rank.rank_consistency` over ``--n`` NB201 cells against
  ``cifar10_test_hp200``: Kendall tau next to params_tau. ``--variants`` adds other CPU recipes.

    python benchmarks/bench_oneshot.py --experiments equality slicing
    python benchmarks/bench_oneshot.py --experiments rank --epochs 3 10 30 --n 200
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nasforge import get_space  # noqa: E402
from nasforge.eval.oneshot import OneShotEvaluator  # noqa: E402
from nasforge.eval.rank import rank_consistency  # noqa: E402
from nasforge.io import write_json  # noqa: E402
from nasforge.methods.bignas import load_supernet_config, run_supernet  # noqa: E402
from nasforge.supernet.choice import choice_supernet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "spos-nb201-cpu.yaml"


def machine() -> dict[str, Any]:
    return {"date": dt.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "load": os.getloadavg()}


def _spaces() -> list[tuple[str, Any, tuple[int, int, int]]]:
    return [("nb201 C16 N5", get_space("nb201"), (3, 32, 32)), ("nb201 C8 N1", get_space("nb201", C=8, N=1),
            (3, 32, 32)), ("proxyless-basic", get_space("proxyless-basic"), (3, 32, 32))]


def equality(args: argparse.Namespace) -> dict[str, Any]:
    rng, out = np.random.default_rng(0), {}
    for name, space, shape in _spaces():
        net = choice_supernet(space, shape, 10, generator=torch.Generator().manual_seed(0))
        x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
        worst = 0.0
        for _ in range(args.children):
            arch = space.sample(rng)
            with net.activate(arch), torch.no_grad():
                net.train()
                net(x)  # move the BN statistics of this child's ops away from their init
                net.eval()
                y = net(x)
            child = net.extract(arch).eval()
            with torch.no_grad():
                worst = max(worst, float((child(x) - y).abs().max()))
        out[name] = {"children": args.children, "max_abs_diff": worst}
        print(f"equality {name}: max |activated - extracted| = {worst:.3g} over {args.children} children")
    return out


def _step_time(fn: Callable[[], None], reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def slicing(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    rng, out = np.random.default_rng(0), {}
    for name, space, shape in _spaces():
        net = choice_supernet(space, shape, 10, generator=torch.Generator().manual_seed(0)).train()
        x = torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(2))
        archs = {"smallest": space.smallest(), "sampled": space.sample(rng), "largest": space.largest()}
        rows = {}
        for label, arch in archs.items():
            child = net.extract(arch).train()

            def activated() -> None:
                with net.activate(arch):
                    F.cross_entropy(net(x), y).backward()

            def extracted() -> None:
                F.cross_entropy(child(x), y).backward()

            ratios = []
            for r in range(args.rounds):
                pair = (activated, extracted) if r % 2 == 0 else (extracted, activated)
                t = {fn.__name__: _step_time(fn, args.reps) for fn in pair}
                ratios.append(t["activated"] / t["extracted"])
            rows[label] = {"ratio_median": statistics.median(ratios), "ratios": ratios}
            print(f"slicing {name} {label}: activated / extracted = {statistics.median(ratios):.3f}")
        out[name] = rows
    return {"batch": args.batch, "threads": args.threads, "rounds": args.rounds, "reps": args.reps, "spaces": out}


def _train(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    config = load_supernet_config(CONFIG, [*overrides, "progress=false"])
    start = time.perf_counter()
    result = run_supernet(config, run_dir)
    return {"steps": result.steps, "train_seconds": time.perf_counter() - start,
            "last_epoch": result.history[-1] if result.history else {}}


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(args.work) / "throughput"
    trained = _train(run_dir, ["epochs=1"]) if not (run_dir / "result.json").is_file() else {}
    ev = OneShotEvaluator(run_dir, calib_images=1000, score_images=1000, device="cpu", threads=2)
    rng = np.random.default_rng(0)
    archs = [ev.space.sample(rng) for _ in range(args.archs)]
    start = time.perf_counter()
    for a in archs:
        ev.evaluate(a)
    seconds = time.perf_counter() - start
    per_hour = 3600 * len(archs) / seconds
    print(f"throughput: {per_hour:.0f} architectures/hour (1k calib + 1k scored, 2 threads)")
    return {"archs": len(archs), "seconds": seconds, "archs_per_hour": per_hour, "trained": trained}


def rank(args: argparse.Namespace) -> dict[str, Any]:
    out = []
    variants = {"base": []} | {v.split("=", 1)[0]: v.split("=", 1)[1].split(",") for v in args.variants}
    for name, extra in variants.items():
        for epochs in args.epochs:
            run_dir = Path(args.work) / f"rank-{name}-e{epochs}"
            trained = {}
            if not (run_dir / "result.json").is_file():
                trained = _train(run_dir, [f"epochs={epochs}", *extra])
            ev = OneShotEvaluator(run_dir, calib_images=1000, score_images=1000, device="cpu", threads=2)
            summary = rank_consistency(ev, n=args.n, seed=0, out_dir=run_dir)
            row = {"variant": name, "overrides": extra, "epochs": epochs, **trained, **summary}
            out.append(row)
            print(f"rank {name} epochs={epochs}: tau {summary['kendall_tau']:.3f} (params {summary['params_tau']:.3f})"
                  f" rho {summary['spearman_rho']:.3f}; train {trained.get('train_seconds', float('nan')):.0f} s")
            write_json(Path(args.work) / "oneshot_rank.partial.json", {"rows": out})
    return {"n": args.n, "rows": out}


EXPERIMENTS = {"equality": equality, "slicing": slicing, "throughput": throughput, "rank": rank}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    p.add_argument("--children", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--archs", type=int, default=20)
    p.add_argument("--epochs", type=int, nargs="+", default=[3, 10, 30])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--variants", nargs="*", default=[], help="NAME=key=value,key=value overrides of the config")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_oneshot"))
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.experiments:
        result = {"experiment": name, "machine": machine(), "command": " ".join(os.sys.argv), **EXPERIMENTS[name](args)}
        write_json(RESULTS / f"oneshot_{name}.json", result)


if __name__ == "__main__":
    main()
