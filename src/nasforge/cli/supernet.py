"""``nasforge supernet``: train a weight-sharing supernet and evaluate, select or export its children.

The method comes from the config's ``method:`` field (train) or the run folder's ``config.yaml`` (eval, select):
each registered supernet method (:data:`nasforge.registry.METHODS`, e.g. ``bignas``, ``spos``) provides the steps.

``nasforge supernet train CONFIG.yaml [--set key=value ...] [--out RUN_DIR] [--resume]`` trains the supernet a
config describes (``configs/bignas*.yaml``, ``configs/spos*.yaml``; :mod:`nasforge.methods.bignas`) into a run
folder; ``--resume`` continues the one in ``--out`` (CONFIG may then be omitted: the folder's config.yaml is used).
Under ``torchrun --nproc_per_node N -m nasforge supernet train ...`` the ranks train data-parallel.

``nasforge supernet eval RUN_DIR --arch STR [--calib-batches N]`` prints the accuracy of one child after BatchNorm
calibration (BigNAS Sec. 3.1), with its parameters and FLOPs.

``nasforge supernet select RUN_DIR --budgets 0.25,0.5,1.0 [--n-fine 20] [--mutation neighbour|any]`` runs the
coarse-to-fine selection (BigNAS Sec. 3.2 / 4.4; fine-grained mutations move genes one step by default) and writes the model family (S, M, L, ...) to ``RUN_DIR/family.json``; ``nasforge export RUN_DIR
--arch M`` exports a member. Budgets on ``latency_ms`` (``--budgets latency_ms:5,latency_ms:10``) time every
child's standalone network on ``--device`` (batch 1, one thread), or read ``--lut FILE|help:DEVICE``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidValue
from .base import command, emit, format_table, int_at_least

__all__ = ["cmd_supernet", "method_of_folder"]


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["train", "eval", "select", "rank"],
                   help="train: train a supernet; eval: score one child; select: coarse-to-fine model family; "
                        "rank: rank consistency of one-shot scores against ground truth")
    p.add_argument("path", nargs="?", metavar="CONFIG|RUN_DIR",
                   help="train: the YAML config (optional with --resume); eval: the run folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="train: override a config value, e.g. --set epochs=3 --set train.batch_size=64")
    p.add_argument("--out", help="train: run folder (default: the config's 'out', else runs/<name>-<time>)")
    p.add_argument("--resume", action="store_true", help="train: continue the supernet in --out")
    p.add_argument("--no-progress", action="store_true", help="train: no progress bar")
    p.add_argument("--arch", help="eval: smallest, largest, or the child's architecture string or JSON")
    p.add_argument("--calib-batches", type=int_at_least(1, "--calib-batches"),
                   help="eval: BN-calibration batches (default: the config's calib_batches)")
    p.add_argument("--split", choices=["val", "test"], help="eval: split scored (default: test when there is one)")
    p.add_argument("--device", help="eval/select: cpu | cuda | cuda:N | auto (default cpu); train: use "
                   "--set device=...")
    p.add_argument("--budgets", help="select: comma-separated budgets, one member each: a fraction of the largest "
                   "child's FLOPs (0.25) or COST:MAX (flops:2e8, params:1e6, latency_ms:5)")
    p.add_argument("--lut", metavar="FILE|help:DEVICE",
                   help="select: latency_ms budgets from a lookup table of the run's space and input (nasforge "
                        "latency-table build) instead of measuring every child on --device")
    p.add_argument("--n-fine", type=int_at_least(0, "--n-fine"), default=20,
                   help="select: fine-grained mutations around each budget's best skeleton (default 20)")
    p.add_argument("--mutation", metavar="neighbour|any",
                   help="select: fine-grained mutation: neighbour = each changed gene moves one step to a neighbouring "
                        "choice (BigNAS Sec. 4.4 'slightly'; default), any = redrawn to any other choice")
    p.add_argument("--seed", type=int_at_least(0, "--seed"), help="select / rank: seed (default: the run's / 0)")
    p.add_argument("--n", type=int_at_least(3, "--n"), default=200, help="rank: architectures sampled (default 200)")
    p.add_argument("--metric", default=None, help="rank: the ground-truth column (default cifar10_test_hp200 of "
                                                  "the NB201 table)")
    p.add_argument("--truth", help="rank: CSV of architectures (column 'arch') and trained accuracies (--metric) "
                                   "for spaces without a packaged table")
    p.add_argument("--calib-images", type=int_at_least(1, "--calib-images"), default=1000,
                   help="rank: training images re-estimating each child's BN statistics (default 1000)")
    p.add_argument("--score-images", type=int_at_least(1, "--score-images"), default=1000,
                   help="rank: held-out images scored per child (default 1000)")


#: the method of a supernet config that names none
DEFAULT_METHOD = "bignas"
#: the resolved config a supernet run folder holds
RUN_CONFIG = "config.yaml"


def _method(raw: object, overrides: list[str]) -> Any:
    """The registered supernet method a raw config (plus ``--set`` overrides) names."""
    from ..methods import method_of_run
    from ..schema import apply_overrides

    data = apply_overrides(raw, overrides) if isinstance(raw, dict) else raw
    return method_of_run(data, DEFAULT_METHOD, kind="supernet")


def method_of_folder(run_dir: str | Path) -> Any:
    """The method that trained the supernet in ``run_dir`` (from its ``config.yaml``)."""
    from ..schema import read_yaml

    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise InvalidValue("RUN_DIR", str(run_dir), f"a run folder holding {RUN_CONFIG} (written by nasforge "
                                                    "supernet train)")
    return _method(read_yaml(path), [])


def _train(args: argparse.Namespace) -> int:
    from ..schema import read_yaml
    from ..supernet.distributed import env_ranks

    overrides = list(args.overrides) + (["progress=false"] if args.no_progress else [])
    path = args.path
    if path is None:
        if not (args.resume and args.out):
            raise InvalidValue("CONFIG", None, "a YAML config path (or --resume --out RUN_DIR)")
        path = str(Path(args.out) / RUN_CONFIG)
    method = _method(read_yaml(path), overrides)
    config = method.load_config(path, overrides)
    if args.resume and not (args.out or config.out):
        raise InvalidValue("--resume", True, "with --out RUN_DIR (the folder of the supernet to continue)")
    out = args.out or config.out or f"runs/{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = method.run(config, out, resume=args.resume)
    ranks = env_ranks()
    if ranks is not None and ranks[0] != 0:
        return 0
    emit(args, {"run_dir": str(Path(out).resolve()), "method": method.name, **method.summary(result)})
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.path is None:
        raise InvalidValue("RUN_DIR", None, "the run folder of a trained supernet")
    if not args.arch:
        raise InvalidValue("--arch", None, "smallest, largest, or the child's architecture string or JSON")
    evaluate = method_of_folder(args.path).step("evaluate", "supernet eval")
    emit(args, evaluate(args.path, args.arch, calib_batches=args.calib_batches, device=args.device,
                        split=args.split))
    return 0


def _budget(text: str) -> float | tuple[str, float]:
    cost, _, value = text.strip().rpartition(":")
    try:
        number = float(value)
    except ValueError:
        raise InvalidValue("--budgets", text, "a FLOPs fraction in (0, 1] or COST:MAX, e.g. 0.5 or flops:2e8") \
            from None
    return (cost, number) if cost else number


def _select(args: argparse.Namespace) -> int:
    if args.path is None:
        raise InvalidValue("RUN_DIR", None, "the run folder of a trained supernet")
    if not args.budgets:
        raise InvalidValue("--budgets", None, "comma-separated budgets, e.g. 0.25,0.5,1.0 or flops:2e8")
    budgets = [_budget(b) for b in args.budgets.split(",") if b.strip()]
    if args.mutation not in (None, "neighbour", "any"):
        raise InvalidValue("--mutation", args.mutation, ["neighbour", "any"])
    on_latency = any(isinstance(b, tuple) and b[0] == "latency_ms" for b in budgets)
    if args.lut and not on_latency:
        raise InvalidValue("--lut", args.lut, "only with latency_ms budgets, e.g. --budgets latency_ms:5,latency_ms:10")
    select = method_of_folder(args.path).step("select", "supernet select")
    extra = {"latency": args.lut or "measure"} if on_latency else {}
    fam = select(args.path, budgets, n_fine=args.n_fine, seed=args.seed, select_split=args.split or "val",
                 device=args.device, progress=False, mutation=args.mutation or "neighbour", **extra)
    rows = [{"member": m.name, "budget": str(m.budget), "accuracy": round(m.entry.accuracy, 2),
             "flops": m.entry.costs.get("flops"), "params": m.entry.costs.get("params"),
             **({"latency_ms": round(m.entry.costs["latency_ms"], 4)} if "latency_ms" in m.entry.costs else {}),
             "arch": m.entry.text} for m in fam.members]
    if getattr(args, "format", "table") == "json":
        emit(args, {"family": str(Path(args.path) / "family.json"), "members": rows})
    else:
        print(format_table(rows))
        print(f"family written to {Path(args.path) / 'family.json'}; export a member with "
              f"nasforge export {args.path} --arch {rows[0]['member'] if rows else 'S'}")
    return 0


_ACTION_ONLY = {"train": ("overrides", "out", "resume", "no_progress"), "eval": ("arch", "calib_batches"),
                "select": ("budgets", "mutation", "lut"), "rank": ("metric", "truth")}


def _rank(args: argparse.Namespace) -> int:
    from ..eval.oneshot import OneShotEvaluator
    from ..eval.rank import DEFAULT_METRIC, RANK_PLOT, rank_consistency

    if args.path is None:
        raise InvalidValue("RUN_DIR", None, "the run folder of a trained supernet")
    evaluator = OneShotEvaluator(args.path, calib_images=args.calib_images, score_images=args.score_images,
                                 split=args.split, device=args.device)
    summary = rank_consistency(evaluator, n=args.n, seed=args.seed or 0, metric=args.metric or DEFAULT_METRIC,
                               truth=args.truth, out_dir=args.path, progress=args.format != "json")
    keys = ("n", "kendall_tau", "spearman_rho", "params_tau", "flops_tau", "truth_metric", "seconds")
    emit(args, {k: summary[k] for k in keys})
    if args.format != "json":
        print(f"scores of every architecture in {Path(args.path) / 'rank.json'}, scatter plot in "
              f"{Path(args.path) / RANK_PLOT}")
    return 0


@command("supernet", help="train a weight-sharing supernet (BigNAS, SPOS...), or evaluate one of its children")
def cmd_supernet(args: argparse.Namespace) -> int:
    """Train a weight-sharing supernet or evaluate one child of a trained one.

      nasforge supernet train CONFIG.yaml [--set KEY=VALUE ...] [--out RUN_DIR] [--resume]
      nasforge supernet train --resume --out RUN_DIR
      nasforge supernet eval RUN_DIR --arch smallest|largest|ARCH [--calib-batches N]
      nasforge supernet select RUN_DIR --budgets 0.25,0.5,1.0 [--n-fine 20] [--seed N] [--mutation neighbour|any]
      nasforge supernet select RUN_DIR --budgets latency_ms:5,latency_ms:10 [--lut FILE|help:DEVICE]
      nasforge supernet rank RUN_DIR [--n 200] [--seed 0] [--metric COLUMN | --truth FILE.csv --metric COLUMN]

    The run folder gets config.yaml (resolved), supernet.pt (checkpoint), train_log.jsonl (per epoch: losses,
    learning rate, accuracy of the smallest and largest child after BN calibration) and result.json.
    """
    wrong = [n for action, names in _ACTION_ONLY.items() if action != args.action for n in names]
    if args.action == "train":
        wrong += ["split", "device"]
    elif args.device is None:
        args.device = "cpu"
    for name in wrong:
        if getattr(args, name) not in (None, False, []):
            flag = "--set" if name == "overrides" else "--" + name.replace("_", "-")
            raise InvalidValue(flag, getattr(args, name), f"no {flag} with 'supernet {args.action}'")
    return {"train": _train, "eval": _eval, "select": _select, "rank": _rank}[args.action](args)


cmd_supernet.configure = _options  # type: ignore[attr-defined]
