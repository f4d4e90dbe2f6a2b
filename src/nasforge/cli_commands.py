"""Foundation sub-commands of the ``nasforge`` CLI: spaces, sample, cost, train, quickstart."""
from __future__ import annotations

import argparse

import numpy as np

from .arch import parse
from .cli import command, emit, parse_input_shape
from .registry import get_space, list_spaces

try:  # search-engine commands (search, runs), registered when present
    from . import cli_search  # noqa: F401
except ImportError as _exc:  # pragma: no cover - only while the module is missing
    if "cli_search" not in str(_exc):
        raise


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
                                   p.add_argument("-n", type=int, default=1, help="how many (default 1)"),
                                   p.add_argument("--seed", type=int, default=0, help="random seed (default 0)"))


@command("cost", help="params, FLOPs and (optionally) measured latency of an architecture")
def cmd_cost(args: argparse.Namespace) -> int:
    """Analytic params and FLOPs (FlopCounterMode convention: 2 FLOPs per multiply-add, batch 1) of ARCH in SPACE;
    with --latency also the median latency measured on this machine."""
    from .cost import costs

    space, shape, classes = _space_and_input(args)
    arch = parse(args.arch, space.name)
    kw = {"device": args.device, "backend": args.backend, "threads": args.threads} if args.latency else {}
    out = {"space": space.name, "arch": str(arch), "key": arch.key(), "input": "x".join(map(str, shape)),
           "classes": classes, **costs(space, arch, shape, classes, latency=args.latency, **kw)}
    emit(args, out)
    return 0


def _cost_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="space name")
    p.add_argument("arch", help="architecture string (as printed by `nasforge sample`) or JSON")
    _add_input_options(p)
    p.add_argument("--latency", action="store_true", help="also measure latency (median, torch.utils.benchmark)")
    p.add_argument("--backend", default="torch", help="latency backend: torch | onnxruntime")
    p.add_argument("--device", default="cpu", help="latency device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads while measuring")


cmd_cost.configure = _cost_options  # type: ignore[attr-defined]
