"""Continuous relaxation of a cell space: mixed operations weighted by architecture parameters alpha.

DARTS (Liu et al. 2019; restated in lnas.txt Eq. 4): every cell edge ``(i, j)`` computes
``o_hat(x) = sum_o softmax(alpha^(i,j))_o * o(x)`` over the candidate operations. LNAS variant 2 (lnas.txt Eq. 7,
Algorithm 2) prunes *paths*: a boolean mask ``M_alpha`` of the same shape as alpha removes candidate operations
from an edge. A masked operation gets the logit ``-inf`` (softmax weight exactly 0, no gradient) and is not run.

:class:`NB201MixedSupernet` is the relaxation of the ``nb201`` space: ONE alpha of shape ``(6 edges, 5 ops)``
shared by every cell of the NAS-Bench-201 macro skeleton (Dong & Yang 2020, Sec. 2.1; the skeleton, the stride
plan and the ops are those of :mod:`nasforge.nn.nb201`), so a derived cell is judged by the NB201 table.
:func:`derive_nb201` discretises it (argmax per edge over the unmasked operations, ``none`` included, as the
NB201 paper's DARTS baseline does).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arch import Architecture
from ..errors import InvalidValue
from ..nn.darts import PRIMITIVES, FactorizedReduce, make_darts_op, reduction_layers
from ..nn.nb201 import EDGES, OPS, ResidualReduction, make_op

__all__ = ["MixedOp", "masked_softmax", "NB201MixedSupernet", "derive_nb201", "DartsMixedSupernet", "derive_darts",
           "mixed_supernet_for"]


def masked_softmax(alpha: Tensor, mask: Tensor) -> Tensor:
    """Row-wise softmax of ``alpha`` over the entries where ``mask`` is true (others exactly 0)."""
    return F.softmax(alpha.masked_fill(~mask, float("-inf")), dim=-1)


class MixedOp(nn.Module):
    """One edge's candidate operations; ``forward(x, weights)`` is their weighted sum (lnas.txt Eq. 4).

    ``ops``: one module per candidate, ``None`` for the zero operation ``none`` (contributes nothing). Candidates
    whose weight is exactly 0 (pruned by the path mask) are skipped, so a pruned path costs no computation.
    ``stride``: the edge's stride (the shape of the zero output when no operation contributes)."""

    def __init__(self, ops: Sequence[nn.Module | None], stride: int = 1) -> None:
        super().__init__()
        self.zero = [op is None for op in ops]
        self.ops = nn.ModuleList([nn.Identity() if op is None else op for op in ops])
        self.stride = stride

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        out = None
        active = (weights != 0).tolist()
        for k, op in enumerate(self.ops):
            if active[k] and not self.zero[k]:
                y = weights[k] * op(x)
                out = y if out is None else out + y
        if out is None:
            return torch.zeros_like(x[:, :, ::self.stride, ::self.stride])
        return out


