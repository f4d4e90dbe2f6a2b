"""Foundation sub-commands of the ``nasforge`` CLI: spaces, sample, cost, data, train, quickstart.

Handlers import what they use (torch, data, training) when they run, so ``nasforge --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..arch import parse
from ..errors import InvalidValue
from ..registry import get_space, list_spaces
from .base import command, emit, int_at_least, parse_input_shape


def _space_and_input(args: argparse.Namespace):
    space = get_space(args.space)
    shape = parse_input_shape(args.input) if getattr(args, "input", None) else None
    return space, *space.resolve_input(shape, getattr(args, "classes", None))


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="CxHxW", help="input shape, e.g. 3x32x32 (default: the space's default)")
    p.add_argument("--classes", type=int, metavar="N", help="number of classes (default: the space's default)")


@command("spaces", help="list the registered search spaces")
def cmd_spaces(args: argparse.Namespace) -> int:
    """List every registered search space with its cardinality and default input."""
    rows = []
    for name in list_spaces():
        s = get_space(name)
        doc = (type(s).__doc__ or "").strip().splitlines()
        rows.append({"space": name, "cardinality": s.cardinality(), "genes": len(s.dimensions()),
                     "default_input": "x".join(map(str, s.default_input)), "classes": s.default_classes,
                     "description": doc[0] if doc else ""})
    if args.format == "table":
        for r in rows:
            r["cardinality"] = f"{r['cardinality']:.3g}" if r["cardinality"] >= 1e6 else r["cardinality"]
    emit(args, rows)
    return 0


@command("sample", help="sample random architectures of a space")
def cmd_sample(args: argparse.Namespace) -> int:
    """Print N random architectures of SPACE (compact strings; JSON with --format json)."""
    space = get_space(args.space)
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.n)]
    if args.format == "json":
        import json

        print(json.dumps([{"arch": str(a), "key": a.key(), "genes": a.to_dict()} for a in archs], indent=2))
    else:
        for a in archs:
            print(a)
    return 0


cmd_sample.configure = lambda p: (p.add_argument("space", help="space name (see `nasforge spaces`)"),  # type: ignore[attr-defined]
                                   p.add_argument("-n", type=int_at_least(1, "-n"), default=1, help="how many (default 1)"),
                                   p.add_argument("--seed", type=int_at_least(0, "--seed"), default=0,
                                                  help="random seed (default 0)"))


@command("cost", help="params, FLOPs and (optionally) measured latency of an architecture")
def cmd_cost(args: argparse.Namespace) -> int:
    """Analytic params and FLOPs (FlopCounterMode convention: 2 FLOPs per multiply-add, batch 1) of ARCH in SPACE;
    with --latency also the median latency measured on this machine. ``nasforge cost EXPORT_DIR`` (a folder of
    ``nasforge export`` or an LNAS run's ``model/``): the exported network's parameters and counted FLOPs, dense and
    of its non-zero weights only (a weight-pruned model; LNAS Table 1's FLOPs column)."""
    from ..cost import costs

    if Path(args.space).is_dir():
        return _cost_of_export(args)
    if args.arch is None:
        raise InvalidValue("ARCH", None, "an architecture string or JSON (or give an exported model folder "
                                         "instead of SPACE)")
    space, shape, classes = _space_and_input(args)
    arch = parse(args.arch, space.name)
    kw = {"device": args.device, "backend": args.backend, "threads": args.threads} if args.latency else {}
    out = {"space": space.name, "arch": str(arch), "key": arch.key(), "input": "x".join(map(str, shape)),
           "classes": classes, **costs(space, arch, shape, classes, latency=args.latency, **kw)}
    if args.lut:
        from ..supernet.lut import load_lut

        lut = load_lut(args.lut)
        if hasattr(lut, "check"):
            lut.check(space, shape)
        out["latency_ms" if "latency_ms" not in out else "lut_latency_ms"] = lut.latency_ms(arch)
    emit(args, out)
    return 0


def _cost_of_export(args: argparse.Namespace) -> int:
    """Dense and non-zero costs of an exported (possibly pruned) network folder."""
    from ..cost import count_flops
    from ..cost.sparse import sparse_costs
    from ..export import load_exported

    for flag in ("arch", "input", "classes", "lut"):
        if getattr(args, flag, None):
            raise InvalidValue(f"--{flag}" if flag != "arch" else "ARCH", getattr(args, flag),
                               "nothing with an exported model folder (its arch.json gives them)")
    if args.latency:
        raise InvalidValue("--latency", True, "nothing with an exported model folder")
    net, arch = load_exported(args.space)
    info = json.loads((Path(args.space) / "arch.json").read_text())
    shape = tuple(info["input_shape"])
    emit(args, {"model": str(Path(args.space)), "space": info["space"], "arch": info.get("arch_str", str(arch)),
                "input": "x".join(map(str, shape)), "classes": info["num_classes"],
                "flops": count_flops(net, shape), **sparse_costs(net, shape)})
    return 0


def _cost_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="space name, or an exported model folder (nasforge export; an LNAS run's model/)")
    p.add_argument("arch", nargs="?", help="architecture string (as printed by `nasforge sample`) or JSON")
    _add_input_options(p)
    p.add_argument("--latency", action="store_true", help="also measure latency (median, torch.utils.benchmark)")
    p.add_argument("--backend", default="torch", help="latency backend: torch | onnxruntime")
    p.add_argument("--device", default="cpu", help="latency device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads while measuring")
    p.add_argument("--lut", help="latency from a lookup table: lut.json (nasforge latency-table build) or "
                                 "help:DEVICE (HELP's measured NB201 latencies, e.g. help:gold_6226)")


cmd_cost.configure = _cost_options  # type: ignore[attr-defined]


@command("latency-table", help="build a latency lookup table of a choice space on this device")
def cmd_latency_table(args: argparse.Namespace) -> int:
    """Time every unique (operation, input shape) of SPACE on this device and write a lookup table (PAD-NAS Sec.
    3.2): an architecture's latency is its fixed parts plus the sum of its operations. The table records device,
    backend, torch version and threads, and its fidelity against end-to-end measurements of --fidelity random
    architectures (Spearman rho, mean absolute percentage error).

      nasforge latency-table build proxyless-basic --input 3x224x224 --out lut.json [--backend eager|onnxruntime]
      nasforge cost proxyless-basic ARCH --lut lut.json
    """
    from ..supernet.lut import build_lut

    space, shape, classes = _space_and_input(args)
    if space.supernet != "choice":
        raise InvalidValue("SPACE", space.name, "a choice space: nb201, proxyless-basic, proxyless-large")
    backend = {"eager": "torch"}.get(args.backend, args.backend)
    lut = build_lut(space, shape, classes, backend=backend, threads=args.threads, device=args.device,
                    fidelity=args.fidelity, out=args.out, progress=args.format != "json")
    fid = lut.data.get("fidelity") or {}
    emit(args, {"out": args.out, "space": space.name, "input": "x".join(map(str, shape)), "entries": len(lut.entries),
                "fixed_ms": round(lut.fixed_ms, 4), "build_seconds": lut.data["build_seconds"],
                "fidelity_n": fid.get("n"), "spearman_rho": fid.get("spearman_rho"), "mape": fid.get("mape")})
    return 0


def _latency_table_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["build"], help="build: time the operations and write the table")
    p.add_argument("space", help="a choice space: nb201, proxyless-basic, proxyless-large")
    _add_input_options(p)
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--backend", default="eager", choices=["eager", "onnxruntime"], help="timing backend")
    p.add_argument("--threads", type=int_at_least(1, "--threads"), default=1, help="intra-op threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--fidelity", type=int_at_least(0, "--fidelity"), default=30,
                   help="random architectures measured end to end to check the table (default 30; 0 skips)")


