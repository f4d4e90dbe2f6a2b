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
from ..nn.nb201 import EDGES, OPS, ResidualReduction, make_op

__all__ = ["MixedOp", "masked_softmax", "NB201MixedSupernet", "derive_nb201", "mixed_supernet_for"]


def masked_softmax(alpha: Tensor, mask: Tensor) -> Tensor:
    """Row-wise softmax of ``alpha`` over the entries where ``mask`` is true (others exactly 0)."""
    return F.softmax(alpha.masked_fill(~mask, float("-inf")), dim=-1)


class MixedOp(nn.Module):
    """One edge's candidate operations; ``forward(x, weights)`` is their weighted sum (lnas.txt Eq. 4).

    ``ops``: one module per candidate, ``None`` for the zero operation ``none`` (contributes nothing). Candidates
    whose weight is exactly 0 (pruned by the path mask) are skipped, so a pruned path costs no computation."""

    def __init__(self, ops: Sequence[nn.Module | None]) -> None:
        super().__init__()
        self.zero = [op is None for op in ops]
        self.ops = nn.ModuleList([nn.Identity() if op is None else op for op in ops])

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        out = torch.zeros_like(x)
        active = (weights != 0).tolist()
        for k, op in enumerate(self.ops):
            if active[k] and not self.zero[k]:
                out = out + weights[k] * op(x)
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


def mixed_supernet_for(space: object, input_shape: tuple[int, int, int], num_classes: int, *,
                       generator: torch.Generator) -> nn.Module:
    """The mixed-operation supernet of ``space`` (``nb201``; a one-line error for other spaces)."""
    if getattr(space, "name", None) == "nb201":
        return NB201MixedSupernet(space, input_shape, num_classes, generator=generator)
    raise InvalidValue("space", getattr(space, "name", space), "nb201 (the spaces with a mixed-op supernet)")
