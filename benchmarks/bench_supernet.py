"""Supernet benchmarks (nasforge issue 5): BigNAS's elastic supernet and single-stage training, in miniature.

Three experiments, each writing ``benchmarks/results/supernet_<name>.json`` (settings, raw numbers, machine):

* ``slicing`` -- forward + backward time of a child run inside :class:`~nasforge.supernet.ElasticMBConvSupernet`
  (``with net.activate(arch)``) over the same child extracted as a static module (``net.extract(arch)``), for the
  smallest, a middle (median FLOPs of seeded samples) and the largest child of the ``bignas`` space (BigNAS
  Table 1), per input size. Target <= 1.10. A ``torch.profiler`` pass records which ops make the difference.
* ``sandwich`` -- one full BigNAS training step (:meth:`SupernetTrainer.train_step`: sandwich rule with the largest,
  the smallest and N=2 random children, inplace distillation, L2 on the largest only, one RMSProp step; BigNAS
  Sec. 3.1) over one step of the extracted largest child trained alone (same optimizer and recipe). Target <= 2.3;
  the analytic ratio is ``sum of the step's 4 children's FLOPs / FLOPs of the largest``; a third runner times the
  same four children as separate static modules (FLOP efficiency vs supernet machinery).
* ``accuracy`` -- BigNAS Table 3 in miniature on the ``configs/bignas-cpu.yaml`` setting: the single-stage supernet
  (:func:`nasforge.methods.bignas.run_supernet`), then its smallest / middle / largest children after BN
  calibration and without fine-tuning, against the same architectures trained from scratch with
  :func:`nasforge.train.train` (same epochs, same recipe, same data order). Ablations (Sec. 4.3) switch off inplace
  distillation, zero-init of the last BN gamma, and the constant ending of the learning rate; SPOS (Guo et al.
  2020: one uniform child per step, labels only, the ``padnas`` SGD recipe) gets ``--spos-factor`` times the
  epochs, i.e. about the same number of child forward/backward passes as BigNAS's four per step. Children are
  scored on the config's test split and on a larger held-out set of embedded images the config never uses.

Timings are interleaved (each round runs both sides, alternating which goes first) and the headline is the median of
the per-round ratios; process CPU times are recorded too, since the machine may be shared. Accuracy runs use one
torch thread each and may run ``--workers`` at a time (they are not timed against each other). ``--device cuda``
times the slicing and sandwich experiments on a GPU. Results: docs/benchmarks.md, "Supernets: BigNAS and SPOS".

    python benchmarks/bench_supernet.py      # all three, seed 0: ~16 min wall, ~18 CPU-min (shared 2-core VM)
    python benchmarks/bench_supernet.py --experiments accuracy --seeds 0 1   # the documented two-seed table
    python benchmarks/bench_supernet.py --experiments slicing --rounds 3 --slicing-sizes 32   # quick look
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads that wait for a
# descheduled peer inflate both sides' times erratically (measured 2-8x on single steps). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from nasforge import Architecture, get_space  # noqa: E402
from nasforge.io import write_json  # noqa: E402
from nasforge.supernet.mbconv import ElasticMBConvSupernet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = 10


# ================================================================================================ shared helpers
def machine(device: torch.device | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    gpu = torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else None
    return {"gpu": gpu, "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device or "cpu"),
            "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished child processes (the accuracy workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def pick_children(space: Any, shape: tuple[int, int, int], samples: int, seed: int) -> dict[str, Architecture]:
    """Smallest, median-FLOPs of ``samples`` seeded samples (as bench_throughput.py), and largest child."""
    rng = np.random.default_rng(seed)
    pool = sorted({space.sample(rng) for _ in range(samples)}, key=lambda a: space.flops(a, shape, CLASSES))
    return {"smallest": space.smallest(), "middle": pool[len(pool) // 2], "largest": space.largest()}


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def synced(fn: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a device synchronisation (CUDA kernels run asynchronously), so it can be timed."""
    if device.type != "cuda":
        return fn

    def run() -> None:
        fn()
        torch.cuda.synchronize(device)
    return run