cmd_latency_table.configure = _latency_table_options  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ data / train
def _data_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    flag = "--data" if required else "source"
    kw = {"required": True} if required else {}
    p.add_argument(flag, **kw, metavar="SOURCE",
                   help="embedded | digits | fashion-mnist | a folder or file (IDX, CIFAR pickles, .npz, CSV, images)")
    p.add_argument("--limit", type=int_at_least(1, "--limit"), help="use at most N examples of each source split")
    p.add_argument("--data-seed", type=int_at_least(0, "--data-seed"), default=0,
                   help="seed of the train/val/test split (default 0)")


def _data_config(args: argparse.Namespace, source: str, **extra):
    from ..data import DataConfig

    return DataConfig(source=source, limit=args.limit, seed=args.data_seed, **extra)


@command("data", help="describe a data source: format, split sizes, input shape, classes")
def cmd_data(args: argparse.Namespace) -> int:
    """Load SOURCE as nasforge would for a search and print what it holds (nothing is written)."""
    from ..data import load_data

    splits = load_data(_data_config(args, args.source))
    info = splits.info
    out = {"source": info.get("source", args.source), "format": info.get("format"),
           "input_shape": "x".join(map(str, splits.input_shape)), "classes": splits.num_classes,
           **{f"{k} examples": v for k, v in info.get("sizes", {}).items()},
           "class names": ", ".join(splits.classes) if splits.classes else "-"}
    emit(args, out)
    return 0


