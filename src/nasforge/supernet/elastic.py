"""Elastic ops: run the plain ``nasforge.nn`` modules of a supernet on a slice of their weights.

The weight-sharing rules of BigNAS (Yu et al. 2020, Sec. 4.1; DESIGN.md "Elastic math"), the same for every
MBConv supernet:

* channels: a child keeps the **lower-index** channels of every weight (the first ``out`` filters and the first
  ``in`` input channels; slimmable networks' rule, which BigNAS follows);
* kernels: a ``k x k`` depthwise kernel is the **centre** of the largest ``K x K`` one ("a 3x3 depthwise kernel is
  defined to be the center of a 5x5 depthwise kernel");
* BatchNorm: the affine parameters *and* the running statistics are sliced to the active channels, and
  :func:`batch_norm` runs ``F.batch_norm`` on those slices, which are views: in training mode the running
  statistics of the active channels update in place, with ``nn.BatchNorm2d``'s momentum rules (``momentum=None``
  is the cumulative average that :func:`nasforge.train.calibrate_bn` uses).

One function, :func:`crop_index`, decides which elements a child holds; the supernet's forward pass and its
weight extraction both index with it, so the two cannot disagree. The ``*Plan`` values hold precomputed
indices for one architecture, so a forward pass only indexes (views, no copies of channels in Python loops).
An index that selects a whole tensor is stored as ``None`` (a *full-tensor plan*: :func:`plan_index`), and the
forward pass then uses the parameter itself: no slice view on the way forward and no zero-filled full-size
gradient (``slice_backward``) on the way back, which is most of the largest child's and of full-width layers'
slicing overhead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InvalidValue
from ..nn.layers import ConvBNAct, SqueezeExcite

__all__ = ["Index", "crop_index", "crop", "plan_index", "take", "batch_norm", "ConvPlan", "conv_plan", "conv_bn_act", "SEPlan",
           "se_plan", "squeeze_excite", "LinearPlan", "linear_plan", "linear"]

#: A tuple of slices selecting a child's part of one supernet tensor.
Index = tuple[slice, ...]


def crop_index(full: Sequence[int], shape: Sequence[int], what: str = "weight") -> Index:
    """The index of a ``shape`` child tensor inside a ``full`` supernet tensor (BigNAS Sec. 4.1).

    Dimensions 0 and 1 (output / input channels, or features) keep their lower-index entries; dimensions 2 and 3
    (a kernel) keep the centre. Raises :class:`InvalidValue` naming ``what`` when the child does not nest (a
    larger size, another rank, or a kernel of another parity, which has no centre).
    """
    full, shape = tuple(full), tuple(shape)
    if len(full) != len(shape):
        raise InvalidValue(what, shape, f"a tensor of rank {len(full)} nesting in the supernet's {full}")
    index = []
    for dim, (big, small) in enumerate(zip(full, shape)):
        if small > big or (dim >= 2 and (big - small) % 2):
            raise InvalidValue(what, shape, f"a shape nesting in the supernet's {full} (lower-index channels, "
                                            "centred odd kernels)")
        start = (big - small) // 2 if dim >= 2 else 0
        index.append(slice(start, start + small))
    return tuple(index)


def crop(tensor: torch.Tensor, shape: Sequence[int], what: str = "weight") -> torch.Tensor:
    """The child's part of ``tensor`` (a view): ``tensor[crop_index(tensor.shape, shape)]``."""
    return tensor[crop_index(tensor.shape, shape, what)]


def plan_index(full: Sequence[int], shape: Sequence[int], what: str = "weight") -> Index | None:
    """:func:`crop_index`, or ``None`` when the child holds the whole tensor (``shape == full``)."""
    index = crop_index(full, shape, what)
    return None if tuple(shape) == tuple(full) else index