class _MixedCell(nn.Module):
    """An NB201 cell whose six edges are :class:`MixedOp` over :data:`~nasforge.nn.nb201.OPS`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList([MixedOp([make_op(op, channels) for op in OPS]) for _ in EDGES])

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            out = torch.zeros_like(x)
            for e, (dst, src) in enumerate(EDGES):
                if dst == node:
                    out = out + self.edges[e](nodes[src], weights[e])
            nodes.append(out)
        return nodes[3]


class NB201MixedSupernet(nn.Module):
    """The NB201 network with every cell edge a mixed operation and one shared ``alpha`` (6 x 5).

    ``space``: an :class:`~nasforge.spaces.nb201.NB201Space` (its ``C``, ``N`` and stride plan for
    ``input_shape``). ``alpha`` starts at ``1e-3 * N(0, 1)`` (DARTS) from ``generator``; the weights use torch's
    default initialisation drawn under that generator's seed. ``alpha_mask`` (a buffer, all true) is the path mask
    of LNAS variant 2. :meth:`arch_parameters` / :meth:`weight_parameters` split the two optimised sets.
    """

    def __init__(self, space: object, input_shape: tuple[int, int, int], num_classes: int, *,
                 generator: torch.Generator) -> None:
        super().__init__()
        if getattr(space, "name", None) != "nb201":
            raise InvalidValue("space", getattr(space, "name", space), "nb201 (the mixed-op supernet of this module)")
        self.space, self.input_shape, self.num_classes = space, tuple(input_shape), int(num_classes)
        plan = space.plan(tuple(input_shape), num_classes)  # type: ignore[attr-defined]
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            for step in plan:
                if step.kind == "stem":
                    layers.append(nn.Sequential(nn.Conv2d(step.in_ch, step.out_ch, 3, padding=1, bias=False),
                                                nn.BatchNorm2d(step.out_ch)))
                elif step.kind == "cell":
                    layers.append(_MixedCell(step.in_ch))
                elif step.kind == "reduce":
                    layers.append(ResidualReduction(step.in_ch, step.out_ch, step.stride))
                else:
                    self.head_norm = nn.Sequential(nn.BatchNorm2d(step.in_ch), nn.ReLU(inplace=True))
                    self.classifier = nn.Linear(step.in_ch, step.out_ch)
            self.layers = nn.ModuleList(layers)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS), generator=generator))
        self.register_buffer("alpha_mask", torch.ones(len(EDGES), len(OPS), dtype=torch.bool))

    @property
    def ops(self) -> tuple[str, ...]:
        """Candidate operation names, the columns of ``alpha``."""
        return OPS

    @property
    def edge_names(self) -> list[str]:
        """Edge labels, the rows of ``alpha`` (``e0<-..``: gene label and ``to<-from``)."""
        return [f"e{i} ({dst}<-{src})" for i, (dst, src) in enumerate(EDGES)]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def probabilities(self) -> Tensor:
        """``softmax(alpha)`` per edge over the unmasked operations (detached)."""
        return masked_softmax(self.alpha.detach(), self.alpha_mask)

    def forward(self, x: Tensor) -> Tensor:
        weights = masked_softmax(self.alpha, self.alpha_mask)
        for layer in self.layers:
            x = layer(x, weights) if isinstance(layer, _MixedCell) else layer(x)
        x = self.head_norm(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def derive(self) -> Architecture:
        """The discrete cell (:func:`derive_nb201`)."""
        return derive_nb201(self.space, self.alpha.detach(), self.alpha_mask)


def derive_nb201(space: object, alpha: Tensor, mask: Tensor | None = None) -> Architecture:
    """Per edge the unmasked operation of largest alpha (``none`` included; ties: first in :data:`OPS`)."""
    if tuple(alpha.shape) != (len(EDGES), len(OPS)):
        raise InvalidValue("alpha shape", list(alpha.shape), [len(EDGES), len(OPS)])
    logits = alpha if mask is None else alpha.masked_fill(~mask, float("-inf"))
    return space.from_ops([OPS[int(i)] for i in logits.argmax(dim=1)])  # type: ignore[attr-defined]


class _DartsMixedCell(nn.Module):
    """A DARTS search cell: every edge into node ``n`` (from the 2 inputs and the ``n`` earlier nodes) is a
    :class:`MixedOp` over all 8 primitives (``none`` included); stride 2 from a reduction cell's inputs."""

    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        relu_conv_bn = lambda a, b: nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(a, b, 1, bias=False),  # noqa
                                                  nn.BatchNorm2d(b))
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else relu_conv_bn(c_pp, c)
        self.preprocess1 = relu_conv_bn(c_p, c)
        self.edges = nn.ModuleList()
        for node in range(DARTS_NODES):
            for i in range(node + 2):
                stride = 2 if reduction and i < 2 else 1
                self.edges.append(MixedOp([make_darts_op(op, c, stride) for op in PRIMITIVES], stride))

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor) -> Tensor:
        states, k = [self.preprocess0(s0), self.preprocess1(s1)], 0
        for _ in range(DARTS_NODES):
            out = None
            for j, h in enumerate(states):
                y = self.edges[k + j](h, weights[k + j])
                out = y if out is None else out + y
            k += len(states)
            states.append(out)
        return torch.cat(states[2:], dim=1)


#: intermediate nodes of a DARTS cell and its edges (2 + 3 + 4 + 5)
DARTS_NODES = 4
DARTS_EDGES = sum(n + 2 for n in range(DARTS_NODES))