def interleaved(runners: dict[str, Callable[[], None]], rounds: int, num: str, den: str) -> dict[str, Any]:
    """Run every runner once per round, alternating the order; median of the paired ``num / den`` ratios."""
    wall: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(rounds):
        for key in (list(runners) if r % 2 == 0 else list(reversed(runners))):
            w, c = timed(runners[key])
            wall[key].append(w)
            cpu[key].append(c)
    paired = [a / b for a, b in zip(wall[num], wall[den])]
    paired_cpu = [a / b for a, b in zip(cpu[num], cpu[den])]
    return {"wall_s": wall, "cpu_s": cpu, "median_s": {k: statistics.median(v) for k, v in wall.items()},
            "paired_ratios": paired, "ratio": statistics.median(paired), "ratio_cpu": statistics.median(paired_cpu),
            "ratio_min_over_min": min(wall[num]) / min(wall[den])}


def fresh_supernet(space: Any, shape: tuple[int, int, int], seed: int, zero_init: bool = True
                   ) -> ElasticMBConvSupernet:
    """A supernet initialised from a seeded generator (He fan-out, BigNAS Sec. 3.1), no global RNG touched."""
    return ElasticMBConvSupernet(space, shape, CLASSES, zero_init_last_bn=zero_init,
                                 generator=torch.Generator().manual_seed(seed))


# ================================================================================================ 1. slicing
def fwd_bwd(module: nn.Module, x: torch.Tensor, y: torch.Tensor,
            scope: Callable[[], contextlib.AbstractContextManager], iters: int) -> Callable[[], None]:
    """``iters`` x (zero_grad, forward inside ``scope()``, cross-entropy, backward): the timed unit."""
    def run() -> None:
        for _ in range(iters):
            module.zero_grad(set_to_none=True)
            with scope():
                loss = F.cross_entropy(module(x), y)
            loss.backward()
    return run


#: aten ops that only weight slicing adds: views of the weights, contiguous copies of sliced weights for the conv
#: kernels, and the backward of a slice (a zero-filled full-size gradient with the slice copied in)
SLICING_OPS = ("aten::slice", "aten::alias", "aten::as_strided", "aten::copy_", "aten::clone", "aten::contiguous",
               "aten::slice_backward", "aten::zeros", "aten::zero_", "aten::fill_", "aten::new_zeros")


def profile_diff(runners: dict[str, Callable[[], None]], top: int = 8) -> dict[str, Any]:
    """Self CPU time per aten op (ms per call of a runner) for both sides, and the ops that differ most."""
    from torch.profiler import ProfilerActivity, profile

    per: dict[str, dict[str, float]] = {}
    for key, fn in runners.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        per[key] = {e.key: e.self_cpu_time_total / 1000.0 for e in prof.key_averages()}
    a, b = per["supernet"], per["static"]
    diff = {k: a.get(k, 0.0) - b.get(k, 0.0) for k in set(a) | set(b)}
    biggest = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]
    sliced = {k: sum(v.get(op, 0.0) for op in SLICING_OPS) for k, v in per.items()}
    return {"total_self_ms": {k: sum(v.values()) for k, v in per.items()}, "slicing_ops_ms": sliced,
            "top_differences_ms": [{"op": k, "supernet_ms": round(a.get(k, 0.0), 2),
                                    "static_ms": round(b.get(k, 0.0), 2), "diff_ms": round(d, 2)}
                                   for k, d in biggest]}


def bench_slicing_child(net: ElasticMBConvSupernet, arch: Architecture, shape: tuple[int, int, int],
                        args: argparse.Namespace) -> dict[str, Any]:
    batch = args.slicing_batch if shape[1] <= 32 else args.slicing_batch_large
    g, dev = torch.Generator().manual_seed(args.seed), args.device
    x, y = torch.randn(batch, *shape, generator=g).to(dev), torch.randint(0, CLASSES, (batch,), generator=g).to(dev)
    static = net.extract(arch).train()
    net.train()
    runners = {"supernet": synced(fwd_bwd(net, x, y, lambda: net.activate(arch), args.iters), dev),
               "static": synced(fwd_bwd(static, x, y, contextlib.nullcontext, args.iters), dev)}
    for fn in runners.values():  # warm-up: allocator, oneDNN primitives, plan cache
        fn()
    with torch.no_grad(), net.activate(arch):
        max_diff = float((net.eval()(x) - static.eval()(x)).abs().max())
    net.train()
    static.train()
    out = interleaved(runners, args.rounds, "supernet", "static")
    out.update(arch=net.space.format(arch), batch=batch, iters_per_round=args.iters, eval_max_abs_diff=max_diff,
               mflops=net.space.flops(arch, shape, CLASSES) / 1e6,
               ms_per_iter={k: 1000 * v / args.iters for k, v in out["median_s"].items()})
    if args.profile and shape[1] == args.slicing_sizes[0] and dev.type == "cpu":
        out["profile"] = profile_diff(runners)
    return out


