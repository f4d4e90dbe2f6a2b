"""Plain, shape-level descriptions of MBConv networks, shared by every MBConv space.

A space turns an :class:`~nasforge.arch.Architecture` into a :class:`NetworkSpec` (``space.spec(arch, input_shape,
num_classes)``); from that one value nasforge builds the standalone module (:func:`nasforge.nn.mbconv.build_network`)
and computes analytic FLOPs and parameters (:mod:`nasforge.nn.analytic`). Keeping the spec separate means the
FLOPs formula and the module can never disagree about a channel count.

Conventions:

* activations: ``"relu"``, ``"relu6"``, ``"hswish"``, ``"swish"``; SE gates: ``"sigmoid"``, ``"hsigmoid"``.
* every conv is followed by BatchNorm (no conv bias); linear layers have a bias.
* an inverted residual with ``mid_ch == in_ch`` and ``expand=False`` has no 1x1 expansion conv (expand ratio 1).
* the identity skip is added when ``stride == 1 and in_ch == out_ch``;
* with ``transition_skip`` a block without identity skip adds a stage-transition shortcut instead: 2x2 average
  pooling when it down-samples and/or a bias-free 1x1 conv when the channels change (BigNAS, Yu et al. 2020,
  Sec. 3.1 "Initialization"). Off by default, so every other network is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConvSpec", "MBConvSpec", "HeadSpec", "NetworkSpec", "make_divisible", "stride_plan"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (never below ``min_value`` or 90% of ``value``).

    The usual MobileNet rule (Sandler et al. 2018; timm ``make_divisible``).
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def stride_plan(resolution: int, planned: list[int], min_size: int = 4) -> list[int]:
    """Adapt a network's planned strides (1 or 2, in order) to a small input.

    Steps are applied front to back; a stride-2 step that would make the feature map smaller than
    ``min_size`` (ceil division, as a padded conv does) becomes stride 1. At 224x224 a 5-step plan is unchanged
    (224 -> 7); at 32x32 the plan keeps 3 steps (32 -> 16 -> 8 -> 4); at 28x28 it keeps 3 (28 -> 14 -> 7 -> 4).
    """
    out, size = [], resolution
    for s in planned:
        if s == 2 and -(-size // 2) >= min_size:
            size = -(-size // 2)
            out.append(2)
        else:
            out.append(1)
    return out


@dataclass(frozen=True)
class ConvSpec:
    """Conv(k, stride) -> BN -> act (the stem, or a 1x1 head conv)."""

    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    act: str


@dataclass(frozen=True)
class MBConvSpec:
    """Inverted residual (Sandler et al. 2018) with optional squeeze-and-excite (Hu et al. 2018).

    1x1 expand (if ``expand``) -> kxk depthwise (stride) -> SE(``se_ch``, if > 0) -> 1x1 project (no act).
    ``transition_skip``: add the BigNAS stage-transition shortcut when there is no identity skip
    (:attr:`has_transition`; BigNAS Sec. 3.1 "Initialization").
    """

    in_ch: int
    mid_ch: int
    out_ch: int
    kernel: int
    stride: int
    se_ch: int = 0
    act: str = "relu"
    se_gate: str = "sigmoid"
    expand: bool = True
    transition_skip: bool = False

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch

    @property
    def has_transition(self) -> bool:
        """Whether the block adds a transition shortcut (pool and/or 1x1 conv): ``transition_skip`` and no
        identity skip, i.e. the resolution or the channels change (BigNAS Sec. 3.1)."""
        return self.transition_skip and not self.has_skip


@dataclass(frozen=True)
class HeadSpec:
    """1x1 conv to ``conv_ch`` (0 = none) + act, global average pool, optional linear to ``feature_ch`` (0 = none)
    + act (MobileNetV3's 960 -> 1280), dropout, and the classifier linear to ``num_classes``."""

    in_ch: int
    conv_ch: int
    feature_ch: int
    num_classes: int
    act: str = "relu"
    dropout: float = 0.0


@dataclass(frozen=True)
class NetworkSpec:
    """A whole MBConv network for a given input: stem, blocks and head."""

    input_shape: tuple[int, int, int]
    stem: ConvSpec
    blocks: tuple[MBConvSpec, ...]
    head: HeadSpec