def take(tensor: torch.Tensor, index: Index | None) -> torch.Tensor:
    """``tensor[index]``, or ``tensor`` itself for a full-tensor plan (``index is None``)."""
    return tensor if index is None else tensor[index]


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn`` applied to the ``x.shape[1]`` lower-index channels, exactly as ``nn.BatchNorm2d.forward`` would on a
    layer of that width: batch statistics in training mode (updating the sliced running statistics in place with
    ``bn.momentum``, or the cumulative average when it is ``None``), running statistics in eval mode.

    Momentum exactly 0 in training mode (:func:`nasforge.supernet.train.frozen_bn_stats`, BigNAS's "statistics
    are not accumulated") leaves the running statistics as they are, so they are not passed at all (no update
    computed) and ``num_batches_tracked`` is not counted."""
    c = x.shape[1]
    factor = 0.0 if bn.momentum is None else bn.momentum
    tracking = bn.track_running_stats and bn.running_mean is not None and not (bn.training and bn.momentum == 0.0)
    if bn.training and tracking and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    cut = None if c == bn.num_features else slice(0, c)  # all channels: the tensors themselves (no slice views)

    def part(t: torch.Tensor | None) -> torch.Tensor | None:
        return t if t is None or cut is None else t[cut]

    mean, var = (part(bn.running_mean), part(bn.running_var)) if tracking else (None, None)
    weight, bias = part(bn.weight), part(bn.bias)
    return F.batch_norm(x, mean, var, weight, bias, bn.training or not tracking, factor, bn.eps)


@dataclass(frozen=True)
class ConvPlan:
    """One :class:`~nasforge.nn.layers.ConvBNAct` of a child: the weight index (``None``: the whole weight),
    stride, padding, groups and activation (``act`` is a stateless module, ``nn.Identity`` for the projection)."""

    weight: Index | None
    stride: int
    padding: int
    groups: int
    act: nn.Module


def conv_plan(unit: ConvBNAct, out_ch: int, in_ch: int, kernel: int, stride: int, act: nn.Module,
              depthwise: bool = False, what: str = "conv") -> ConvPlan:
    """The :class:`ConvPlan` of a ``kernel x kernel`` conv ``in_ch -> out_ch`` (``depthwise``: one filter per
    channel, ``out_ch == in_ch``) inside the supernet unit ``unit``; :class:`InvalidValue` if it does not nest."""
    if depthwise and unit.conv.groups != unit.conv.out_channels:
        raise InvalidValue(what, "depthwise", "a depthwise conv at the same place in the supernet")
    shape = (out_ch, 1 if depthwise else in_ch, kernel, kernel)
    return ConvPlan(plan_index(unit.conv.weight.shape, shape, what), stride, kernel // 2,
                    out_ch if depthwise else 1, act)


def conv_bn_act(unit: ConvBNAct, x: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """``act(BN(conv(x)))`` of ``unit`` on the sliced weights of ``plan`` (the elastic ``ConvBNAct``)."""
    y = F.conv2d(x, take(unit.conv.weight, plan.weight), None, plan.stride, plan.padding, 1, plan.groups)
    return plan.act(batch_norm(unit.bn, y))


@dataclass(frozen=True)
class SEPlan:
    """One squeeze-and-excite of a child: indices of the two convs' weights and biases (``None``: whole), gate."""

    reduce_w: Index | None
    reduce_b: Index | None
    expand_w: Index | None
    expand_b: Index | None
    gate: nn.Module


def se_plan(se: SqueezeExcite, channels: int, reduced: int, gate: nn.Module) -> SEPlan:
    """The :class:`SEPlan` of an SE on ``channels`` with ``reduced`` hidden units inside the supernet's ``se``."""
    return SEPlan(plan_index(se.conv_reduce.weight.shape, (reduced, channels, 1, 1), "se_ch"),
                  plan_index(se.conv_reduce.bias.shape, (reduced,), "se_ch"),
                  plan_index(se.conv_expand.weight.shape, (channels, reduced, 1, 1), "se_ch"),
                  plan_index(se.conv_expand.bias.shape, (channels,), "se_ch"), gate)


def squeeze_excite(se: SqueezeExcite, x: torch.Tensor, plan: SEPlan) -> torch.Tensor:
    """The elastic :class:`~nasforge.nn.layers.SqueezeExcite` (Hu et al. 2018, Sec. 3) on ``plan``'s slices."""
    s = x.mean((2, 3), keepdim=True)
    s = se.act(F.conv2d(s, take(se.conv_reduce.weight, plan.reduce_w), take(se.conv_reduce.bias, plan.reduce_b)))
    return x * plan.gate(F.conv2d(s, take(se.conv_expand.weight, plan.expand_w),
                                  take(se.conv_expand.bias, plan.expand_b)))


@dataclass(frozen=True)
class LinearPlan:
    """One ``nn.Linear`` of a child: weight and bias indices (``None``: the whole tensor)."""

    weight: Index | None
    bias: Index | None


def linear_plan(layer: nn.Linear, out_features: int, in_features: int, what: str = "linear") -> LinearPlan:
    """The :class:`LinearPlan` of a ``in_features -> out_features`` linear inside the supernet's ``layer``."""
    return LinearPlan(plan_index(layer.weight.shape, (out_features, in_features), what),
                      plan_index(layer.bias.shape, (out_features,), what))


def linear(layer: nn.Linear, x: torch.Tensor, plan: LinearPlan) -> torch.Tensor:
    """The elastic ``nn.Linear``: lower-index outputs and inputs."""
    return F.linear(x, take(layer.weight, plan.weight), take(layer.bias, plan.bias))