class DartsMixedSupernet(nn.Module):
    """The DARTS search network over the ``darts`` space (``C``, ``layers`` from the space; DARTS searched with
    C=16, 8 cells): stem, normal and reduction search cells (reductions at 1/3 and 2/3), classifier. ``alpha`` is
    ONE parameter of shape ``(28, 8)``: rows 0-13 the normal cell's edges, 14-27 the reduction cell's, columns
    :data:`~nasforge.nn.darts.PRIMITIVES`; ``alpha_mask`` the path mask (LNAS variant 2). :meth:`derive`: per
    node the two incoming edges of largest non-``none`` weight, each with its best non-``none`` operation."""

    def __init__(self, space: object, input_shape: tuple[int, int, int], num_classes: int, *,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.space, self.input_shape, self.num_classes = space, tuple(input_shape), int(num_classes)
        C, layers = space.C, space.layers  # type: ignore[attr-defined]
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            c_curr = 3 * C
            self.stem = nn.Sequential(nn.Conv2d(input_shape[0], c_curr, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(c_curr))
            c_pp, c_p, c_curr, reduction_prev = c_curr, c_curr, C, False
            self.cells = nn.ModuleList()
            for i in range(layers):
                reduction = i in reduction_layers(layers)
                if reduction:
                    c_curr *= 2
                self.cells.append(_DartsMixedCell(c_pp, c_p, c_curr, reduction, reduction_prev))
                reduction_prev, c_pp, c_p = reduction, c_p, DARTS_NODES * c_curr
            self.classifier = nn.Linear(c_p, num_classes)
        self.alpha = nn.Parameter(1e-3 * torch.randn(2 * DARTS_EDGES, len(PRIMITIVES), generator=generator))
        self.register_buffer("alpha_mask", torch.ones(2 * DARTS_EDGES, len(PRIMITIVES), dtype=torch.bool))

    @property
    def ops(self) -> tuple[str, ...]:
        return PRIMITIVES

    @property
    def edge_names(self) -> list[str]:
        return [f"{cell} {i}->{node + 2}" for cell in ("normal", "reduce") for node in range(DARTS_NODES)
                for i in range(node + 2)]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def probabilities(self) -> Tensor:
        return masked_softmax(self.alpha.detach(), self.alpha_mask)

    def forward(self, x: Tensor) -> Tensor:
        weights = masked_softmax(self.alpha, self.alpha_mask)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            w = weights[DARTS_EDGES:] if cell.reduction else weights[:DARTS_EDGES]
            s0, s1 = s1, cell(s0, s1, w)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))

    def derive(self) -> Architecture:
        return derive_darts(self.space, self.probabilities())


def derive_darts(space: object, probs: Tensor) -> Architecture:
    """The DARTS genotype of softmaxed (masked) alphas ``probs`` (28 x 8): per node, the two incoming edges whose
    best non-``none`` weight is largest (ties: lower input), each with that operation (DARTS Sec. 2.4)."""
    none = PRIMITIVES.index("none")
    cells = []
    for half in (probs[:DARTS_EDGES], probs[DARTS_EDGES:]):
        pairs, k = [], 0
        for node in range(DARTS_NODES):
            scored = []
            for i in range(node + 2):
                row = half[k + i].clone()
                row[none] = -1.0
                best = int(row.argmax())
                if row[best] > 0:
                    scored.append((-float(row[best]), i, PRIMITIVES[best]))
            if len(scored) < 2:
                raise InvalidValue("alpha_mask", f"node {node + 2}", "at least two incoming edges with an unmasked "
                                   "operation other than none (lower the sparsity)")
            top = sorted(sorted(scored)[:2], key=lambda t: t[1])
            pairs += [(op, i) for _, i, op in top]
            k += node + 2
        cells.append(pairs)
    return space.from_cells(*cells)  # type: ignore[attr-defined]


def mixed_supernet_for(space: object, input_shape: tuple[int, int, int], num_classes: int, *,
                       generator: torch.Generator) -> nn.Module:
    """The mixed-operation supernet of ``space`` (``nb201`` or ``darts``; a one-line error for other spaces)."""
    name = getattr(space, "name", None)
    if name == "nb201":
        return NB201MixedSupernet(space, input_shape, num_classes, generator=generator)
    if name == "darts":
        return DartsMixedSupernet(space, input_shape, num_classes, generator=generator)
    raise InvalidValue("space", name if name is not None else space, "nb201 or darts (the spaces with a mixed-op "
                                                                      "supernet)")
