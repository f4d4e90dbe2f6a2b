"""Latency lookup tables (PAD-NAS Sec. 3.2, "the latency is predicted by a lookup table"): an architecture's
latency is the latency of its fixed parts (stem, reductions, head) plus the sum of the latencies of its chosen
operations, each timed once on the user's own device at the input shape it sees in the network.

:func:`build_lut` builds the table for a choice space (``nb201``, ``proxyless-*``): it builds the choice-block
supernet once, records the input shape every op module and fixed part sees (a forward pass of the largest child
and of one child per op), and times every unique ``(op, input shape)`` module with
:func:`~nasforge.cost.latency.measure_latency` (``torch.utils.benchmark`` or ONNX Runtime; warm-up, repeats,
median). It records device, backend, torch version and threads, and its fidelity: Spearman's rho and the mean
absolute percentage error of the table against end-to-end measured latency of ``fidelity`` random architectures.

:class:`LatencyLUT` answers ``latency_ms(arch)`` by sums over the table (``nb201``: an op on edge ``e`` runs once
in every cell, at that cell's feature size). :class:`HelpLatency` serves HELP's measured NB201 latencies
(``help:DEVICE``; Lee et al. 2021, packaged) through the same interface.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..arch import Architecture
from ..data.tables import read_table
from ..errors import InvalidValue
from ..io import write_json
from ..registry import get_space
from ..spaces.base import InputShape, SearchSpace
from .choice import NB201ChoiceSupernet, ProxylessChoiceSupernet, choice_supernet
from ..cost.latency import measure_latency

__all__ = ["LatencyLUT", "HelpLatency", "build_lut", "load_lut", "HELP_PATH", "HELP_DEVICES"]

HELP_PATH = Path(__file__).resolve().parents[1] / "assets" / "nb201" / "nb201_latency_ms.csv.gz"
_EMPTY = ("none", "identity")


def HELP_DEVICES() -> list[str]:  # noqa: N802  (a function: the table is read only when asked)
    """The device columns of the packaged HELP table."""
    return [c for c in read_table(HELP_PATH) if c not in ("arch_index", "arch_str")]


def _signature(op: str, shape: Sequence[int], out_shape: Sequence[int]) -> str:
    """``op@CxHxW->CxHxW``: an op is timed once per input and output shape (channels, stride)."""
    def dims(v: Sequence[int]) -> str:
        return "x".join(str(int(s)) for s in v)
    return f"{op}@{dims(shape)}->{dims(out_shape)}"


class LatencyLUT:
    """A latency lookup table: ``fixed_ms`` + per position the chosen op's entry (``entries[signature]``)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        try:
            self.space_name = str(data["space"]["name"])
            self.space_kwargs = dict(data["space"].get("kwargs", {}))
            self.input_shape = tuple(int(v) for v in data["input_shape"])
            self.fixed_ms = float(data["fixed_ms"])
            self.entries = {str(k): float(v) for k, v in data["entries"].items()}
            self.positions = {str(k): {str(op): [str(s) for s in sigs] for op, sigs in v.items()}
                              for k, v in data["positions"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidValue("latency table", type(exc).__name__, "the JSON written by nasforge latency-table "
                                                                    "build") from None
        self.data = dict(data)

    def check(self, space: SearchSpace, input_shape: InputShape) -> "LatencyLUT":
        """``self`` when it was built for ``space`` (name and size arguments) at ``input_shape``, else an error."""
        built = f"{self.space_name} {self.space_kwargs} at {'x'.join(map(str, self.input_shape))}"
        if (space.name, _kwargs(space), tuple(input_shape)) != (self.space_name, self.space_kwargs, self.input_shape):
            raise InvalidValue("--lut", built, f"a table built for {space.name} {_kwargs(space)} at "
                                               f"{'x'.join(map(str, input_shape))} (nasforge latency-table build)")
        return self

    def latency_ms(self, arch: Architecture) -> float:
        """Predicted latency (ms, batch 1) of ``arch``: fixed parts + the sum of its operations' entries."""
        if arch.space != self.space_name:
            raise InvalidValue("architecture space", arch.space, [self.space_name], where="latency table")
        total = self.fixed_ms
        for label, ops in self.positions.items():
            op = str(arch[label])
            if op not in ops:
                raise InvalidValue(f"latency table op of {label!r}", op, list(ops))
            total += sum(self.entries[s] for s in ops[op])
        return total

    def cost(self, arch: Architecture) -> dict[str, float]:
        return {"latency_ms": self.latency_ms(arch)}


class HelpLatency:
    """HELP's measured latency of every NB201 cell on one of 27 device settings (``help:gold_6226`` ...)."""

    def __init__(self, device: str) -> None:
        table = read_table(HELP_PATH)
        devices = [c for c in table if c not in ("arch_index", "arch_str")]
        if device not in devices:
            raise InvalidValue("--lut help:DEVICE", device, devices)
        space = get_space("nb201")
        self.device = device
        self._ms = {space.parse(s): float(v) for s, v in zip(table["arch_str"], table[device])}
        self.space_name = "nb201"

    def latency_ms(self, arch: Architecture) -> float:
        if arch not in self._ms:
            raise InvalidValue("architecture", str(arch), "an NB201 cell", where=f"help:{self.device}")
        return self._ms[arch]

    def cost(self, arch: Architecture) -> dict[str, float]:
        return {"latency_ms": self.latency_ms(arch)}


def load_lut(spec: str | os.PathLike[str]) -> LatencyLUT | HelpLatency:
    """A table from ``lut.json`` (:func:`build_lut`) or ``help:DEVICE`` (packaged HELP NB201 latencies)."""
    text = str(spec)
    if text.startswith("help:"):
        return HelpLatency(text.split(":", 1)[1])
    path = Path(text)
    if not path.is_file():
        raise InvalidValue("--lut", text, "a lut.json written by nasforge latency-table build, or help:DEVICE")
    try:
        return LatencyLUT(json.loads(path.read_text(encoding="utf-8")))
    except ValueError:
        raise InvalidValue("--lut", text, "a JSON file written by nasforge latency-table build") from None


# ================================================================================================ build
def _shapes(net: nn.Module, modules: Mapping[str, nn.Module], archs: Sequence[Architecture],
            input_shape: InputShape) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """The input and output shapes (batch 1) each named module sees in forward passes of ``archs``."""
    seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(name: str) -> Any:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen.setdefault(name, (tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            for arch in archs:
                with net.activate(arch):
                    net.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return seen


def _layout(net: nn.Module, space: SearchSpace, input_shape: InputShape) -> tuple[dict[str, nn.Module],
                                                                                 dict[str, dict[str, list[str]]],
                                                                                 dict[str, nn.Module]]:
    """Op modules by name, per position the module names of each op (empty for none / identity), fixed parts."""
    ops_of = space.op_sets()
    modules: dict[str, nn.Module] = {}
    positions: dict[str, dict[str, list[str]]] = {label: {op: [] for op in ops} for label, ops in ops_of.items()}
    if isinstance(net, NB201ChoiceSupernet):
        for i in net._cells:
            for label, ops in ops_of.items():
                for op in ops:
                    if op not in _EMPTY:
                        name = f"cell{i}.{label}.{op}"
                        modules[name] = net.features[i]["edges"][label][op]
                        positions[label][op].append(name)
        fixed = {f"features.{i}": m for i, m in enumerate(net.features) if i not in net._cells}
        fixed.update({"head_norm": net.head_norm, "classifier": net.classifier})
    elif isinstance(net, ProxylessChoiceSupernet):
        for label, ops in ops_of.items():
            for op in ops:
                if op not in _EMPTY:
                    name = f"{label}.{op}"
                    modules[name] = net.choices[label.split(".")[0]][op]
                    positions[label][op].append(name)
        fixed = {"stem": net.stem, "head": net.head}
    else:  # pragma: no cover - choice_supernet builds only these two
        raise InvalidValue("space", space.name, "nb201, proxyless-basic, proxyless-large")
    return modules, positions, fixed


def _probe_archs(space: SearchSpace) -> list[Architecture]:
    """Children that between them run every op at every position (op ``j`` of each position, for each j)."""
    sets = space.op_sets()
    width = max(len(ops) for ops in sets.values())
    return [space.make({label: ops[min(j, len(ops) - 1)] for label, ops in sets.items()}) for j in range(width)]


def build_lut(space: SearchSpace | str, input_shape: InputShape | None = None, num_classes: int | None = None, *,
              backend: str = "torch", threads: int | None = 1, device: str = "cpu", fidelity: int = 30,
              seed: int = 0, repeats: int = 10, out: str | os.PathLike[str] | None = None,
              progress: bool = False) -> LatencyLUT:
    """Time every unique ``(op, input shape)`` of ``space`` at ``input_shape`` (module docstring) and check the
    table against ``fidelity`` end-to-end measurements; written to ``out`` (JSON) when given."""
    space = get_space(space) if isinstance(space, str) else space
    shape, classes = space.resolve_input(input_shape, num_classes)
    start = time.perf_counter()
    net = choice_supernet(space, shape, classes, generator=torch.Generator().manual_seed(seed)).eval()
    modules, positions, fixed = _layout(net, space, shape)
    seen = _shapes(net, {**modules, **fixed}, _probe_archs(space), shape)
    timing = dict(threads=threads, device=device, backend=backend, repeats=repeats, seed=seed)
    entries: dict[str, float] = {}
    sig_of: dict[str, str] = {}
    items = list(modules.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="ops", unit="op")
    # the harness's own cost per timed call (no_grad, the call, the return), measured on an identity module and
    # taken off every entry: inside a network an op pays none of it
    overhead_ms = measure_latency(nn.Identity(), shape, **timing).median_ms
    for name, module in items:
        sig = _signature(name.rsplit(".", 1)[-1], *seen[name])
        sig_of[name] = sig
        if sig not in entries:
            entries[sig] = max(0.0, measure_latency(module, seen[name][0], **timing).median_ms - overhead_ms)
    fixed_ms = overhead_ms + sum(max(0.0, measure_latency(m, seen[name][0], **timing).median_ms - overhead_ms)
                                 for name, m in fixed.items())
    table = {"space": {"name": space.name, "kwargs": _kwargs(space)}, "input_shape": list(shape),
             "num_classes": classes, "fixed_ms": fixed_ms, "entries": entries,
             "positions": {label: {op: [sig_of[n] for n in names] for op, names in ops.items()}
                           for label, ops in positions.items()},
             "device": str(device), "backend": backend, "threads": threads, "torch": torch.__version__,
             "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
             "harness_overhead_ms": overhead_ms,
             "build_seconds": None, "fidelity": None}
    lut = LatencyLUT(table)
    table["build_seconds"] = round(time.perf_counter() - start, 2)
    if fidelity:
        table["fidelity"] = _fidelity(lut, space, shape, classes, fidelity, seed, timing)
    lut = LatencyLUT(table)
    if out is not None:
        write_json(out, table)
    return lut


def _kwargs(space: SearchSpace) -> dict[str, Any]:
    return {"C": space.C, "N": space.N} if hasattr(space, "C") else {}


def _fidelity(lut: LatencyLUT, space: SearchSpace, shape: InputShape, classes: int, n: int, seed: int,
              timing: Mapping[str, Any]) -> dict[str, Any]:
    """Spearman rho and MAPE of the table against end-to-end latency of ``n`` random standalone networks."""
    rng = np.random.default_rng(seed)
    predicted, measured = [], []
    for _ in range(n):
        arch = space.sample(rng)
        predicted.append(lut.latency_ms(arch))
        net = space.build(arch, shape, classes).eval()
        measured.append(measure_latency(net, shape, **timing).median_ms)
    p, m = np.array(predicted), np.array(measured)
    return {"n": n, "spearman_rho": float(stats.spearmanr(p, m).statistic),
            "mape": float(np.mean(np.abs(p - m) / m)), "predicted_ms": p.tolist(), "measured_ms": m.tolist()}
