"""The DARTS convolutional cell network (Liu et al. 2019, Sec. 2.1 and 3.1; its CIFAR-10 evaluation network),
written from the paper's description; lnas.txt searches the same operation set (Sec. 5.1).

* **operations** (:data:`OPS`): ``sep_conv_3x3`` / ``sep_conv_5x5`` (ReLU - depthwise k x k - pointwise - BN,
  applied twice), ``dil_conv_3x3`` / ``dil_conv_5x5`` (ReLU - depthwise k x k dilation 2 - pointwise - BN),
  ``max_pool_3x3`` / ``avg_pool_3x3`` (padding 1; the average does not count padding), ``skip_connect`` (identity,
  or a factorized reduction when the edge has stride 2) and ``none`` (zero; only in the search, never in a derived
  cell). Edges from the two cell inputs of a reduction cell have stride 2.
* **cell**: inputs ``c_{k-2}`` and ``c_{k-1}`` are brought to ``C`` channels by ReLU-1x1 conv-BN (a factorized
  reduction for ``c_{k-2}`` after a reduction cell); each of 4 intermediate nodes sums two operations applied to
  earlier states (inputs 0, 1 are the cell inputs, 2.. the intermediate nodes); the output concatenates the 4
  intermediate nodes (4C channels).
* **network**: stem 3x3 conv (``3C`` channels) + BN; ``layers`` cells with reduction cells (channels doubled) at
  1/3 and 2/3 of the depth; global average pooling and a linear classifier. ``auxiliary``: an auxiliary head on
  the output of the second reduction's stage end (ReLU - average pool to 2x2 - 1x1 conv 128 - BN - ReLU - 2x2 conv
  768 - BN - ReLU - linear; DARTS pools its 8x8 CIFAR map with a 5x5 window of stride 3, adaptive 2x2 pooling here
  works for any input); its logits are kept in ``last_aux`` while training, weight them into the loss with
  :func:`auxiliary_loss`. ``drop_path_prob``: each non-identity operation's output is zeroed per example with this
  probability while training (and scaled by ``1/(1-p)``); masks come from ``drop_generator`` when set.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidValue

__all__ = ["OPS", "PRIMITIVES", "CellGenotype", "make_darts_op", "DartsCell", "DartsNetwork", "auxiliary_loss",
           "reduction_layers", "FactorizedReduce"]

#: DARTS' candidate operations in its own order; ``none`` only in the search
PRIMITIVES: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                               "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
#: the operations of a derived cell
OPS: tuple[str, ...] = PRIMITIVES[1:]
#: one cell: 4 nodes x 2 ``(op, input)`` pairs
CellGenotype = Sequence[tuple[str, int]]


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int) -> None:
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out))


class _DilConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, k, stride, padding, dilation=dilation, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class _SepConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int) -> None:
        super().__init__(_DilConv(c_in, c_in, k, stride, padding, 1), _DilConv(c_in, c_out, k, 1, padding, 1))


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two 1x1 convs of stride 2 on the map and on the map
    shifted by one pixel, concatenated (``c_out`` even)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise InvalidValue("channels", c_out, "an even number (factorized reduction)")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        a = self.conv_1(x)
        b = self.conv_2(F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)))
        return self.bn(torch.cat([a, b], dim=1))


def make_darts_op(name: str, channels: int, stride: int) -> nn.Module | None:
    """The module of operation ``name`` (``None`` for ``none``) on ``channels`` channels with ``stride``."""
    if name == "none":
        return None
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return nn.MaxPool2d(3, stride, 1) if name[0] == "m" else nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return _SepConv(channels, channels, k, stride, k // 2)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(name[-1])
        return _DilConv(channels, channels, k, stride, k - 1, 2)
    raise InvalidValue("DARTS op", name, PRIMITIVES)


def _drop_path(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    keep = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(1.0 - p, generator=generator)
    return x / (1.0 - p) * keep


class DartsCell(nn.Module):
    """One derived DARTS cell (module docstring); ``genotype``: 4 nodes x 2 ``(op, input)`` pairs."""

    def __init__(self, genotype: CellGenotype, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else _ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = _ReLUConvBN(c_p, c, 1, 1, 0)
        self.inputs = [int(i) for _, i in genotype]
        self.ops = nn.ModuleList([make_darts_op(op, c, 2 if reduction and i < 2 else 1) for op, i in genotype])
        self.multiplier = len(genotype) // 2

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.multiplier):
            total = None
            for j in (2 * node, 2 * node + 1):
                h = self.ops[j](states[self.inputs[j]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[j], nn.Identity):
                    h = _drop_path(h, drop_prob, generator)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat(states[2:], dim=1)


class _AuxiliaryHead(nn.Module):
    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(2), nn.Conv2d(c, 128, 1, bias=False),
                                      nn.BatchNorm2d(128), nn.ReLU(inplace=False), nn.Conv2d(128, 768, 2, bias=False),
                                      nn.BatchNorm2d(768), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells: at 1/3 and 2/3 of the depth (DARTS)."""
    return layers // 3, 2 * layers // 3


class DartsNetwork(nn.Module):
    """The DARTS network of a genotype (module docstring): ``normal`` / ``reduce`` cells, ``C`` initial channels,
    ``layers`` cells, an optional auxiliary head and drop-path."""

    def __init__(self, normal: CellGenotype, reduce: CellGenotype, *, C: int = 36, layers: int = 20,
                 in_channels: int = 3, num_classes: int = 10, auxiliary: bool = False,
                 drop_path_prob: float = 0.0) -> None:
        super().__init__()
        if layers < 3:
            raise InvalidValue("layers", layers, ">= 3 (two reduction cells and a normal one)")
        self.drop_path_prob, self.drop_generator = float(drop_path_prob), None
        self.last_aux: Tensor | None = None
        c_curr = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reductions, reduction_prev = reduction_layers(layers), False
        self.aux_index = reductions[1]
        self.auxiliary_head: nn.Module | None = None
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cell = DartsCell(reduce if reduction else normal, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if auxiliary and i == self.aux_index:
                self.auxiliary_head = _AuxiliaryHead(c_p, num_classes)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        self.last_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob, self.drop_generator)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                self.last_aux = self.auxiliary_head(s1)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))


def auxiliary_loss(model: DartsNetwork, weight: float = 0.4) -> Callable[[Tensor, Tensor], Tensor]:
    """A ``loss_fn(logits, y)`` for :func:`nasforge.train.train`: cross-entropy plus ``weight`` (DARTS 0.4) times
    the auxiliary head's cross-entropy when the last forward produced auxiliary logits."""
    def loss_fn(logits: Tensor, y: Tensor) -> Tensor:
        loss = F.cross_entropy(logits, y)
        if model.last_aux is not None:
            loss = loss + weight * F.cross_entropy(model.last_aux, y)
        return loss
    return loss_fn
