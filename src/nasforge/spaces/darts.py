"""The DARTS cell search space (Liu et al. 2019, Sec. 2.1; searched by LNAS, lnas.txt Sec. 5.1).

Two cell types, ``normal`` and ``reduce``; each has 4 intermediate nodes, and node ``n`` (0..3) takes two
*distinct* earlier states (0 and 1: the cell inputs ``c_{k-2}``, ``c_{k-1}``; 2..: intermediate nodes) through one
operation each from :data:`~nasforge.nn.darts.OPS` (seven: ``none`` is excluded, as DARTS' derivation excludes it).

Genes (flat, labelled): ``normal.n0.a.op``, ``normal.n0.a.in``, ``normal.n0.b.op``, ``normal.n0.b.in``, ... for
both cells. **Canonical form**: the two inputs of a node are unordered, so :meth:`DartsSpace.make` orders each
node's pair by (input, op); equal cells have equal keys. ``(7^2 * C(n+2, 2))`` cells per node: ``180 * 7^8``
per cell type, its square for the space.

The string is DARTS' genotype ``Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...],
normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])`` (:meth:`DartsSpace.format` /
:meth:`DartsSpace.parse`; errors name the bad op, input or field).

:meth:`DartsSpace.build` is the standalone :class:`~nasforge.nn.darts.DartsNetwork` (``C``, ``layers``,
``auxiliary``, ``drop_path_prob`` are the space's constructor arguments; defaults: DARTS' 8-cell search network
with C=16, which trains in minutes on a CPU; the paper's CIFAR-10 evaluation network is ``C=36, layers=20,
auxiliary=True, drop_path_prob=0.2``). Costs are a fixed part plus one term per edge (:meth:`DartsSpace._terms`:
each operation counted once with ``FlopCounterMode`` at its cell's shape), so no network is built per architecture.
"""
from __future__ import annotations

import ast
import math
from typing import Any, Mapping

from ..arch import Architecture
from ..errors import InvalidArchitecture, InvalidValue, ParseError
from ..nn.darts import OPS, DartsNetwork, make_darts_op, reduction_layers
from ..registry import register_space
from .base import Dimension, InputShape, SearchSpace

__all__ = ["DartsSpace", "CELLS", "NODES"]


def _count(module: Any, shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, FlopCounterMode FLOPs at batch 1) of ``module`` in eval mode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if module is None:
        return 0, 0
    module.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(1, *shape))
    return sum(p.numel() for p in module.parameters()), int(counter.get_total_flops())

CELLS, NODES, SLOTS = ("normal", "reduce"), 4, ("a", "b")
CONCAT = list(range(2, 2 + NODES))
_EXPECTED = ("Genotype(normal=[(op, input) x 8], normal_concat=[2, 3, 4, 5], reduce=[(op, input) x 8], "
             f"reduce_concat=[2, 3, 4, 5]) with op in {', '.join(OPS)}")


def _label(cell: str, node: int, slot: str, what: str) -> str:
    return f"{cell}.n{node}.{slot}.{what}"


