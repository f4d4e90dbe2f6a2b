"""The NAS-Bench-201 cell search space (Dong & Yang, ICLR 2020, Sec. 2.1).

One cell, stacked in all 15 cell positions of a fixed macro network (:mod:`nasforge.nn.nb201`), is a DAG of 4
nodes whose 6 edges each take one of 5 operations: ``5**6 = 15,625`` architectures.

Genes are ``e0`` .. ``e5``, one per edge, in the order of the official cell string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``:

====== ====== ====== ====== ====== ======
``e0`` ``e1`` ``e2`` ``e3`` ``e4`` ``e5``
1<-0   2<-0   2<-1   3<-0   3<-1   3<-2
====== ====== ====== ====== ====== ======

each with the choices ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3`` (the benchmark's op order,
which is also the encoding order).

**Canonical form.** In NAS-Bench-201 every cell string is its own architecture: the benchmark has one row per
string (15,625 rows), trained separately, so this space does no further canonicalisation and
``cardinality() == 15625``. Cells that compute the same function (isomorphic graphs, dead edges) share an
:meth:`NB201Space.isomorphism_key` (the NATS ``get_unique_str``; 6,466 classes), taken from the benchmark table.

**Numbering.** :meth:`NB201Space.index` / :meth:`NB201Space.from_index` use the official ``arch_index`` of the
benchmark, which is not a product order of the edge choices, so they read the packaged table
``nasforge/assets/nb201/nb201_accuracy.csv.gz`` (see its PROVENANCE.md). It is read lazily, on the first call that
needs it, with ``gzip`` + ``csv``, and cached for the process.

**Costs.** :meth:`NB201Space.params` equals the official NB201 parameter counts (checked against NAS-Bench-Suite-
Zero's ``params`` for 1,450 cells, CIFAR-10 and CIFAR-100 heads); :meth:`NB201Space.flops` follows
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add, convs and linear layers only), which is not
the NB201 table's own FLOPs column (that one counts multiply-adds plus a few element-wise terms).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..arch import Architecture
from ..data.tables import read_table
from ..errors import InvalidValue, ParseError
from ..nn.nb201 import EDGES, OPS, CostTerms, NB201Network, PlanStep, macro_plan
from ..nn.spec import stride_plan
from ..registry import register_space
from .base import Dimension, InputShape, SearchSpace, checked_op_sets

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["NB201Space", "EDGE_LABELS", "EDGE_NAMES", "TABLE_PATH", "NUM_ARCHS"]

#: gene labels, one per edge, in official-string order
EDGE_LABELS: tuple[str, ...] = tuple(f"e{i}" for i in range(len(EDGES)))
#: the edges as ``"to<-from"``, aligned with :data:`EDGE_LABELS`
EDGE_NAMES: tuple[str, ...] = tuple(f"{dst}<-{src}" for dst, src in EDGES)
#: the packaged NAS-Bench-201 table (official index, cell string, accuracies, isomorphism class)
TABLE_PATH: Path = Path(__file__).resolve().parents[1] / "assets" / "nb201" / "nb201_accuracy.csv.gz"
NUM_ARCHS = len(OPS) ** len(EDGES)
#: edge positions of each ``|...|`` group of the official string (the inputs of nodes 1, 2, 3)
_STRING_GROUPS: tuple[tuple[int, ...], ...] = tuple(
    tuple(i for i, (dst, _) in enumerate(EDGES) if dst == node) for node in (1, 2, 3))
_EXPECTED = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2| with op in " + ", ".join(OPS)


@functools.lru_cache(maxsize=1)
def _index_table() -> tuple[tuple[str, ...], dict[str, int], tuple[str, ...]]:
    """(cell string by index, index by cell string, isomorphism key by index) from the packaged table."""
    table = read_table(TABLE_PATH, required=("arch_index", "arch_str", "nats_unique_str"))
    order = sorted(range(len(table["arch_index"])), key=lambda r: int(table["arch_index"][r]))
    strings = tuple(table["arch_str"][r] for r in order)
    unique = tuple(table["nats_unique_str"][r] for r in order)
    return strings, {s: i for i, s in enumerate(strings)}, unique


def _parse_group(group: str, node: int, text: str) -> list[str]:
    """The ops of one ``|op~i|...|`` group (the inputs of ``node``); ParseError naming the bad token."""
    edges = _STRING_GROUPS[node - 1]
    if len(group) < 2 or group[0] != "|" or group[-1] != "|":
        raise ParseError(f"nb201 node {node}", group, f"'|op~0|...|' (in {text!r}); full form {_EXPECTED}")
    tokens = group[1:-1].split("|")
    if len(tokens) != len(edges):
        raise ParseError(f"nb201 node {node}", group, f"{len(edges)} '|op~src|' tokens; full form {_EXPECTED}")
    ops = []
    for token, edge in zip(tokens, edges):
        op, sep, src = token.partition("~")
        if not sep or src != str(EDGES[edge][1]):
            raise ParseError(f"nb201 edge {EDGE_NAMES[edge]} token", token, f"'op~{EDGES[edge][1]}'")
        if op not in OPS:
            raise ParseError(f"nb201 edge {EDGE_NAMES[edge]} op", op, "one of " + ", ".join(OPS))
        ops.append(op)
    return ops


@register_space("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201: 6 edges x 5 ops on a fixed skeleton of ``3 x N`` cells with ``C, 2C, 4C`` channels.

    ``C`` (initial channels) and ``N`` (cells per stage) default to the benchmark's 16 and 5 (paper Sec. 2.1).
    """

    name = "nb201"
    supernet = "choice"
    default_input: InputShape = (3, 32, 32)
    default_classes = 10

    def __init__(self, C: int = 16, N: int = 5, op_sets: Mapping[str, Sequence[str]] | None = None) -> None:
        for field, value in (("C", C), ("N", N)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValue(field, value, "a positive int", where="space 'nb201'")
        self.C, self.N = C, N
        self._sets = self._checked({label: OPS for label in EDGE_LABELS}, op_sets or {})
        self._ops_cache: dict[Architecture, tuple[str, ...]] = {}  # validated arch -> ops (at most 15,625)
        self._terms_cache: dict[tuple[InputShape, int], tuple[list[PlanStep], CostTerms]] = {}

    # ---------------------------------------------------------------------------------------------- op sets
    def _checked(self, base: Mapping[str, tuple[str, ...]],
                 op_sets: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
        """``base`` with the edges of ``op_sets`` replaced by non-empty subsets (canonical :data:`OPS` order)."""
        return checked_op_sets(base, op_sets, "space 'nb201'", position="edge")

    def op_sets(self) -> dict[str, tuple[str, ...]]:
        """The current operation set of every edge, by gene label (all of :data:`OPS` unless restricted)."""
        return dict(self._sets)

    def restrict(self, op_sets: Mapping[str, Sequence[str]]) -> "NB201Space":
        """A space whose edges in ``op_sets`` keep only those operations (PAD-NAS operation pruning); each set
        must be a non-empty subset of the edge's current set. Same name, ``C`` and ``N``: architectures, the
        benchmark index and the table work unchanged."""
        return type(self)(self.C, self.N, self._checked(self._sets, op_sets))

    # ---------------------------------------------------------------------------------------------- genes
    def dimensions(self) -> tuple[Dimension, ...]:
        return tuple(Dimension(label, ops) for label, ops in self._sets.items())

    def cell_ops(self, arch: Architecture) -> tuple[str, ...]:
        """The six edge operations of ``arch`` in official-string order (validated once, then cached)."""
        ops = self._ops_cache.get(arch) if isinstance(arch, Architecture) else None
        if ops is None:
            genes = self.validate(arch).to_dict()
            ops = self._ops_cache[arch] = tuple(str(genes[label]) for label in EDGE_LABELS)
        return ops

    def from_ops(self, ops: tuple[str, ...] | list[str]) -> Architecture:
        """The architecture with edge operations ``ops`` (official-string order)."""
        if len(ops) != len(EDGES):
            raise InvalidValue("nb201 ops", list(ops), f"{len(EDGES)} ops from {', '.join(OPS)}")
        return self.make(dict(zip(EDGE_LABELS, ops)))

    # ---------------------------------------------------------------------------------------------- strings
    def format(self, arch: Architecture) -> str:
        """The official NB201 cell string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|``."""
        ops = self.cell_ops(arch)
        return "+".join("|" + "|".join(f"{ops[e]}~{EDGES[e][1]}" for e in group) + "|" for group in _STRING_GROUPS)

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; raises :class:`ParseError` naming the bad group, token or op."""
        if not isinstance(text, str):
            raise ParseError("nb201 architecture", repr(text), _EXPECTED)
        text = text.strip()
        groups = text.split("+")
        if len(groups) != len(_STRING_GROUPS):
            raise ParseError("nb201 architecture", text, f"3 node groups joined by '+': {_EXPECTED}")
        ops = [op for node, group in enumerate(groups, start=1) for op in _parse_group(group, node, text)]
        return self.from_ops(ops)

    # ---------------------------------------------------------------------------------------------- benchmark table
    def index(self, arch: Architecture) -> int:
        """The official NAS-Bench-201 ``arch_index`` of ``arch`` (0..15624), from the packaged table."""
        return _index_table()[1][self.format(arch)]

    def from_index(self, index: int) -> Architecture:
        """The architecture with official NAS-Bench-201 index ``index``."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_ARCHS:
            raise InvalidValue("nb201 index", index, f"an int in 0..{NUM_ARCHS - 1}")
        return self.parse(_index_table()[0][index])

    def isomorphism_key(self, arch: Architecture) -> str:
        """The NATS-Bench ``get_unique_str`` of ``arch``: equal for cells that compute the same function."""
        return _index_table()[2][self.index(arch)]

    # ---------------------------------------------------------------------------------------------- networks
    def _plan_terms(self, input_shape: InputShape | None,
                    num_classes: int | None) -> tuple[list[PlanStep], CostTerms]:
        """The plan and its :class:`~nasforge.nn.nb201.CostTerms`, cached per (input shape, classes)."""
        shape, classes = self.resolve_input(input_shape, num_classes)
        hit = self._terms_cache.get((shape, classes))
        if hit is None:
            strides = stride_plan(min(shape[1:]), [2, 2])
            plan = macro_plan(self.C, self.N, shape, classes, strides)
            hit = self._terms_cache[(shape, classes)] = (plan, CostTerms.of(plan))
        return hit

    def plan(self, input_shape: InputShape | None = None, num_classes: int | None = None) -> list[PlanStep]:
        """The macro skeleton for an input: strides from :func:`~nasforge.nn.spec.stride_plan` on ``min(H, W)``
        (32x32 and 28x28 keep both reductions; an 8x8 input keeps one)."""
        return list(self._plan_terms(input_shape, num_classes)[0])

    def build(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> "nn.Module":
        """The standalone :class:`~nasforge.nn.nb201.NB201Network` for ``arch`` (paper Sec. 2.1)."""
        ops = self.cell_ops(arch)
        plan = self.plan(input_shape, num_classes)
        strides = [s.stride for s in plan if s.kind == "reduce"]
        return NB201Network(ops, channels=self.C, cells_per_stage=self.N, in_channels=plan[0].in_ch,
                            num_classes=plan[-1].out_ch, reduction_strides=strides)

    def flops(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> int:
        """FLOPs at batch 1 as ``FlopCounterMode`` counts them on :meth:`build` (convs + linear, 2 per MAC)."""
        return self._plan_terms(input_shape, num_classes)[1].flops(self.cell_ops(arch))

    def params(self, arch: Architecture, input_shape: InputShape | None = None,
               num_classes: int | None = None) -> int:
        """Parameters of :meth:`build` (weights, BN affine, classifier bias; not BN running statistics)."""
        return self._plan_terms(input_shape, num_classes)[1].params(self.cell_ops(arch))

    # ---------------------------------------------------------------------------------------------- extremes
    def _extreme(self, pick: Any) -> Architecture:
        """Per edge, the allowed op of least / most FLOPs (edges are independent; ties by :data:`OPS` order)."""
        per_edge = self._plan_terms(None, None)[1].per_edge
        return self.from_ops([pick(ops, key=lambda op: per_edge[op][1]) for ops in self._sets.values()])

    def smallest(self) -> Architecture:
        """Fewest FLOPs: no conv on any edge (ties broken by op order, so all ``none`` in the full space)."""
        return self._extreme(min)

    def largest(self) -> Architecture:
        """Most FLOPs (and parameters): ``nor_conv_3x3`` on every edge of the full space."""
        return self._extreme(max)

    def cardinality(self) -> int:
        total = 1
        for ops in self._sets.values():
            total *= len(ops)
        return total

    def __repr__(self) -> str:
        restricted = sum(len(ops) < len(OPS) for ops in self._sets.values())
        return f"<NB201Space 'nb201' C={self.C} N={self.N}" + (f" restricted={restricted}>" if restricted else ">")
