"""The NAS-Bench-201 macro network and its analytic costs.

Written from the description in Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural
Architecture Search" (ICLR 2020), Sec. 2.1 and Fig. 1:

* a **cell** is a DAG of 4 nodes; node ``j`` is the sum over ``i < j`` of ``op_{j<-i}(node_i)``; node 0 is the
  cell input, node 3 its output. The six edges, in the order of the official string
  ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, are ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2`` (:data:`EDGES`).
* the five **operations** (:data:`OPS`): ``none`` (zero), ``skip_connect`` (identity), ``nor_conv_1x1`` and
  ``nor_conv_3x3`` (ReLU -> Conv(no bias) -> BN), ``avg_pool_3x3`` (3x3 average pooling, stride 1, padding 1,
  padding not counted). Every op keeps the channel count and the resolution.
* the **macro skeleton**: stem 3x3 conv (C) + BN; three stages of N cells with C, 2C and 4C channels, separated
  by two residual reduction blocks (a ResNet basic block, Sec. 2.1: ReLU-Conv3x3(stride 2)-BN, ReLU-Conv3x3-BN,
  shortcut 2x2 average pool (stride 2) + 1x1 conv); then BN + ReLU, global average pooling and a linear classifier.

Input adaptation (not in the paper, which uses 32x32 CIFAR and 16x16 ImageNet16): the stem takes any number of
input channels; the two reduction strides come from :func:`nasforge.nn.spec.stride_plan` (a reduction that would
shrink the map below 4 pixels keeps stride 1, and its shortcut is then a plain 1x1 conv). The 2x2 shortcut pool
uses ``ceil_mode`` so that odd sizes match the stride-2 3x3 conv (``ceil(n / 2)``); for even sizes it is the
plain 2x2 pool.

``none`` edges are simply skipped in the node sums (a node with only ``none`` inputs is a zero tensor); this is
numerically identical to adding ``0 * x`` and, like it, has no parameters and no counted FLOPs.

The analytic costs (:func:`nb201_params`, :func:`nb201_flops`, :class:`CostTerms`) walk the same :func:`macro_plan` as the module, so
they cannot disagree about a channel count or a feature-map size. FLOPs follow the convention of
``torch.utils.flop_counter.FlopCounterMode``: only matrix products and convolutions are counted (``aten.mm``,
``addmm``, ``bmm``, ``convolution``, attention kernels), each multiply-add as 2 FLOPs, biases ignored:
a conv costs ``2 * B * C_out * H_out * W_out * (C_in / groups) * k_h * k_w`` and a linear layer ``2 * B * in * out``.
Pooling, BatchNorm, ReLU, additions and the global mean are **not** counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from ..errors import InvalidValue

__all__ = ["OPS", "EDGES", "PlanStep", "macro_plan", "CostTerms", "nb201_params", "nb201_flops",
           "ReLUConvBN", "make_op", "NB201Cell", "ResidualReduction", "NB201Network"]

#: the NAS-Bench-201 operation set, in the benchmark's own order
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the six cell edges ``(to_node, from_node)`` in the order of the official cell string
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_CONV_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


def _half(n: int) -> int:
    return -(-n // 2)


@dataclass(frozen=True)
class PlanStep:
    """One layer of the macro skeleton: ``kind`` is ``"stem"``, ``"cell"``, ``"reduce"`` or ``"head"``;
    channels in/out, stride, and the output feature-map size ``(h, w)``."""

    kind: str
    in_ch: int
    out_ch: int
    stride: int
    h: int
    w: int


def macro_plan(channels: int, cells_per_stage: int, input_shape: tuple[int, int, int], num_classes: int,
               reduction_strides: Sequence[int] = (2, 2)) -> list[PlanStep]:
    """The NB201 skeleton (paper Sec. 2.1) as a list of steps, for a ``(C, H, W)`` input.

    stem -> N cells (C) -> reduce (2C) -> N cells (2C) -> reduce (4C) -> N cells (4C) -> head (classifier).
    """
    in_ch, h, w = input_shape
    steps = [PlanStep("stem", in_ch, channels, 1, h, w)]
    c = channels
    for stage in range(3):
        if stage > 0:
            s = int(reduction_strides[stage - 1])
            if s == 2:
                h, w = _half(h), _half(w)
            steps.append(PlanStep("reduce", c, 2 * c, s, h, w))
            c *= 2
        steps += [PlanStep("cell", c, c, 1, h, w) for _ in range(cells_per_stage)]
    steps.append(PlanStep("head", c, num_classes, 1, 1, 1))
    return steps


def _conv_costs(cin: int, cout: int, k: int, h: int, w: int, bn: bool = True) -> tuple[int, int]:
    """(params, FLOPs) of a bias-free conv (+ affine BN) producing an ``h x w`` map."""
    return cin * cout * k * k + (2 * cout if bn else 0), 2 * cout * h * w * cin * k * k


def _fixed_costs(step: PlanStep) -> tuple[int, int]:
    """(params, FLOPs at batch 1) of a plan step, not counting the cell edges."""
    if step.kind == "stem":
        return _conv_costs(step.in_ch, step.out_ch, 3, step.h, step.w)
    if step.kind == "reduce":
        parts = (_conv_costs(step.in_ch, step.out_ch, 3, step.h, step.w),  # conv_a (strided)
                 _conv_costs(step.out_ch, step.out_ch, 3, step.h, step.w),  # conv_b
                 _conv_costs(step.in_ch, step.out_ch, 1, step.h, step.w, bn=False))  # shortcut 1x1
        return sum(p for p, _ in parts), sum(f for _, f in parts)
    if step.kind == "head":  # last BN, then linear (weights + bias)
        return 2 * step.in_ch + step.in_ch * step.out_ch + step.out_ch, 2 * step.in_ch * step.out_ch
    return 0, 0


@dataclass(frozen=True)
class CostTerms:
    """Costs of a network as ``fixed + sum over the six edges of per_edge[op]`` (params, FLOPs at batch 1).

    The cell is repeated in every stage, so an op on one edge costs the same wherever the edge is; ``per_edge[op]``
    sums that op's cost over all ``3N`` cells. Only the convs have parameters or counted FLOPs.
    """

    fixed: tuple[int, int]
    per_edge: Mapping[str, tuple[int, int]]

    @classmethod
    def of(cls, plan: Sequence[PlanStep]) -> "CostTerms":
        fixed = [_fixed_costs(s) for s in plan]
        cells = [s for s in plan if s.kind == "cell"]
        per_edge = {op: (0, 0) for op in OPS}
        for op, k in _CONV_KERNEL.items():
            parts = [_conv_costs(s.in_ch, s.in_ch, k, s.h, s.w) for s in cells]
            per_edge[op] = (sum(p for p, _ in parts), sum(f for _, f in parts))
        return cls((sum(p for p, _ in fixed), sum(f for _, f in fixed)), per_edge)

    def params(self, ops: Sequence[str]) -> int:
        """Parameters of the network whose cell has edge ops ``ops``."""
        return self.fixed[0] + sum(self.per_edge[op][0] for op in ops)

    def flops(self, ops: Sequence[str]) -> int:
        """FLOPs (batch 1, ``FlopCounterMode`` convention) of the network whose cell has edge ops ``ops``."""
        return self.fixed[1] + sum(self.per_edge[op][1] for op in ops)


def nb201_params(ops: Sequence[str], plan: Sequence[PlanStep]) -> int:
    """Number of parameters (trainable tensors; BN running statistics are buffers) of :class:`NB201Network`."""
    return CostTerms.of(plan).params(ops)


def nb201_flops(ops: Sequence[str], plan: Sequence[PlanStep]) -> int:
    """FLOPs of one forward pass at batch size 1, as ``FlopCounterMode`` counts them (see the module docstring)."""
    return CostTerms.of(plan).flops(ops)


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k, stride, same padding, no bias) -> BatchNorm (the NB201 ``nor_conv`` op, Sec. 2.1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_ch))


def make_op(name: str, channels: int) -> nn.Module | None:
    """The module of NB201 operation ``name`` on ``channels`` channels (``None`` for ``none``)."""
    if name in _CONV_KERNEL:
        return ReLUConvBN(channels, channels, _CONV_KERNEL[name])
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity()
    if name == "none":
        return None
    raise InvalidValue("NB201 op", name, OPS)


class NB201Cell(nn.Module):
    """One NB201 cell (paper Fig. 1): 4 nodes, 6 edges, node sums; channels and resolution unchanged."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        if len(ops) != len(EDGES):
            raise InvalidValue("NB201 cell ops", list(ops), f"exactly {len(EDGES)} ops")
        self.ops = tuple(ops)
        modules = {f"e{i}": make_op(op, channels) for i, op in enumerate(ops)}
        self.edges = nn.ModuleDict({k: m for k, m in modules.items() if m is not None})
        #: for each node 1..3, the (edge key, source node) pairs that contribute to it
        self._inputs = [[(f"e{i}", src) for i, (dst, src) in enumerate(EDGES) if dst == node and f"e{i}" in self.edges]
                        for node in (1, 2, 3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for inputs in self._inputs:
            if inputs:
                out = self.edges[inputs[0][0]](nodes[inputs[0][1]])
                for key, src in inputs[1:]:
                    out = out + self.edges[key](nodes[src])
            else:
                out = torch.zeros_like(x)
            nodes.append(out)
        return nodes[3]


class ResidualReduction(nn.Module):
    """The NB201 reduction block: a ResNet basic block (He et al. 2016) with stride ``stride``.

    ``ReLUConvBN(3x3, stride) -> ReLUConvBN(3x3)`` plus a shortcut ``AvgPool(2x2, stride 2) -> Conv 1x1`` (stride 2)
    or a plain ``Conv 1x1`` (stride 1, used only when the input is too small for another reduction).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(in_ch, out_ch, 3, stride)
        self.conv_b = ReLUConvBN(out_ch, out_ch, 3, 1)
        conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True), conv) if stride == 2 else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 network for one cell (paper Sec. 2.1): the same cell is stacked in all three stages.

    ``ops`` are the six edge operations in :data:`EDGES` order. The defaults (C=16, N=5, 3 input channels,
    10 classes, strides (2, 2)) are the benchmark's CIFAR-10 network.
    """

    def __init__(self, ops: Sequence[str], *, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3,
                 num_classes: int = 10, reduction_strides: Sequence[int] = (2, 2)) -> None:
        super().__init__()
        bad = [op for op in ops if op not in OPS]
        if bad or len(ops) != len(EDGES):
            raise InvalidValue("NB201 cell ops", list(ops), f"{len(EDGES)} of {', '.join(OPS)}")
        if len(reduction_strides) != 2 or any(s not in (1, 2) for s in reduction_strides):
            raise InvalidValue("NB201 reduction_strides", list(reduction_strides), "two of 1, 2")
        self.ops = tuple(ops)
        layers: list[nn.Module] = []
        plan = macro_plan(channels, cells_per_stage, (in_channels, 1, 1), num_classes, reduction_strides)
        for step in plan:
            if step.kind == "stem":
                layers.append(nn.Sequential(nn.Conv2d(step.in_ch, step.out_ch, 3, padding=1, bias=False),
                                            nn.BatchNorm2d(step.out_ch)))
            elif step.kind == "cell":
                layers.append(NB201Cell(self.ops, step.in_ch))
            elif step.kind == "reduce":
                layers.append(ResidualReduction(step.in_ch, step.out_ch, step.stride))
            else:
                self.head_norm = nn.Sequential(nn.BatchNorm2d(step.in_ch), nn.ReLU(inplace=True))
                self.classifier = nn.Linear(step.in_ch, step.out_ch)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_norm(self.features(x))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
