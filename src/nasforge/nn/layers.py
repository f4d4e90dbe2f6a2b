"""Plain building blocks shared by every MBConv network: activations, Conv-BN-act, squeeze-and-excite.

Everything here is an ordinary ``torch.nn`` module built from ``torch.nn`` parts only, so a built network runs
without nasforge's search machinery. Module names are part of the API: weights are copied between networks by
name (lottery-ticket truncation, parent -> child inheritance, supernet extraction), so

* :class:`ConvBNAct` always has ``conv``, ``bn`` and ``act`` children (``act`` is ``nn.Identity`` when absent);
* :class:`SqueezeExcite` has ``conv_reduce``, ``act``, ``conv_expand`` and ``gate``.

Activations are created non-inplace so that forward hooks (zero-cost proxies, feature distillation) see the
tensors they captured unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..errors import InvalidValue

__all__ = ["ACTIVATIONS", "GATES", "make_activation", "make_gate", "ConvBNAct", "SqueezeExcite"]

#: name -> factory of the activations the network specs may name (``nasforge.nn.spec`` conventions).
#: ``hswish`` is the hard swish of MobileNetV3 (Howard et al. 2019, Sec. 5.2); ``swish`` is SiLU.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "swish": nn.SiLU,
}

#: name -> factory of squeeze-and-excite gates: the sigmoid of Hu et al. 2018 and the hard sigmoid
#: ``relu6(x + 3) / 6`` that MobileNetV3 uses in its SE modules (Howard et al. 2019, Sec. 5.3).
GATES: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "hsigmoid": nn.Hardsigmoid,
}


def make_activation(name: str | None) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`); ``None`` gives ``nn.Identity``."""
    if name is None:
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise InvalidValue("activation", name, sorted(ACTIVATIONS))
    return ACTIVATIONS[name]()


def make_gate(name: str) -> nn.Module:
    """A fresh SE gate module for ``name`` (one of :data:`GATES`)."""
    if name not in GATES:
        raise InvalidValue("se_gate", name, sorted(GATES))
    return GATES[name]()


def _check_positive(field: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValue(field, value, "a positive int")


class ConvBNAct(nn.Module):
    """``Conv2d(kernel, stride, padding=kernel // 2, bias=False) -> BatchNorm2d -> activation``.

    The unit every MobileNet is made of (Sandler et al. 2018, Table 1; Howard et al. 2019, Fig. 4). ``act=None``
    leaves the output linear (the projection conv of an inverted residual). ``groups=out_ch=in_ch`` makes it
    depthwise.
    """

    def __init__(self, *, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = "relu") -> None:
        super().__init__()
        for field, value in (("in_ch", in_ch), ("out_ch", out_ch), ("kernel", kernel), ("groups", groups)):
            _check_positive(field, value)
        if kernel % 2 == 0:
            raise InvalidValue("kernel", kernel, "an odd int (padding is kernel // 2)")
        if stride not in (1, 2):
            raise InvalidValue("stride", stride, (1, 2))
        if in_ch % groups or out_ch % groups:
            raise InvalidValue("groups", groups, f"a divisor of in_ch={in_ch} and out_ch={out_ch}")
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite (Hu et al. 2018, Sec. 3): global average pool -> 1x1 conv ``channels -> reduced``
    (with bias) -> ReLU -> 1x1 conv ``reduced -> channels`` (with bias) -> gate -> scale the input.

    With ``gate="hsigmoid"`` this is MobileNetV3's SE module (Howard et al. 2019, Sec. 5.3), whose reduced width
    is ``make_divisible(expanded_channels / 4)``; the caller chooses ``reduced``.
    """

    def __init__(self, *, channels: int, reduced: int, gate: str = "sigmoid") -> None:
        super().__init__()
        _check_positive("channels", channels)
        _check_positive("se_ch", reduced)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = make_gate(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.act(self.conv_reduce(s))
        return x * self.gate(self.conv_expand(s))
