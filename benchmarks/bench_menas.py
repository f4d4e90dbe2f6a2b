"""MENAS evidence in miniature (nasforge issue 4): Tables 4-6 and Figs. 5-6 of menas.txt on a 2-core CPU.

Sub-commands (``all`` runs the three in order; each writes JSON into ``benchmarks/results/``):

``lottery``  cost of exploring ONE trained network's K=40 lottery-ticket proposals (menas.txt "Exploring Lottery
             Tickets": Eq. 1 truncation + BN re-calibration + ranking) with the unmodified ``configs/menas-cpu.yaml``
             sizes: (a) as a fraction of that network's own E_init training; (b) images/s through the proposals vs
             plain inference of the same pruned networks (built with their weights before timing; only the same
             forward passes timed, BN-train mode for calibration, eval mode for ranking), interleaved rounds.
             -> ``menas_lottery_cost.json``
``search``   per seed: MENAS at the reduced menas-cpu setting (:data:`PROFILE`), its three ablations
             (:data:`VARIANTS`: no large-model regularisation, Table 6; no lottery tickets; no weight sharing), and
             random search (same space and FLOPs constraint, each net trained E_init epochs from scratch, the
             Table 4 baseline) run one trial at a time until it has used the CPU time of that seed's MENAS run.
             Per-generation population statistics (Figs. 5-6). -> ``menas_search_runs.json``,
             ``menas_population.json``
``retrain``  winners of every run re-trained from scratch for ``--retrain-epochs`` on the search training split and
             scored on a held-out test split of the embedded Fashion-MNIST that the search never saw (Tables 4, 6);
             rank consistency (Table 5 in miniature): children of the MENAS runs, whose search accuracy came from
             individual weight sharing, re-trained the same way; Kendall tau, Spearman, RMSE.
             -> ``menas_vs_random.json``, ``menas_ablations.json``, ``menas_rank_consistency.json``

Compute is accounted in CPU seconds of the worker process (``time.process_time``) with one torch thread per job:
on a machine shared with other jobs wall time measures the load, CPU time the work; on a dedicated core they are
equal. Both are recorded. ``--jobs 2`` runs independent runs in two processes.

    python benchmarks/bench_menas.py all                     # the whole evidence run
    python benchmarks/bench_menas.py lottery --rounds 4
    python benchmarks/bench_menas.py search --seeds 0 1 2 --jobs 2 && python benchmarks/bench_menas.py retrain
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import stats

from nasforge.config import SearchConfig, build_space, build_strategy, config_from_dict, load_config
from nasforge.data import DataSplits, load_data
from nasforge.data.dataset import split_indices
from nasforge.data.loader import Batches
from nasforge.eval.train_eval import TrainEvaluator, init_weights
from nasforge.io import write_json
from nasforge.methods.menas import run_menas
from nasforge.prune import explore_lottery_tickets, inherit_weights, pruning_proposals
from nasforge.study import Study, StudyCallback
from nasforge.train import TrainConfig, bn_layers, calibrate_bn, evaluate, train
from nasforge.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MENAS_CPU = ROOT / "configs" / "menas-cpu.yaml"

#: The reduced menas-cpu setting of every search run (``--set`` overrides of configs/menas-cpu.yaml): 6 random
#: nets, 3 parents (2 best tickets + 1 largest model), 3 children, 3 generations (nominal 6*3 + 2*3*3 = 36
#: trials); the paper's 30 / 20 / 3 epochs become 0.5 / 0.3 / 0.1 epochs of the 1,600 training images.
PROFILE: tuple[str, ...] = (
    "strategy.params.population_size=6", "strategy.params.parent_size=3", "strategy.params.num_children=3",
    "strategy.params.generations=3", "evaluator.epochs_init=0.5", "evaluator.epochs_child=0.3",
    "evaluator.epochs_finetune=0.1", "evaluator.proposals=8", "evaluator.calib_batches=2",
    "evaluator.rank_images=200", "evaluator.threads=1", "device=cpu", "progress=false", "report=false")
#: MENAS and its ablations: overrides on top of PROFILE
VARIANTS: dict[str, tuple[str, ...]] = {
    "menas": (),
    "no_large_model_reg": ("strategy.params.large_model_ratio=0",),          # Table 6
    "no_lottery_tickets": ("strategy.params.lottery_tickets=0", "evaluator.proposals=0"),
    "no_weight_sharing": ("evaluator.weight_sharing=false",),
}
HELDOUT_SEED = 12345
#: BN re-calibration batches (of 64) before a re-trained network is tested
RETRAIN_CALIB = 10


# ============================================================================================== common
def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "device": "cpu", "load_avg_1m": os.getloadavg()[0], "git_head": commit}


def header(name: str, argv: Sequence[str]) -> dict[str, Any]:
    return {"benchmark": f"bench_menas {name}", "command": "python benchmarks/bench_menas.py " + " ".join(argv),
            "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine()}


def mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) of the non-missing values."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    return {"mean": statistics.fmean(v) if v else None, "std": statistics.stdev(v) if len(v) > 1 else None,
            "n": len(v), "values": v}


def search_config(variant: str, seed: int, extra: Sequence[str] = ()) -> SearchConfig:
    """configs/menas-cpu.yaml with PROFILE, the variant's overrides, ``extra`` (``--set``) and the seed."""
    return load_config(MENAS_CPU, [*PROFILE, *VARIANTS[variant], *extra, f"seed={seed}"])