def run_slicing(args: argparse.Namespace) -> dict[str, Any]:
    """Experiment 1: activated child / extracted child, forward + backward, per child and input size."""
    space = get_space("bignas")
    results: dict[str, Any] = {}
    for size in args.slicing_sizes:
        shape = (3, size, size)
        net = fresh_supernet(space, shape, args.seed).to(args.device)
        results[f"{size}"] = {}
        for which, arch in pick_children(space, shape, args.samples, args.seed).items():
            r = bench_slicing_child(net, arch, shape, args)
            results[f"{size}"][which] = r
            print(f"slicing {size:3d}px {which:8s} {r['mflops']:7.1f} MFLOPs b{r['batch']}  supernet "
                  f"{r['ms_per_iter']['supernet']:7.1f} ms  static {r['ms_per_iter']['static']:7.1f} ms  "
                  f"ratio {r['ratio']:.3f} (cpu {r['ratio_cpu']:.3f}, min/min {r['ratio_min_over_min']:.3f})",
                  flush=True)
    return {"experiment": "slicing", "space": "bignas (Table 1)", "target_ratio": 1.10,
            "settings": {"sizes": args.slicing_sizes, "batch": args.slicing_batch,
                         "batch_large": args.slicing_batch_large, "rounds": args.rounds, "iters": args.iters,
                         "samples_for_middle": args.samples, "seed": args.seed, "mode": "train (BN batch stats)"},
            "results": results,
            "worst_ratio": max(r["ratio"] for per in results.values() for r in per.values())}



# ================================================================================================ 2. sandwich
def synthetic_splits(shape: tuple[int, int, int], n: int, seed: int) -> Any:
    """Random uint8 images with random labels as :class:`~nasforge.data.DataSplits` (timing only)."""
    from nasforge.data import ArrayDataset, DataConfig, DataSplits

    g = torch.Generator().manual_seed(seed)
    ds = ArrayDataset(torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),
                      torch.randint(0, CLASSES, (n,), generator=g), num_classes=CLASSES, name="synthetic")
    c = shape[0]
    return DataSplits(train=ds, val=ds, test=None, config=DataConfig(), mean=(0.5,) * c, std=(0.25,) * c)


def sandwich_setting(name: str, args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(space, splits, train config, step recipe) of a sandwich-timing setting: ``table1`` (the default ``bignas``
    space on synthetic 3x32x32 data, BigNAS recipe at ``--sandwich-batch``) or ``bignas-cpu`` (the reduced table,
    embedded Fashion-MNIST and recipe of ``configs/bignas-cpu.yaml``)."""
    from nasforge.data import load_data
    from nasforge.methods.bignas import (build_supernet_space, load_supernet_config, step_recipe_of,
                                         train_config_of)

    if name == "table1":
        from nasforge.supernet.train import StepRecipe
        from nasforge.train import TrainConfig

        tc = TrainConfig.from_recipe("bignas", batch_size=args.sandwich_batch)
        recipe = StepRecipe.bignas(weight_decay=tc.weight_decay, label_smoothing=tc.label_smoothing)
        return get_space("bignas"), synthetic_splits((3, 32, 32), 4 * args.sandwich_batch, args.seed), tc, recipe
    config = load_supernet_config(args.config)
    tc = train_config_of(config)
    return build_supernet_space(config), load_data(config.data), tc, step_recipe_of(config, tc)


def static_step(model: nn.Module, tc: Any, steps_per_epoch: int, total: int) -> Callable[[torch.Tensor, torch.Tensor],
                                                                                          None]:
    """One standalone training step of ``model`` with ``tc``'s optimizer, schedule and label smoothing."""
    from nasforge.train import build_optimizer, build_scheduler

    opt = build_optimizer(model, tc)
    sched = build_scheduler(opt, tc, steps_per_epoch, total)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y, label_smoothing=tc.label_smoothing).backward()
        opt.step()
        sched.step()
    return step