cmd_data.configure = lambda p: _data_options(p, required=False)  # type: ignore[attr-defined]


@command("train", help="train one architecture from scratch and report its held-out accuracy")
def cmd_train(args: argparse.Namespace) -> int:
    """Train ARCH of SPACE from scratch on --data with a paper's recipe (see nasforge.train.RECIPES) and report
    its accuracy on the test split (or the validation split when the data has no test split), after re-estimating
    its BatchNorm statistics on --calib-batches training batches when --calibrate-bn says so (auto: when it trained
    fewer than 5 epochs).

    With --out DIR the trained weights (checkpoint.pt, sha256 in result.json) and the architecture are kept."""
    from ..data import load_data
    from ..eval.train_eval import TrainEvaluator
    from ..io import write_json
    from ..train import TrainConfig
    from ..train.bn import check_calibrate_mode

    space = get_space(args.space)
    arch = parse(args.arch, space.name)
    calibrate = check_calibrate_mode(args.calibrate_bn, "--calibrate-bn")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise InvalidValue("--out", args.out, "a folder (this path is a file)")
    overrides = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr}.items() if v is not None}
    config = TrainConfig.from_recipe(args.recipe, **overrides)
    splits = load_data(_data_config(args, args.data, crop_padding=args.crop_padding, flip=args.flip))
    split = "test" if "test" in splits.available() else "val"
    evaluator = TrainEvaluator(space, splits, epochs=args.epochs, train_config=config, device=args.device,
                               split=split, calibrate_bn=calibrate, calib_batches=args.calib_batches)
    context = {"trial_dir": args.out} if args.out else None
    result = evaluator.evaluate(arch, seed=args.seed, context=context)
    row = {"space": space.name, "arch": str(arch), f"{split} accuracy": result.metrics["accuracy"],
           "train accuracy": result.info.get("train_accuracy"), "params": int(result.costs["params"]),
           "flops": int(result.costs["flops"]), "epochs": result.info.get("epochs"),
           "seconds": round(result.info.get("train_seconds", 0.0), 1), "device": result.info.get("device"),
           "bn calibrated": result.info.get("bn_calibrated"), "bn calib images": result.info.get("bn_calib_images")}
    if result.info.get("bn_calibrated"):
        row[f"{split} accuracy before calibration"] = result.info.get("accuracy_uncalibrated")
    if args.out:
        write_json(f"{args.out}/result.json", {"arch": arch.to_dict(), "arch_str": str(arch), "space": space.name,
                                               "result": result.to_dict(), "recipe": config.model_dump()})
        row["checkpoint"] = result.artifacts.get("checkpoint")
    emit(args, row)
    return 0


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="space name")
    p.add_argument("arch", help="architecture string or JSON")
    _data_options(p)
    p.add_argument("--epochs", type=float, default=1.0, help="epochs (fractions allowed; default 1)")
    p.add_argument("--recipe", default="nb201", help="training recipe: nb201 | lnas | efficientnet | bignas | menas | "
                                                     "dcnas-supernet | dcnas-retrain | padnas (default nb201)")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate (for recipes with a reference batch "
                                            "-- efficientnet, bignas, menas, dcnas-*, padnas -- the rate per "
                                            "lr_reference_batch images, scaled linearly to --batch-size)")
    p.add_argument("--crop-padding", type=int, default=0, help="pad + random-crop augmentation (pixels)")
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int_at_least(0, "--seed"), default=0,
                   help="weight-init, dropout and shuffling seed (default 0)")
    p.add_argument("--calibrate-bn", default="auto", metavar="auto|true|false",
                   help="re-estimate the BatchNorm statistics on training batches before scoring (default auto: "
                        "when trained fewer than 5 epochs)")
    p.add_argument("--calib-batches", type=int_at_least(1, "--calib-batches"), default=20,
                   help="training batches BN is calibrated on (default 20)")
    p.add_argument("--out", help="folder for the checkpoint and result.json")


