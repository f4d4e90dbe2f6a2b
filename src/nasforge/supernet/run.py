"""A supernet run folder describes itself: ``supernet.json`` names the space (registered name, constructor
arguments and, for a choice-block supernet, its current op sets), the input shape, the number of classes, the
data block and the calibration settings. :func:`open_supernet` rebuilds the trained supernet from it and the
checkpoint (``supernet.pt``, verified against ``result.json`` once training has finished) without knowing which
method trained it, so evaluators, the rank harness and searches read any supernet run the same way.

A choice-block supernet with weight banks (DCNAS) records ``copies`` (M) and ``copy_seed`` in ``supernet.json``;
its learnt copy assignments live in ``assignments.json`` (``{"layers": [...], "assignments": {arch key: [copy per
layer]}, "pool": [architecture strings]}``), which :func:`open_supernet` loads into ``net.assignments`` so every
reader scores an architecture with its own copies. ``SupernetRun.pool`` is the architecture pool (DCNAS's A) when
the run has one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..data import DataSplits, load_data
from ..device import resolve_device
from ..errors import InvalidValue
from ..io import load_checkpoint, write_json
from ..registry import get_space
from ..spaces.base import SearchSpace
from .choice import choice_supernet
from .mbconv import ElasticMBConvSupernet

__all__ = ["INFO", "CHECKPOINT", "RESULT", "ASSIGNMENTS", "SupernetRun", "run_info", "write_run_info", "open_supernet",
           "build_supernet_for"]

INFO, CHECKPOINT, RESULT, ASSIGNMENTS = "supernet.json", "supernet.pt", "result.json", "assignments.json"


def run_info(space: SearchSpace, space_kwargs: Mapping[str, Any], net: nn.Module, data: Mapping[str, Any], *,
             method: str, seed: int, calib_batches: int, eval_batch_size: int,
             eval_batches: int | None = None) -> dict[str, Any]:
    """The ``supernet.json`` record of a supernet ``net`` over ``space`` (JSON values only)."""
    info: dict[str, Any] = {"method": method, "space": {"name": space.name, "kwargs": dict(space_kwargs)},
                            "supernet": space.supernet, "input_shape": list(net.input_shape),
                            "num_classes": int(net.num_classes), "data": dict(data), "seed": int(seed),
                            "calib_batches": int(calib_batches), "eval_batch_size": int(eval_batch_size),
                            "eval_batches": eval_batches}
    if callable(getattr(net, "op_sets", None)):
        info["op_sets"] = {k: list(v) for k, v in net.op_sets().items()}
    if getattr(net, "copies", 1) > 1:
        info["copies"], info["copy_seed"] = int(net.copies), int(net.copy_seed)
    return json.loads(json.dumps(info))  # tuples -> lists: exactly what a reader sees


def write_run_info(run_dir: str | os.PathLike[str], info: Mapping[str, Any]) -> Path:
    """Write ``supernet.json`` atomically."""
    return write_json(Path(run_dir) / INFO, dict(info))


def build_supernet_for(space: SearchSpace, input_shape: tuple[int, int, int], num_classes: int, *,
                       generator: torch.Generator, zero_init_last_bn: bool = False, copies: int = 1) -> nn.Module:
    """The supernet kind ``space`` declares (``space.supernet``): choice-block (``copies`` weight copies per
    operation, 1 = SPOS) or elastic MBConv."""
    if space.supernet == "choice":
        return choice_supernet(space, input_shape, num_classes, generator=generator, copies=copies)
    if copies != 1:
        raise InvalidValue("copies", copies, f"1 (space {space.name!r} has no choice-block supernet)")
    if space.supernet == "elastic":
        return ElasticMBConvSupernet(space, input_shape, num_classes, zero_init_last_bn=zero_init_last_bn,
                                     generator=generator)
    raise InvalidValue("space", space.name, "a space with a supernet (space.supernet 'choice' or 'elastic')")


@dataclass
class SupernetRun:
    """A trained supernet and what it was trained on: ``info`` (``supernet.json``), ``space`` (with its current
    op sets), ``net`` (weights loaded, on ``device``), ``splits`` (the run's data; ``None`` when not loaded)."""

    folder: Path
    info: dict[str, Any]
    space: SearchSpace
    net: nn.Module
    splits: DataSplits | None
    checkpoint_sha256: str | None
    pool: list[Any] | None = None


def _space_of(info: Mapping[str, Any]) -> SearchSpace:
    spec = info["space"]
    space = get_space(spec["name"], **spec.get("kwargs", {}))
    if info.get("op_sets") and callable(getattr(space, "restrict", None)):
        space = space.restrict(info["op_sets"])
    return space


def open_supernet(run_dir: str | os.PathLike[str], device: str = "cpu", *, data: bool = True) -> SupernetRun:
    """The trained supernet of ``run_dir`` (:class:`SupernetRun`); ``data=False`` skips loading the data."""
    folder = Path(run_dir)
    if not (folder / INFO).is_file() or not (folder / CHECKPOINT).is_file():
        raise InvalidValue("RUN_DIR", str(run_dir), f"a supernet run folder holding {INFO} and {CHECKPOINT} "
                                                    "(written by nasforge supernet train)")
    try:
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        space = _space_of(info)
        shape, classes = tuple(info["input_shape"]), int(info["num_classes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidValue(str(folder / INFO), type(exc).__name__, "the file written by nasforge supernet train") \
            from None
    sha = None
    if (folder / RESULT).is_file():
        sha = json.loads((folder / RESULT).read_text(encoding="utf-8")).get("checkpoint_sha256")
    ckpt = load_checkpoint(folder / CHECKPOINT, sha256=sha, map_location="cpu")
    net = build_supernet_for(space, shape, classes, generator=torch.Generator().manual_seed(0),
                             copies=int(info.get("copies", 1)))
    net.load_state_dict(ckpt["model"])
    pool = None
    if (folder / ASSIGNMENTS).is_file():
        banks = json.loads((folder / ASSIGNMENTS).read_text(encoding="utf-8"))
        net.copy_seed = int(info.get("copy_seed", 0))
        net.assignments = {k: tuple(v) for k, v in banks["assignments"].items()}
        pool = [space.parse(a) for a in banks.get("pool", [])] or None
    splits = load_data(info["data"]) if data else None
    return SupernetRun(folder, info, space, net.to(resolve_device(device)), splits, sha, pool)