def heldout_splits(config: SearchConfig, n_test: int) -> DataSplits:
    """The search data with ``test`` replaced by ``n_test`` images (stratified) of the same source file that are in
    neither the search training nor the search validation split; normalised with the search statistics."""
    search = load_data(config.data)
    full = load_data({**(config.data or {}), "limit": None, "val_fraction": 0.0, "test_fraction": 0.0}).train
    used = torch.cat([search.train.source_index, search.val.source_index])
    rest = np.flatnonzero(~torch.isin(full.source_index, used).numpy())
    pick = split_indices(full.labels[rest], [n_test], np.random.default_rng(HELDOUT_SEED))[0]
    test = full.subset(rest[pick], name="heldout")
    info = {**search.info, "heldout_test": {"size": len(test), "pool": int(len(rest)), "seed": HELDOUT_SEED}}
    return dataclasses.replace(search, test=test, info=info)


class Executor:
    """``concurrent.futures`` process pool (spawn) for ``jobs > 1``, in-process otherwise."""

    def __init__(self, jobs: int) -> None:
        self.pool = (cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) if jobs > 1 else None)

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        fut: cf.Future = cf.Future()
        fut.set_result(fn(*args))
        return fut

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


# ============================================================================================== 4. lottery cost
def lottery_setup(args: argparse.Namespace) -> dict[str, Any]:
    """The unmodified menas-cpu setting: a random net within the FLOPs budget trained E_init epochs; the calib
    and rank batches exactly as MenasEvaluator draws them (first ``calib_batches`` shuffled training batches;
    the first ``rank_images`` validation images in batches of ``eval_batch_size``)."""
    cfg = load_config(MENAS_CPU)
    ev, space, splits = cfg.evaluator, build_space(cfg), load_data(cfg.data)
    shape, classes = tuple(splits.input_shape), splits.num_classes
    rng = np.random.default_rng(args.seed)
    lo, hi = cfg.constraints[0].min, cfg.constraints[0].max
    arch = next(a for a in iter(lambda: space.sample(rng), None) if lo <= space.flops(a, shape, classes) <= hi)
    tc = TrainConfig.from_recipe(ev.recipe, **ev.train)
    model = init_weights(space.build(arch, shape, classes), torch.Generator().manual_seed(args.seed))
    c0 = time.process_time()
    out = train(model, splits.loader("train", tc.batch_size, seed=args.seed), config=tc, epochs=ev.epochs_init,
                val_batches=splits.loader("val", ev.eval_batch_size), progress=False)
    train_cpu = time.process_time() - c0
    calib = [x for x, _ in splits.loader("train", tc.batch_size, seed=args.seed + 1)][:ev.calib_batches]
    rank_ds = splits.val.subset(np.arange(min(ev.rank_images or len(splits.val), len(splits.val))))
    ranked = list(Batches(rank_ds, ev.eval_batch_size, train=False, transform=splits.transform()))
    return {"cfg": cfg, "space": space, "arch": arch, "model": model, "shape": shape, "classes": classes,
            "calib": calib, "ranked": ranked, "train": out, "train_cpu_s": train_cpu,
            "train_images": len(splits.train), "val_images": len(splits.val)}