def children_static(space: Any, net: ElasticMBConvSupernet, steps: list[list[Architecture]],
                     batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], None]:
    """The step's children as separate static modules, forward + backward on the labels, no optimizer: what the
    sandwich would cost with no weight sharing, slicing, distillation or L2 (the per-FLOP efficiency part)."""
    models = {a: net.extract(a).train() for kids in steps for a in kids}

    def run() -> None:
        for kids, (x, y) in zip(steps, batches):
            for a in kids:
                models[a].zero_grad(set_to_none=True)
                F.cross_entropy(models[a](x), y).backward()
    return run


def sandwich_analytic(space: Any, shape: tuple[int, int, int], steps: list[list[Architecture]],
                      samples: int) -> dict[str, Any]:
    """Forward FLOPs of the step's children over the largest's, per step and expected over the space."""
    big = space.flops(space.largest(), shape, CLASSES)
    per_step = [sum(space.flops(a, shape, CLASSES) for a in kids) / big for kids in steps]
    return {"analytic_flops_ratio": statistics.fmean(per_step), "analytic_per_step": per_step,
            "analytic_expected_ratio": spos_compute(space, shape, samples)["bignas_step_mflops"] * 1e6 / big,
            "children": [[space.format(a) for a in kids] for kids in steps],
            "mflops": {"largest": big / 1e6, "smallest": space.flops(space.smallest(), shape, CLASSES) / 1e6}}