cmd_train.configure = _train_options  # type: ignore[attr-defined]


@command("quickstart", help="a small real search on the embedded dataset, on CPU in a few minutes")
def cmd_quickstart(args: argparse.Namespace) -> int:
    """Regularized evolution over small NAS-Bench-201 cells, each trained from scratch for one epoch on the embedded
    Fashion-MNIST subset; prints the best architectures with accuracy, params, FLOPs and measured latency."""
    from ..cost import MeasuredLatency
    from ..study import STORE_NAME, Study, run_quickstart

    if (Path(args.out) / STORE_NAME).is_file():  # run before: continue it (a finished one just prints its table)
        print(f"quickstart: continuing the search in {args.out} (use --out for a new one)")
        study = Study.resume(args.out, overrides=[*args.overrides, f"progress={str(not args.no_progress).lower()}"])
        study.run()
    else:
        study = run_quickstart(args.out, overrides=args.overrides, progress=not args.no_progress)
    with study:
        done = [t for t in study.trials("complete") if t.metric("accuracy") is not None]
        done.sort(key=lambda t: -t.metric("accuracy"))
        shape, classes = study.evaluator.input_spec
        latency = MeasuredLatency(study.space, shape, classes, threads=1, warmup=3, repeats=5, min_run_time=0.05)
        rows = [{"trial": t.id, "accuracy": round(t.metric("accuracy"), 2), "params": int(t.metric("params")),
                 "flops": int(t.metric("flops")), "latency_ms": round(latency.cost(t.arch)["latency_ms"], 3),
                 "arch": str(t.arch)} for t in done[: args.top]]
    if args.format == "table":
        print(f"\nquickstart: {len(done)} architectures trained; the {len(rows)} best "
              f"(latency: batch 1, 1 thread, this machine). Run folder: {study.run_dir}")
    emit(args, rows)
    return 0


cmd_quickstart.configure = lambda p: (  # type: ignore[attr-defined]
    p.add_argument("--out", default="runs/quickstart", help="run folder (default runs/quickstart)"),
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a quickstart config value, e.g. --set budget=10"),
    p.add_argument("--top", type=int, default=5, help="rows in the final table (default 5)"),
    p.add_argument("--no-progress", action="store_true", help="no progress bar"))