def plain_networks(s: dict[str, Any], proposals: Sequence[Any]) -> list[torch.nn.Module]:
    """The same pruned networks, built and weighted (Eq. 1 truncation) before any timing."""
    state, space = s["model"].state_dict(), s["space"]
    nets = []
    for arch in proposals:
        net = space.build(arch, s["shape"], s["classes"])
        inherit_weights(net, state, child_layers=space.layer_modules(arch),
                        parent_layers=space.layer_modules(s["arch"]))
        nets.append(net.eval())
    return nets


@torch.no_grad()
def plain_pass(nets: Sequence[torch.nn.Module], calib: Sequence[torch.Tensor],
               ranked: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float, list[float]]:
    """Only the forward passes: calibration batches with BN in train mode (statistics reset untimed, cumulative
    average as calibrate_bn uses), then the rank batches in eval mode. Returns (seconds, cpu seconds, accuracies)."""
    bns = [bn_layers(n) for n in nets]
    for layers in bns:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
    correct = []
    t0, c0 = time.perf_counter(), time.process_time()
    for net, layers in zip(nets, bns):
        for m in layers:
            m.train()
        for x in calib:
            net(x)
        net.eval()
        correct.append(sum((net(x).argmax(1) == y).sum() for x, y in ranked))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = sum(len(y) for _, y in ranked)
    accs = [100.0 * float(c) / n for c in correct]
    return seconds, cpu, accs


def lottery_round(s: dict[str, Any], nets: Sequence[torch.nn.Module], k: int, seed: int,
                  plain_first: bool) -> dict[str, Any]:
    """One explore_lottery_tickets call and one plain pass over the same proposals, in the given order."""
    out: dict[str, Any] = {"plain_first": plain_first}
    for step in (("plain", "explore") if plain_first else ("explore", "plain")):
        if step == "explore":
            c0 = time.process_time()
            res = explore_lottery_tickets(s["model"], s["space"], s["arch"], input_shape=s["shape"],
                                          num_classes=s["classes"], calib_batches=s["calib"],
                                          rank_batches=s["ranked"], k=k, top_k=2, calib_steps=len(s["calib"]),
                                          rng=np.random.default_rng(seed), device="cpu")
            if [t.arch for t in res.proposals] != s["proposals"]:
                raise RuntimeError("explore_lottery_tickets drew other proposals than pruning_proposals")
            out["explore"] = {**res.timings, "cpu_s": time.process_time() - c0,
                              "accuracies": [t.accuracy for t in res.proposals]}
        else:
            sec, cpu, accs = plain_pass(nets, s["calib"], s["ranked"])
            out["plain"] = {"seconds": sec, "cpu_s": cpu, "accuracies": accs}
    return out