def bench_sandwich_setting(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from nasforge.supernet.distributed import DistContext
    from nasforge.supernet.train import SupernetTrainer, plan_children

    space, splits, tc, recipe = sandwich_setting(name, args)
    shape, n, dev = splits.input_shape, args.sandwich_steps, args.device
    net = fresh_supernet(space, shape, args.seed).to(dev)
    trainer = SupernetTrainer(net, space, splits, recipe=recipe, train_config=tc, epochs=1000, seed=args.seed,
                              dist=DistContext(device=dev))
    step = static_step(net.extract(space.largest()).train(), tc, trainer.steps_per_epoch, trainer.total_steps)
    gen = torch.Generator().manual_seed(args.seed)
    batches = list(splits.loader("train", tc.batch_size, device=dev, generator=gen, drop_last=True))[:n]
    if len(batches) < n:
        raise SystemExit(f"sandwich: only {len(batches)} batches of {tc.batch_size}; lower --sandwich-steps")
    rng = np.random.default_rng(args.seed)
    steps = [[c.arch for c in plan_children(space, rng, recipe)] for _ in range(n)]

    def sandwich() -> None:
        trainer.arch_rng = np.random.default_rng(args.seed)  # the same children every round (= steps)
        for x, y in batches:
            trainer.train_step(x, y)

    def alone() -> None:
        for x, y in batches:
            step(x, y)

    runners = {"sandwich": synced(sandwich, dev), "largest_alone": synced(alone, dev),
               "children_static": synced(children_static(space, net, steps, batches), dev)}
    for fn in runners.values():
        fn()  # warm-up
    out = interleaved(runners, args.sandwich_rounds, "sandwich", "largest_alone")
    med = out["median_s"]
    out.update(sandwich_analytic(space, shape, steps, args.samples))
    out.update(setting=name, input_shape=list(shape), batch=tc.batch_size, steps_per_round=n,
               ms_per_step={k: 1000 * v / n for k, v in med.items()},
               static_children_over_largest=med["children_static"] / med["largest_alone"],
               sandwich_over_static_children=med["sandwich"] / med["children_static"],
               recipe={"optimizer": tc.optimizer, "sandwich_n": recipe.sandwich_n,
                       "inplace_distillation": recipe.inplace_distillation,
                       "regularize_largest_only": recipe.regularize_largest_only})
    return out


def run_sandwich(args: argparse.Namespace) -> dict[str, Any]:
    """Experiment 2: one BigNAS sandwich step / one step of the extracted largest child alone."""
    results = {}
    for name in args.sandwich_settings:
        r = bench_sandwich_setting(name, args)
        results[name] = r
        print(f"sandwich {name:10s} b{r['batch']} sandwich {r['ms_per_step']['sandwich']:8.1f} ms  largest alone "
              f"{r['ms_per_step']['largest_alone']:7.1f} ms  ratio {r['ratio']:.3f} (cpu {r['ratio_cpu']:.3f}) "
              f" analytic {r['analytic_flops_ratio']:.3f} (expected over the space "
              f"{r['analytic_expected_ratio']:.3f}); static children / largest "
              f"{r['static_children_over_largest']:.3f}", flush=True)
    return {"experiment": "sandwich", "target_ratio": 2.3,
            "settings": {"settings": args.sandwich_settings, "rounds": args.sandwich_rounds,
                         "steps_per_round": args.sandwich_steps, "table1_batch": args.sandwich_batch,
                         "config": str(args.config), "seed": args.seed},
            "results": results, "worst_ratio": max(r["ratio"] for r in results.values())}


# ================================================================================================ 3. accuracy
#: variant -> ``--set`` overrides of the bignas-cpu config (BigNAS Sec. 4.3 ablations); SPOS: :func:`variant_config`
ABLATIONS: dict[str, list[str]] = {
    "bignas": [],
    "no-distill": ["inplace_distillation=false"],
    "no-zero-init": ["zero_init_last_bn=false"],
    "no-constant-ending": ["constant_ending=false"],
    "spos": [],
}


def variant_config(path: Path, variant: str, seed: int, spos_factor: float, epochs: float | None = None) -> Any:
    """The bignas-cpu config with one Sec. 4.3 switch off, or turned into SPOS: ``method: spos`` with every
    switch at SPOS's defaults (one uniform child per step on the labels, regularise every child, plain init, the
    ``padnas`` SGD recipe at the same batch), ``spos_factor`` times the epochs; same space, data and seed."""
    import yaml

    from nasforge.methods.bignas import supernet_config_from_dict

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.update(seed=seed, progress=False, checkpoint_every=None)
    if epochs is not None:
        raw["epochs"] = epochs
    if variant == "spos":
        for key in ("recipe", "sandwich", "inplace_distillation", "regularize_largest_only", "zero_init_last_bn",
                    "constant_ending"):
            raw.pop(key, None)
        raw.update(method="spos", train={"batch_size": raw["train"]["batch_size"]},
                   epochs=raw["epochs"] * spos_factor)
    return supernet_config_from_dict(raw, ABLATIONS[variant])


def heldout_split(splits: Any, size: int, seed: int = 0) -> Any:
    """``size`` (stratified, seeded) of the embedded Fashion-MNIST images that the config's ``limit`` left out of
    train / val / test: a larger test set from the same distribution, never seen in training (disjoint
    ``source_index``)."""
    from nasforge.data import load_data, split_indices

    full = load_data({"source": splits.config.source, "val_fraction": 0.0, "test_fraction": 0.0}).train
    used = torch.cat([splits[s].source_index for s in splits.available()])
    rest = full.subset(torch.nonzero(~torch.isin(full.source_index, used)).flatten(), "heldout")
    if size >= len(rest):
        return rest
    return rest.subset(split_indices(rest.labels, [size], np.random.default_rng(seed))[0], "heldout")


def eval_sets(splits: Any, batch: int, heldout: int) -> dict[str, Any]:
    """Scored sets: the config's test split and the held-out remainder (:func:`heldout_split`)."""
    from nasforge.data import Batches

    return {"test": splits.loader("test", batch, train=False),
            "heldout": Batches(heldout_split(splits, heldout), batch, train=False, transform=splits.transform())}


def supernet_job(config_path: str, variant: str, seed: int, workdir: str, spos_factor: float,
                 samples: int, epochs: float | None, heldout: int) -> dict[str, Any]:
    """Train one supernet variant (:func:`run_supernet`), then score its children after BN calibration."""
    from nasforge.methods.bignas import open_supernet_run, run_supernet
    from nasforge.supernet.select import evaluate_child
    from nasforge.supernet.train import calibration_batches

    c0 = time.process_time()
    config = variant_config(Path(config_path), variant, seed, spos_factor, epochs)
    out = Path(workdir) / f"{variant}-s{seed}"
    result = run_supernet(config, out)
    torch.set_num_threads(config.threads or 1)
    _, space, splits, net = open_supernet_run(out)
    calib = calibration_batches(splits, config.eval_batch_size, config.seed)
    kids = pick_children(space, splits.input_shape, samples, 0)
    acc = {which: {name: evaluate_child(net, arch, calib, scored, calib_steps=config.calib_batches)
                   for name, scored in eval_sets(splits, config.eval_batch_size, heldout).items()}
           for which, arch in kids.items()}
    return {"variant": variant, "seed": seed, "accuracy": acc, "steps": result.steps,
            "epochs": result.epochs_run, "train_wall_s": result.wall_time_s, "history": result.history,
            "cpu_s": time.process_time() - c0, "config": config.resolved()}


def scratch_job(config_path: str, which: str, seed: int, samples: int, epochs: float | None,
                heldout: int) -> dict[str, Any]:
    """Train one child from scratch with :func:`nasforge.train.train`: the supernet run's recipe (optimizer,
    schedule with constant ending, label smoothing, weight decay, dropout), epochs, batch and data order; weights
    from the same seeded He init with zero-init last BN gamma (a fresh supernet's slice)."""
    from nasforge.data import load_data
    from nasforge.device import seeded_torch
    from nasforge.methods.bignas import build_supernet, build_supernet_space, train_config_of
    from nasforge.supernet.train import derived_seed
    from nasforge.train import evaluate, train

    c0 = time.process_time()
    config = variant_config(Path(config_path), "bignas", seed, 1.0, epochs)
    torch.set_num_threads(config.threads or 1)
    tc, space, splits = train_config_of(config), build_supernet_space(config), load_data(config.data)
    arch = pick_children(space, splits.input_shape, samples, 0)[which]
    model = build_supernet(config, space, splits.input_shape, splits.num_classes).extract(arch).train()

    def epoch_batches(epoch: int) -> Any:
        gen = torch.Generator().manual_seed(derived_seed(seed, 1, epoch))  # the supernet trainer's data order
        return splits.loader("train", tc.batch_size, generator=gen, drop_last=True)

    with seeded_torch(derived_seed(seed, 2)):  # dropout masks
        res = train(model, epoch_batches, config=tc, epochs=float(config.value("epochs")), progress=False,
                    steps_per_epoch=len(epoch_batches(0)))
    sets = eval_sets(splits, config.eval_batch_size, heldout)
    acc = {name: evaluate(model, scored)["accuracy"] for name, scored in sets.items()}
    return {"variant": "scratch", "child": which, "seed": seed, "arch": space.format(arch), "accuracy": acc,
            "steps": res.steps, "train_wall_s": res.wall_time_s, "cpu_s": time.process_time() - c0,
            "history": [{"epoch": h.epoch, "train_loss": h.train_loss, "train_accuracy": h.train_accuracy,
                         "lr": h.lr} for h in res.history]}


def _summary(rows: list[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """Mean and sample std over seeds of each (variant, child, scored set)."""
    out: dict[str, Any] = {}
    for v in ["scratch", *variants]:
        mine = [r for r in rows if r["variant"] == v]
        for which in ("smallest", "middle", "largest"):
            for name in ("test", "heldout"):
                vals = [r["accuracy"][name] for r in mine if r.get("child") == which] if v == "scratch" else \
                    [r["accuracy"][which][name] for r in mine]
                if vals:
                    out.setdefault(v, {}).setdefault(which, {})[name] = {
                        "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
                        "values": vals}
    return out


def run_accuracy(args: argparse.Namespace) -> dict[str, Any]:
    """Experiment 3: Table 3 in miniature, Sec. 4.3 ablations and SPOS at equal compute, on ``--workers``
    processes (one torch thread each; supernets first, from-scratch children after)."""
    import tempfile

    from nasforge.data import load_data
    from nasforge.methods.bignas import build_supernet_space, load_supernet_config

    workdir = str(args.workdir or tempfile.mkdtemp(prefix="bench_supernet_"))
    common = (args.samples, args.epochs, args.heldout)
    jobs: list[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]] = []
    jobs += [(supernet_job, (str(args.config), v, seed, workdir, args.spos_factor, *common))
             for seed in args.seeds for v in args.variants]
    jobs += [(scratch_job, (str(args.config), which, seed, *common))
             for seed in args.seeds for which in ("largest", "middle", "smallest")]
    rows = []
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=mp.get_context("spawn")) as pool:
        for f in [pool.submit(fn, *a) for fn, a in jobs]:
            r = f.result()
            rows.append(r)
            print(f"accuracy {r['variant']:18s} seed {r['seed']} {r.get('child', ''):8s} "
                  f"{r['train_wall_s']:6.1f} s  {r['accuracy']}", flush=True)
    base = load_supernet_config(args.config)
    space, splits = build_supernet_space(base), load_data(base.data)
    shape, classes = splits.input_shape, splits.num_classes
    kids = pick_children(space, shape, args.samples, 0)
    settings = {"config": str(args.config), "seeds": args.seeds, "variants": args.variants,
                "spos_factor": args.spos_factor, "workers": args.workers,
                "epochs": args.epochs or base.value("epochs"), "data_sizes": splits.info["sizes"],
                "heldout_size": len(heldout_split(splits, args.heldout)),
                "middle": f"median FLOPs of {args.samples} seeded samples (seed 0)"}
    children = {w: {"arch": space.format(a), "mflops": space.flops(a, shape, classes) / 1e6,
                    "params": space.params(a, shape, classes)} for w, a in kids.items()}
    return {"experiment": "accuracy", "settings": settings, "children": children,
            "compute": spos_compute(space, shape, args.samples), "summary": _summary(rows, args.variants),
            "runs": rows}


def spos_compute(space: Any, shape: tuple[int, int, int], samples: int) -> dict[str, float]:
    """Analytic forward FLOPs per step: BigNAS (largest + smallest + 2 random) and SPOS (1 random), the random
    children's mean estimated from ``samples * 8`` seeded samples; their ratio is the equal-compute step factor."""
    rng = np.random.default_rng(1)
    mean = statistics.fmean(space.flops(space.sample(rng), shape, CLASSES) for _ in range(samples * 8))
    big, small = space.flops(space.largest(), shape, CLASSES), space.flops(space.smallest(), shape, CLASSES)
    bignas = big + small + 2 * mean
    return {"bignas_step_mflops": bignas / 1e6, "spos_step_mflops": mean / 1e6, "ratio": bignas / mean}


# ================================================================================================ main
EXPERIMENTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"slicing": run_slicing,
                                                                          "sandwich": run_sandwich,
                                                                          "accuracy": run_accuracy}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the timed experiments")
    ap.add_argument("--device", default="cpu", help="slicing / sandwich: cpu | cuda | cuda:N (accuracy: CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=25, help="seeded samples whose median-FLOPs child is 'middle'")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    s = ap.add_argument_group("slicing")
    s.add_argument("--slicing-sizes", type=int, nargs="+", default=[32, 64])
    s.add_argument("--slicing-batch", type=int, default=32)
    s.add_argument("--slicing-batch-large", type=int, default=16, help="batch for sizes above 32 px")
    s.add_argument("--rounds", type=int, default=9)
    s.add_argument("--iters", type=int, default=1, help="forward+backward passes per side per round")
    s.add_argument("--no-profile", dest="profile", action="store_false")
    w = ap.add_argument_group("sandwich")
    w.add_argument("--sandwich-settings", nargs="+", default=["table1", "bignas-cpu"], choices=["table1", "bignas-cpu"])
    w.add_argument("--sandwich-batch", type=int, default=32, help="batch of the table1 setting")
    w.add_argument("--sandwich-rounds", type=int, default=5)
    w.add_argument("--sandwich-steps", type=int, default=3, help="training steps per side per round")
    a = ap.add_argument_group("accuracy")
    a.add_argument("--seeds", type=int, nargs="+", default=[0], help="the documented run used 0 1")
    a.add_argument("--variants", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    a.add_argument("--spos-factor", type=float, default=4.0, help="SPOS epochs = this x the config's epochs")
    a.add_argument("--workers", type=int, default=2, help="training processes at a time (1 thread each)")
    a.add_argument("--heldout", type=int, default=3000, help="images of the held-out set (of the ~7,000 left)")
    a.add_argument("--epochs", type=float, default=None, help="override the config's epochs (quick looks)")
    a.add_argument("--workdir", type=Path, default=None, help="run folders (default: a new temporary folder)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "bignas-cpu.yaml",
                    help="the miniature BigNAS config (sandwich bignas-cpu setting and accuracy)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from nasforge.device import resolve_device

    args = parse_args(argv)
    args.device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:]))
    reports = {}
    for name in args.experiments:
        t0, c0 = time.perf_counter(), cpu_seconds()
        started = dt.datetime.now().isoformat(timespec="seconds")
        report = EXPERIMENTS[name](args)
        report.update(benchmark="bench_supernet", command=command, date=started,
                      machine=machine(args.device if name != "accuracy" else None),
                      wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(cpu_seconds() - c0, 1))
        path = args.out_dir / f"supernet_{name}.json"
        write_json(path, report)
        print(f"wrote {path} ({report['wall_s']} s wall, {report['cpu_s']} s CPU)", flush=True)
        reports[name] = report
    return reports


if __name__ == "__main__":
    main()
