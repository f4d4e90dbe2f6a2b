"""Analytic FLOPs and parameter counts of an MBConv network, from its :class:`~nasforge.nn.spec.NetworkSpec` alone.

The numbers equal, exactly, what :class:`torch.utils.flop_counter.FlopCounterMode` counts on the network that
:func:`nasforge.nn.mbconv.build_network` builds (batch size 1, eval mode), and
``sum(p.numel() for p in module.parameters())``. ``FlopCounterMode``'s convention, checked on torch 2.x:

* ``aten.convolution``: ``2 * Cout * Hout * Wout * (Cin / groups) * k * k`` — one multiply-add is 2 FLOPs;
  a conv bias is **not** counted. This covers the SE convs too, which run on a 1x1 map.
* ``aten.addmm`` / ``aten.mm`` (``nn.Linear``): ``2 * in * out``; the bias is not counted.
* nothing for BatchNorm, activations, gates, pooling / ``mean``, the SE multiply, residual adds, dropout.

Papers usually report multiply-adds ("FLOPs" in MobileNetV3 and MENAS Table 2), i.e. half of :func:`spec_flops`.

Spatial sizes: every conv pads ``k // 2`` with an odd ``k``, so a conv of stride ``s`` maps ``H`` to
``floor((H + 2 * (k // 2) - k) / s) + 1 = ceil(H / s)``.

Parameters: conv weights ``Cout * Cin / groups * k * k`` (no bias, except the two SE convs, which have one),
BatchNorm weight and bias ``2 * C`` (running statistics are buffers, not parameters), Linear ``in * out + out``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .mbconv import check_network_spec
from .spec import HeadSpec, MBConvSpec, NetworkSpec

__all__ = ["Cost", "conv_out", "block_cost", "head_cost", "spec_costs", "spec_flops", "spec_params"]


@dataclass(frozen=True)
class Cost:
    """FLOPs (``FlopCounterMode`` convention, batch 1) and parameter elements of one part of a network."""

    flops: int
    params: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.params + other.params)


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output length of a conv with padding ``kernel // 2`` along one spatial axis."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _conv_bn(in_ch: int, out_ch: int, kernel: int, groups: int, out_hw: tuple[int, int]) -> Cost:
    """A bias-free conv followed by BatchNorm (the ``ConvBNAct`` unit)."""
    per_pixel = out_ch * (in_ch // groups) * kernel * kernel
    return Cost(2 * per_pixel * out_hw[0] * out_hw[1], per_pixel + 2 * out_ch)


def block_cost(spec: MBConvSpec, in_hw: tuple[int, int]) -> tuple[Cost, tuple[int, int]]:
    """Cost of one inverted residual on an ``in_hw`` input, and its output ``(H, W)``.

    Expansion 1x1 (if any) at ``in_hw``; depthwise kxk (stride) and, at 1x1, the SE convs
    ``mid -> se_ch -> mid`` (both with bias); projection 1x1 at the output size (Sandler et al. 2018, Table 1);
    with a transition shortcut (``spec.has_transition``, BigNAS Sec. 3.1) that changes the channels, a bias-free
    1x1 conv ``in -> out`` at the output size (its 2x2 average pooling counts nothing).
    """
    out_hw = (conv_out(in_hw[0], spec.kernel, spec.stride), conv_out(in_hw[1], spec.kernel, spec.stride))
    cost = Cost(0, 0)
    if spec.expand:
        cost += _conv_bn(spec.in_ch, spec.mid_ch, 1, 1, in_hw)
    cost += _conv_bn(spec.mid_ch, spec.mid_ch, spec.kernel, spec.mid_ch, out_hw)
    if spec.se_ch > 0:
        macs = 2 * spec.mid_ch * spec.se_ch
        cost += Cost(2 * macs, macs + spec.se_ch + spec.mid_ch)
    cost += _conv_bn(spec.mid_ch, spec.out_ch, 1, 1, out_hw)
    if spec.has_transition and spec.in_ch != spec.out_ch:  # BigNAS Sec. 3.1 shortcut: pool (free), 1x1 conv
        per_pixel = spec.out_ch * spec.in_ch
        cost += Cost(2 * per_pixel * out_hw[0] * out_hw[1], per_pixel)
    return cost, out_hw


def head_cost(spec: HeadSpec, in_hw: tuple[int, int]) -> Cost:
    """Cost of the head: 1x1 ConvBNAct (if ``conv_ch``), pooled ``Linear`` to ``feature_ch`` (if any), classifier."""
    cost, channels = Cost(0, 0), spec.in_ch
    if spec.conv_ch > 0:
        cost += _conv_bn(channels, spec.conv_ch, 1, 1, in_hw)
        channels = spec.conv_ch
    for width in (spec.feature_ch, spec.num_classes):
        if width > 0:
            cost += Cost(2 * channels * width, channels * width + width)
            channels = width
    return cost


def spec_costs(spec: NetworkSpec) -> list[tuple[str, Cost]]:
    """Per-part costs ``[("stem", c), ("blocks.0", c), ..., ("head", c)]`` (names match module names)."""
    check_network_spec(spec)
    _, h, w = spec.input_shape
    st = spec.stem
    hw = (conv_out(h, st.kernel, st.stride), conv_out(w, st.kernel, st.stride))
    parts = [("stem", _conv_bn(st.in_ch, st.out_ch, st.kernel, 1, hw))]
    for i, block in enumerate(spec.blocks):
        cost, hw = block_cost(block, hw)
        parts.append((f"blocks.{i}", cost))
    parts.append(("head", head_cost(spec.head, hw)))
    return parts


def spec_flops(spec: NetworkSpec) -> int:
    """FLOPs of one forward pass at batch size 1, equal to ``FlopCounterMode`` on ``build_network(spec)``."""
    return sum(c.flops for _, c in spec_costs(spec))


def spec_params(spec: NetworkSpec) -> int:
    """Parameter elements of ``build_network(spec)`` (``sum(p.numel() for p in net.parameters())``)."""
    return sum(c.params for _, c in spec_costs(spec))