def lottery(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    s = lottery_setup(args)
    seed = args.seed + 2
    s["proposals"] = pruning_proposals(s["space"], s["arch"], args.k, np.random.default_rng(seed))
    nets = plain_networks(s, s["proposals"])
    rounds = []
    for r in range(args.rounds):
        rounds.append(lottery_round(s, nets, args.k, seed, plain_first=bool(r % 2)))
        print(f"lottery round {r}: explore {rounds[-1]['explore']['total_s']:.2f}s, "
              f"plain {rounds[-1]['plain']['seconds']:.2f}s", flush=True)
    report = {**header("lottery", argv), **lottery_summary(s, rounds, args)}
    write_json(args.out_dir / "menas_lottery_cost.json", report)
    return report


def lottery_summary(s: dict[str, Any], rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    ev, out = s["cfg"].evaluator, s["train"]
    images = rounds[0]["explore"]["calib_images"] + rounds[0]["explore"]["rank_images"]
    frac = [r["explore"]["total_s"] / out.wall_time_s for r in rounds]
    frac_cpu = [r["explore"]["cpu_s"] / s["train_cpu_s"] for r in rounds]
    speed = [r["plain"]["seconds"] / r["explore"]["total_s"] for r in rounds]
    speed_fwd = [r["plain"]["seconds"] / (r["explore"]["calibrate_s"] + r["explore"]["rank_s"]) for r in rounds]
    parts = {k: statistics.median(r["explore"][k] / r["explore"]["total_s"] for r in rounds)
             for k in ("truncate_s", "calibrate_s", "rank_s")}
    parts["other_s"] = 1.0 - sum(parts.values())
    agree = max(abs(a - b) for r in rounds for a, b in zip(r["explore"]["accuracies"], r["plain"]["accuracies"]))
    return {
        "settings": {"config": "configs/menas-cpu.yaml (unmodified)", "k": args.k, "top_k": 2,
                     "threads": args.threads, "seed": args.seed, "rounds": args.rounds,
                     "epochs_init": ev.epochs_init, "train_images": s["train_images"], "val_images": s["val_images"],
                     "batch_size": s["cfg"].evaluator.train.get("batch_size"), "calib_batches": len(s["calib"]),
                     "calib_images_per_proposal": sum(len(x) for x in s["calib"]),
                     "rank_images_per_proposal": sum(len(y) for _, y in s["ranked"]),
                     "arch": s["space"].format(s["arch"]),
                     "flops": s["space"].flops(s["arch"], s["shape"], s["classes"]),
                     "params": s["space"].params(s["arch"], s["shape"], s["classes"])},
        "train": {"wall_s": out.wall_time_s, "cpu_s": s["train_cpu_s"], "steps": out.steps,
                  "val_accuracy": out.final_val_accuracy},
        "rounds": rounds,
        "a_fraction_of_training": {"wall_median": statistics.median(frac), "cpu_median": statistics.median(frac_cpu),
                                   "per_round_wall": frac, "per_round_cpu": frac_cpu, "target": 0.10},
        "b_throughput_ratio": {"median": statistics.median(speed), "per_round": speed,
                               "forward_part_only_median": statistics.median(speed_fwd), "target": 0.9,
                               "images_per_round": images,
                               "explore_images_per_s": [images / r["explore"]["total_s"] for r in rounds],
                               "plain_images_per_s": [images / r["plain"]["seconds"] for r in rounds]},
        "explore_share_median": parts,
        "accuracy_max_abs_diff_explore_vs_plain": agree,
    }


# ============================================================================================== 1-3. search runs
def trial_record(space: Any, t: Any) -> dict[str, Any]:
    """One stored trial, flattened for JSON (architecture as the space's compact string)."""
    rec: dict[str, Any] = {"id": t.id, "generation": t.generation, "kind": t.info.get("kind", "random"),
                           "parents": list(t.parents), "state": t.state.value, "arch": space.format(t.arch),
                           "error": t.error, "wall_s": (t.finished_at - t.started_at)
                           if t.finished_at and t.started_at else None}
    r = t.result
    if r is not None:
        info = r.info
        rec.update(accuracy=r.metrics.get("accuracy"), params=r.costs.get("params"), flops=r.costs.get("flops"),
                   train_seconds=info.get("train_seconds"), epochs=info.get("epochs"),
                   bn_calibrated_accuracy=info.get("bn_calibrated_accuracy"))
        if "inheritance" in info:
            rec["inheritance"] = info["inheritance"]
            rec["inherited_from_trial"] = info.get("inherited_from", {}).get("trial")
        if "lottery_cost" in info:
            rec["lottery_cost"] = {k: info["lottery_cost"].get(k) for k in
                                   ("total_s", "explore_s", "train_seconds", "calib_images", "rank_images")}
    return rec


def run_record(study: Any, method: str, variant: str, seed: int, wall: float, cpu: float) -> dict[str, Any]:
    space = study.space
    trials = [trial_record(space, t) for t in study.trials() if t.state is not TrialState.RUNNING]
    done = [t for t in trials if t["state"] == "complete" and t.get("accuracy") is not None]
    best = max(done, key=lambda t: (t["accuracy"], -t["id"])) if done else None
    return {"method": method, "variant": variant, "seed": seed, "wall_s": wall, "cpu_s": cpu,
            "evaluated_networks": len(trials), "failed": sum(t["state"] == "failed" for t in trials),
            "winner": best, "trials": trials}


def annotate_recalibrated(study: Any, trials: list[dict[str, Any]]) -> None:
    """Add ``bn_calibrated_accuracy`` to the init / child records: the net's trained checkpoint with its BN
    statistics re-calibrated on :data:`RETRAIN_CALIB` training batches, scored on the search validation split
    (the evaluator's own score uses the running averages of training). Not counted in the run's CPU time."""
    ev = study.evaluator
    splits, (shape, classes) = ev.splits(), ev.input_spec
    for rec in trials:
        if rec["kind"] not in ("init", "child") or rec["state"] != "complete":
            continue
        model = study.space.build(study.space.parse(rec["arch"]), shape, classes)
        model.load_state_dict(study.load_checkpoint(rec["id"])["model"])
        calib = splits.loader("train", ev.train_config.batch_size, seed=HELDOUT_SEED + rec["id"])
        calibrate_bn(model, calib, RETRAIN_CALIB, "cpu")
        rec["bn_calibrated_accuracy"] = evaluate(model, splits.loader("val", ev.eval_batch_size))["accuracy"]


def menas_task(variant: str, seed: int, workdir: str, extra: Sequence[str], keep: bool) -> dict[str, Any]:
    """One MENAS run (nasforge.methods.menas.run_menas) in its own run folder; CPU time of this process. The
    folder (about 0.5 GB of checkpoints) is deleted afterwards unless ``keep``."""
    torch.set_num_threads(1)
    cfg = search_config(variant, seed, extra)
    t0, c0 = time.perf_counter(), time.process_time()
    run_dir = Path(workdir) / f"{variant}-s{seed}"
    study = run_menas(cfg, run_dir)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    try:
        rec = run_record(study, "menas", variant, seed, wall, cpu)
        if variant == "menas":
            annotate_recalibrated(study, rec["trials"])
        return {**rec, "overrides": [*PROFILE, *VARIANTS[variant], *extra, f"seed={seed}"]}
    finally:
        study.close()
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


class CpuBudget(StudyCallback):
    """Stops a study once this process has used ``seconds`` of CPU since the callback was made (the trial
    running when the budget runs out completes: random search gets at least the budget)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.c0 = seconds, time.process_time()

    def on_trial_end(self, study: Any, trial: Any) -> None:
        if time.process_time() - self.c0 >= self.seconds:
            study.budget = study.n_finished  # Study.run launches no further trial


class CalibratedTrainEvaluator(TrainEvaluator):
    """:class:`TrainEvaluator` that, after training, also records the accuracy on the scored split after BN
    re-calibration (:func:`nasforge.train.calibrate_bn` on ``calib_batches`` shuffled training batches) as
    ``info["bn_calibrated_accuracy"]``. The metric itself is unchanged (the shipped evaluator's)."""

    def __init__(self, *args: Any, calib_batches: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calib_batches = calib_batches

    def _after_train(self, run: Any, model: torch.nn.Module, out: Any) -> None:
        calib = run.splits.loader("train", self.train_config.batch_size, device=run.device, seed=run.data_seed + 1)
        calibrate_bn(model, calib, self.calib_batches, run.device)
        scored = run.splits.loader(self.split, self.eval_batch_size, device=run.device, train=False)
        run.info["bn_calibrated_accuracy"] = evaluate(model, scored, run.device)["accuracy"]


def random_config(seed: int, extra: Sequence[str]) -> SearchConfig:
    """The Table 4 baseline: same space, data, FLOPs constraint and recipe; strategy random; each net trained
    E_init epochs from scratch (evaluator kind train, no checkpoints)."""
    menas = search_config("menas", seed, extra)
    raw = menas.model_dump(mode="json")
    ev = menas.evaluator
    raw.update(strategy={"name": "random", "params": {}}, budget=100000, out=None,
               evaluator={"kind": "train", "epochs": ev.epochs_init, "recipe": ev.recipe, "train": dict(ev.train),
                          "eval_batch_size": ev.eval_batch_size, "checkpoints": False, "threads": ev.threads})
    return config_from_dict(raw)


def random_task(seed: int, cpu_budget: float, workdir: str, extra: Sequence[str]) -> dict[str, Any]:
    """Random search one trial at a time until this process has used ``cpu_budget`` CPU seconds (counted from
    before the data is loaded, as for MENAS). Every trial also records its BN-re-calibrated accuracy."""
    torch.set_num_threads(1)
    t0, budget = time.perf_counter(), CpuBudget(cpu_budget)
    cfg = random_config(seed, extra)
    space, ev = build_space(cfg), cfg.evaluator
    evaluator = CalibratedTrainEvaluator(space, cfg.data, epochs=ev.epochs, device=cfg.device,
                                         train_config=TrainConfig.from_recipe(ev.recipe, **ev.train),
                                         eval_batch_size=ev.eval_batch_size, checkpoints=False, threads=ev.threads,
                                         calib_batches=search_config("menas", seed, extra).evaluator.calib_batches)
    study = Study(space, build_strategy(cfg, space, evaluator), evaluator, budget=cfg.budget, metric=cfg.metric,
                  mode=cfg.mode, seed=cfg.seed, callbacks=[budget], run_dir=Path(workdir) / f"random-s{seed}",
                  config=cfg, device=cfg.device, report=False)
    try:
        study.run()
        rec = run_record(study, "random", "random", seed, time.perf_counter() - t0, time.process_time() - budget.c0)
    finally:
        study.close()
    done = [t for t in rec["trials"] if t.get("bn_calibrated_accuracy") is not None]
    rec["winner_bn"] = max(done, key=lambda t: (t["bn_calibrated_accuracy"], -t["id"])) if done else None
    return {**rec, "cpu_budget_s": cpu_budget}


def search(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    workdir, keep = args.workdir or tempfile.mkdtemp(prefix="bench_menas_"), args.workdir is not None
    ex, runs = Executor(args.jobs), []
    t0 = time.perf_counter()
    try:
        futs = {ex.submit(menas_task, v, s, workdir, args.set, keep): ("menas", v, s)
                for v in args.variants for s in args.seeds}
        pending = set(futs)
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in done:
                rec = f.result()
                runs.append(rec)
                best = rec["winner"]["accuracy"] if rec["winner"] else float("nan")
                print(f"{rec['variant']:20s} seed {rec['seed']}: cpu {rec['cpu_s']:.0f}s wall {rec['wall_s']:.0f}s "
                      f"N={rec['evaluated_networks']} best {best:.1f}", flush=True)
                if futs[f][:2] == ("menas", "menas"):
                    nf = ex.submit(random_task, rec["seed"], rec["cpu_s"], workdir, args.set)
                    futs[nf] = ("random", "random", rec["seed"])
                    pending.add(nf)
    finally:
        ex.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    runs.sort(key=lambda r: (r["method"], r["variant"], r["seed"]))
    report = {**header("search", argv), "wall_s": time.perf_counter() - t0, "jobs": args.jobs,
              "profile": list(PROFILE), "extra_overrides": list(args.set),
              "variants": {k: list(v) for k, v in VARIANTS.items()}, "runs": runs}
    write_json(args.out_dir / "menas_search_runs.json", report)
    write_json(args.out_dir / "menas_population.json", {**header("search", argv), **population(runs)})
    return report


# ============================================================================================== 2. population
def _gen_stats(trials: list[dict[str, Any]]) -> dict[str, Any]:
    done = [t for t in trials if t["state"] == "complete" and t.get("params") is not None]

    def avg(key: Callable[[dict[str, Any]], float | None], kinds: tuple[str, ...]) -> float | None:
        v = [key(t) for t in done if t["kind"] in kinds]
        v = [x for x in v if x is not None]
        return statistics.fmean(v) if v else None

    epoch_s = lambda t: t["train_seconds"] / t["epochs"] if t.get("epochs") else None  # noqa: E731
    out: dict[str, Any] = {}
    for name, kinds in (("all", ("init", "child", "ticket")), ("nets", ("init", "child")), ("tickets", ("ticket",))):
        out[name] = {"count": sum(t["kind"] in kinds for t in done), "params": avg(lambda t: t["params"], kinds),
                     "flops": avg(lambda t: t["flops"], kinds), "epoch_s": avg(epoch_s, kinds),
                     "accuracy": avg(lambda t: t["accuracy"], kinds)}
    return out


def population(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Figs. 5-6 in miniature: per generation, mean params / FLOPs / epoch time (train seconds / epochs, which
    includes the end-of-training validation pass as the paper's epoch time does) of the networks of each MENAS
    run, then the mean over seeds."""
    per_variant: dict[str, Any] = {}
    for variant in sorted({r["variant"] for r in runs if r["method"] == "menas"}):
        mine = [r for r in runs if r["variant"] == variant]
        gens = sorted({t["generation"] for r in mine for t in r["trials"]})
        per_run = {str(r["seed"]): {str(g): _gen_stats([t for t in r["trials"] if t["generation"] == g])
                                    for g in gens} for r in mine}
        over: dict[str, Any] = {}
        for g in map(str, gens):
            over[g] = {part: {k: mean_std([per_run[s][g][part][k] for s in per_run])["mean"]
                              for k in ("params", "flops", "epoch_s", "accuracy", "count")}
                       for part in ("all", "nets", "tickets")}
        per_variant[variant] = {"mean_over_seeds": over, "per_seed": per_run}
    return {"population": per_variant}


# ============================================================================================== 5 + retraining
def retrain_task(arch: str, seed: int, epochs: float, n_test: int, extra: Sequence[str]) -> dict[str, Any]:
    """``arch`` trained from scratch (seeded) for ``epochs`` on the search training split with the search's MENAS
    recipe and batch size, then scored on the held-out test split, as trained and after BN re-calibration on
    :data:`RETRAIN_CALIB` training batches (the headline: running averages lag behind the weights after so few
    steps)."""
    torch.set_num_threads(1)
    cfg = search_config("menas", 0, extra)
    space, ev = build_space(cfg), cfg.evaluator
    evaluator = CalibratedTrainEvaluator(space, heldout_splits(cfg, n_test), epochs=epochs, device="cpu",
                                         train_config=TrainConfig.from_recipe(ev.recipe, **ev.train),
                                         eval_batch_size=ev.eval_batch_size, checkpoints=False, threads=1,
                                         split="test", calib_batches=RETRAIN_CALIB)
    c0 = time.process_time()
    res = evaluator.evaluate(space.parse(arch), seed=seed)
    return {"arch": arch, "test_accuracy": res.info["bn_calibrated_accuracy"],
            "test_accuracy_uncalibrated": res.metrics["accuracy"], "params": res.costs["params"],
            "flops": res.costs["flops"], "train_seconds": res.info["train_seconds"],
            "cpu_s": time.process_time() - c0}


def rank_children(runs: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``n`` distinct complete children (weight-shared search accuracy) of the full MENAS runs."""
    kids: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r["variant"] != "menas":
            continue
        for t in r["trials"]:
            if t["kind"] == "child" and t["state"] == "complete" and t.get("inheritance"):
                kids.setdefault(t["arch"], {**t, "seed": r["seed"]})
    items = sorted(kids.values(), key=lambda t: (t["seed"], t["id"]))
    if len(items) > n:
        keep = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
        items = [items[i] for i in sorted(keep)]
    return items


def rank_metrics(search_acc: Sequence[float], retrain_acc: Sequence[float]) -> dict[str, Any]:
    tau = stats.kendalltau(search_acc, retrain_acc)
    rho = stats.spearmanr(search_acc, retrain_acc)
    d = np.asarray(search_acc) - np.asarray(retrain_acc)
    return {"n": len(d), "kendall_tau": float(tau.statistic), "kendall_p": float(tau.pvalue),
            "spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "rmse": float(np.sqrt(np.mean(d ** 2))), "mean_search_minus_retrain": float(d.mean())}


def retrain(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    runs = json.loads((args.out_dir / "menas_search_runs.json").read_text())["runs"]
    kids = rank_children(runs, args.rank_archs, args.seed)
    winners = [w for r in runs for w in (r["winner"], r.get("winner_bn")) if w]
    archs = {w["arch"] for w in winners} | {k["arch"] for k in kids}
    ex, t0 = Executor(args.jobs), time.perf_counter()
    try:
        futs = {a: ex.submit(retrain_task, a, args.retrain_seed, args.retrain_epochs, args.n_test, args.set)
                for a in sorted(archs)}
        scores = {a: f.result() for a, f in futs.items()}
    finally:
        ex.close()
    settings = {"retrain_epochs": args.retrain_epochs, "retrain_seed": args.retrain_seed, "n_test": args.n_test,
                "retrain_calib_batches": RETRAIN_CALIB,
                "protocol": "from scratch (seeded init_weights), the search's menas recipe and batch size, on the "
                            "search training split; accuracy on held-out test images of the same source outside "
                            "the search subset, after BN re-calibration (uncalibrated accuracy kept too)",
                "wall_s": time.perf_counter() - t0}
    head = header("retrain", argv)
    for w in winners:
        w["retrain"] = scores[w["arch"]]
    write_json(args.out_dir / "menas_vs_random.json", {**head, "settings": settings, **table4(runs)})
    write_json(args.out_dir / "menas_ablations.json", {**head, "settings": settings, **ablations(runs)})
    epochs_child = search_config("menas", 0, args.set).evaluator.epochs_child
    rank = {**head, "settings": {**settings, "children": len(kids), "search_epochs_child": epochs_child},
            **rank_table(kids, scores)}
    write_json(args.out_dir / "menas_rank_consistency.json", rank)
    return rank


def rank_table(kids: list[dict[str, Any]], scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Table 5 in miniature: search accuracy under individual weight sharing (as the evaluator scored it, and
    with the child's BN statistics re-calibrated) against the re-trained test accuracy."""
    rows = [{"seed": k["seed"], "trial": k["id"], "generation": k["generation"], "arch": k["arch"],
             "search_accuracy": k["accuracy"], "search_accuracy_bn_recalibrated": k.get("bn_calibrated_accuracy"),
             "retrain_accuracy": scores[k["arch"]]["test_accuracy"], "params": k["params"], "flops": k["flops"],
             "inheritance": k["inheritance"]} for k in kids]
    retrained = [r["retrain_accuracy"] for r in rows]
    metrics = {"as_searched": rank_metrics([r["search_accuracy"] for r in rows], retrained)} if len(rows) >= 3 else {}
    if len(rows) >= 3 and all(r["search_accuracy_bn_recalibrated"] is not None for r in rows):
        metrics["bn_recalibrated"] = rank_metrics([r["search_accuracy_bn_recalibrated"] for r in rows], retrained)
    return {"metrics": metrics, "rows": rows}


def _method_row(runs: list[dict[str, Any]], which: str = "winner") -> dict[str, Any]:
    w = [r[which] for r in runs]
    return {"seeds": [r["seed"] for r in runs],
            "search_accuracy": mean_std([x and x["accuracy"] for x in w]),
            "search_accuracy_bn_recalibrated": mean_std([x and x.get("bn_calibrated_accuracy") for x in w]),
            "retrain_test_accuracy": mean_std([x and x.get("retrain", {}).get("test_accuracy") for x in w]),
            "retrain_test_accuracy_uncalibrated": mean_std([x and x.get("retrain", {}).get(
                "test_accuracy_uncalibrated") for x in w]),
            "params_M": mean_std([x and x["params"] / 1e6 for x in w]),
            "mflops": mean_std([x and x["flops"] / 1e6 for x in w]),
            "evaluated_networks": mean_std([r["evaluated_networks"] for r in runs]),
            "cpu_s": mean_std([r["cpu_s"] for r in runs]), "wall_s": mean_std([r["wall_s"] for r in runs]),
            "winner_kinds": [x and x["kind"] for x in w], "winners": [x and x["arch"] for x in w]}


def table4(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Table 4 in miniature: MENAS vs random search at equal CPU time."""
    rnd = [r for r in runs if r["method"] == "random"]
    return {"menas": _method_row([r for r in runs if r["variant"] == "menas"]), "random": _method_row(rnd),
            "random_bn_proxy": _method_row(rnd, "winner_bn")}


def ablations(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Table 6 and the issue's other ablations, same seeds."""
    return {"variants": {v: _method_row([r for r in runs if r["variant"] == v])
                         for v in VARIANTS if any(r["variant"] == v for r in runs)}}


# ============================================================================================== CLI
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["lottery", "search", "retrain", "all"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2, help="processes for independent runs (1 torch thread each)")
    ap.add_argument("--workdir", default=None, help="keep the run folders here (default: a temporary folder, "
                    "each MENAS run folder deleted once recorded)")
    ap.add_argument("--k", type=int, default=40, help="lottery: pruning proposals")
    ap.add_argument("--rounds", type=int, default=2, help="lottery: interleaved explore / plain rounds")
    ap.add_argument("--threads", type=int, default=1, help="lottery: torch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain-epochs", type=float, default=1.5, help="3x E_init of PROFILE")
    ap.add_argument("--retrain-seed", type=int, default=7)
    ap.add_argument("--n-test", type=int, default=1000, help="held-out test images")
    ap.add_argument("--rank-archs", type=int, default=10, help="children re-trained for rank consistency")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra overrides of every search config after PROFILE (smoke tests)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.command in ("lottery", "all"):
        lottery(args, argv)
    if args.command in ("search", "all"):
        search(args, argv)
    if args.command in ("retrain", "all"):
        retrain(args, argv)
    print(f"bench_menas {args.command}: {time.perf_counter() - t0:.0f} s wall", flush=True)


if __name__ == "__main__":
    main()