@register_space("darts")
class DartsSpace(SearchSpace):
    """DARTS: normal + reduction cells of 4 nodes with two (op, input) pairs each (module docstring)."""

    name = "darts"
    supernet = None
    default_input: InputShape = (3, 32, 32)
    default_classes = 10

    def __init__(self, C: int = 16, layers: int = 8, auxiliary: bool = False, drop_path_prob: float = 0.0) -> None:
        for field, value, low in (("C", C, 2), ("layers", layers, 3)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidValue(field, value, f"an int >= {low}", where="space 'darts'")
        if C % 2:
            raise InvalidValue("C", C, "an even int (factorized reductions halve it)", where="space 'darts'")
        if not isinstance(auxiliary, bool):
            raise InvalidValue("auxiliary", auxiliary, "true or false", where="space 'darts'")
        if not 0.0 <= float(drop_path_prob) < 1.0:
            raise InvalidValue("drop_path_prob", drop_path_prob, "a number in [0, 1)", where="space 'darts'")
        self.C, self.layers, self.auxiliary, self.drop_path_prob = C, layers, auxiliary, float(drop_path_prob)
        self._cache: dict[tuple[InputShape, int], tuple[tuple[int, int], Any]] = {}

    def dimensions(self) -> tuple[Dimension, ...]:
        dims = []
        for cell in CELLS:
            for node in range(NODES):
                for slot in SLOTS:
                    dims.append(Dimension(_label(cell, node, slot, "op"), OPS))
                    dims.append(Dimension(_label(cell, node, slot, "in"), tuple(range(node + 2))))
        return tuple(dims)

    def make(self, genes: Mapping[str, Any]) -> Architecture:
        """Validate and canonicalise: each node's two ``(input, op)`` pairs in increasing order."""
        genes = dict(genes)
        for cell in CELLS:
            for node in range(NODES):
                keys = [(_label(cell, node, s, "in"), _label(cell, node, s, "op")) for s in SLOTS]
                if all(k in genes for pair in keys for k in pair):
                    pairs = [(genes[i], genes[o]) for i, o in keys]
                    try:
                        pairs.sort(key=lambda p: (int(p[0]), OPS.index(p[1])))
                    except (ValueError, TypeError):
                        pass  # a bad value: super().make names it
                    for (i, o), (vi, vo) in zip(keys, pairs):
                        genes[i], genes[o] = vi, vo
        return super().make(genes)

    def check(self, arch: Architecture) -> None:
        genes = arch.to_dict()
        for cell in CELLS:
            for node in range(NODES):
                a, b = (genes[_label(cell, node, s, "in")] for s in SLOTS)
                if a == b:
                    raise InvalidArchitecture(_label(cell, node, "b", "in"), b,
                                              f"an input other than {a} (a node takes two distinct inputs)",
                                              where="space 'darts'")

    # ---------------------------------------------------------------------------------------------- genotypes
    def cells(self, arch: Architecture) -> dict[str, list[tuple[str, int]]]:
        """``{"normal": [(op, input) x 8], "reduce": [...]}`` in node order."""
        genes = self.validate(arch).to_dict()
        return {cell: [(str(genes[_label(cell, n, s, "op")]), int(genes[_label(cell, n, s, "in")]))
                       for n in range(NODES) for s in SLOTS] for cell in CELLS}

    def from_cells(self, normal: Any, reduce: Any) -> Architecture:
        """The architecture of two cells given as 8 ``(op, input)`` pairs each (node order)."""
        genes: dict[str, Any] = {}
        for cell, pairs in (("normal", normal), ("reduce", reduce)):
            if not isinstance(pairs, (list, tuple)) or len(pairs) != 2 * NODES:
                raise InvalidValue(cell, pairs, f"{2 * NODES} (op, input) pairs", where="darts genotype")
            for j, pair in enumerate(pairs):
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise InvalidValue(f"{cell}[{j}]", pair, "an (op, input) pair", where="darts genotype")
                genes[_label(cell, j // 2, SLOTS[j % 2], "op")] = pair[0]
                genes[_label(cell, j // 2, SLOTS[j % 2], "in")] = pair[1]
        return self.make(genes)

    def format(self, arch: Architecture) -> str:
        c = self.cells(arch)
        return (f"Genotype(normal={c['normal']!r}, normal_concat={CONCAT!r}, reduce={c['reduce']!r}, "
                f"reduce_concat={CONCAT!r})")

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; :class:`ParseError` naming the bad field, op or input."""
        if not isinstance(text, str):
            raise ParseError("darts genotype", repr(text), _EXPECTED)
        try:
            call = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            raise ParseError("darts genotype", text, _EXPECTED) from None
        if not isinstance(call, ast.Call) or getattr(call.func, "id", None) != "Genotype" or call.args:
            raise ParseError("darts genotype", text, _EXPECTED)
        fields: dict[str, Any] = {}
        for kw in call.keywords:
            try:
                fields[str(kw.arg)] = ast.literal_eval(kw.value)
            except ValueError:
                raise ParseError(f"darts genotype field {kw.arg!r}", ast.unparse(kw.value), "a literal") from None
        wanted = ("normal", "normal_concat", "reduce", "reduce_concat")
        if sorted(fields) != sorted(wanted):
            raise ParseError("darts genotype fields", ", ".join(fields), ", ".join(wanted))
        for cell in CELLS:
            if list(fields[f"{cell}_concat"]) != CONCAT:
                raise ParseError(f"darts genotype {cell}_concat", fields[f"{cell}_concat"], repr(CONCAT))
            for j, pair in enumerate(fields[cell] if isinstance(fields[cell], (list, tuple)) else []):
                if isinstance(pair, (list, tuple)) and len(pair) == 2 and pair[0] not in OPS:
                    raise ParseError(f"darts genotype {cell}[{j}] op", pair[0], ", ".join(OPS))
        try:
            return self.from_cells(fields["normal"], fields["reduce"])
        except (InvalidValue, InvalidArchitecture) as exc:
            raise ParseError("darts genotype", text if len(text) < 60 else text[:57] + "...", str(exc)) from None

    # ---------------------------------------------------------------------------------------------- networks
    def build(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> DartsNetwork:
        shape, classes = self.resolve_input(input_shape, num_classes)
        c = self.cells(arch)
        return DartsNetwork(c["normal"], c["reduce"], C=self.C, layers=self.layers, in_channels=shape[0],
                            num_classes=classes, auxiliary=self.auxiliary, drop_path_prob=self.drop_path_prob)

    def _terms(self, input_shape: InputShape | None, num_classes: int | None) -> tuple[tuple[int, int], Any]:
        """``(fixed (params, FLOPs), edge(cell_type, op, input) -> (params, FLOPs) summed over the cells)``: the
        network with max-pooling on every edge (no parameters, no counted FLOPs) is the fixed part; every edge adds
        its operation's counted cost at its cell's channels, resolution and stride (stride 2 from a reduction
        cell's inputs). Counted once per input shape and class count (cached)."""
        shape, classes = self.resolve_input(input_shape, num_classes)
        hit = self._cache.get((shape, classes))
        if hit is not None:
            return hit
        fixed = _count(self.build(self.smallest(), shape, classes), shape)
        reductions, (h, w), c = reduction_layers(self.layers), shape[1:], self.C
        per: dict[tuple[str, str, bool], list[int]] = {}
        op_costs: dict[tuple[str, int, int, int, int], tuple[int, int]] = {}
        for i in range(self.layers):
            red = i in reductions
            if red:
                c *= 2
            out = (-(-h // 2), -(-w // 2)) if red else (h, w)
            for op in OPS:
                for from_input in (True, False):
                    stride, res = (2, (h, w)) if red and from_input else (1, out)
                    key = (op, c, stride, *res)
                    if key not in op_costs:
                        op_costs[key] = _count(make_darts_op(op, c, stride), (c, *res))
                    acc = per.setdefault(("reduce" if red else "normal", op, from_input), [0, 0])
                    acc[0] += op_costs[key][0]
                    acc[1] += op_costs[key][1]
            h, w = out
        hit = self._cache[(shape, classes)] = (fixed, {k: tuple(v) for k, v in per.items()})
        return hit

    def _cost(self, arch: Architecture, input_shape: InputShape | None, num_classes: int | None,
              which: int) -> int:
        fixed, per = self._terms(input_shape, num_classes)
        total = fixed[which]
        for cell, pairs in self.cells(arch).items():
            total += sum(per[(cell, op, i < 2)][which] for op, i in pairs)
        return int(total)

    def flops(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> int:
        """FLOPs at batch 1 in ``FlopCounterMode``'s convention (eval mode: no auxiliary head): fixed part plus
        the counted cost of each edge's operation (:meth:`_terms`)."""
        return self._cost(arch, input_shape, num_classes, 1)

    def params(self, arch: Architecture, input_shape: InputShape | None = None,
               num_classes: int | None = None) -> int:
        """Parameters of :meth:`build` (auxiliary head included when the space has one)."""
        return self._cost(arch, input_shape, num_classes, 0)

    def _uniform(self, op: str) -> Architecture:
        pairs = [(op, i) for _ in range(NODES) for i in (0, 1)]
        return self.from_cells(pairs, pairs)

    def smallest(self) -> Architecture:
        """Max-pooling everywhere (no counted FLOPs on any edge)."""
        return self._uniform("max_pool_3x3")

    def largest(self) -> Architecture:
        """5x5 separable convolutions everywhere (the costliest operation on every edge)."""
        return self._uniform("sep_conv_5x5")

    def cardinality(self) -> int:
        per_cell = math.prod(len(OPS) ** 2 * math.comb(n + 2, 2) for n in range(NODES))
        return per_cell ** len(CELLS)

    def __repr__(self) -> str:
        return f"<DartsSpace 'darts' C={self.C} layers={self.layers} auxiliary={self.auxiliary}>"
