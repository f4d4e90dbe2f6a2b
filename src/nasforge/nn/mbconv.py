"""Standalone MBConv networks built from a :class:`~nasforge.nn.spec.NetworkSpec`.

:func:`build_network` turns a spec into a plain ``nn.Module`` (:class:`MBConvNet`) that imports nothing from
nasforge beyond ``nasforge.nn``. Parameter names are regular and stable, because later steps copy weights
between networks by name (MENAS Eq. 1 truncation, parent -> child inheritance, supernet extraction)::

    stem.conv.weight, stem.bn.weight, ...
    blocks.{i}.expand.conv.weight      (absent when the block has no 1x1 expansion, i.e. expand ratio 1)
    blocks.{i}.dw.conv.weight          (depthwise kxk, shape (mid, 1, k, k))
    blocks.{i}.se.conv_reduce.weight   (absent without SE)
    blocks.{i}.project.conv.weight
    blocks.{i}.shortcut.conv.weight    (only with a transition shortcut that changes the channels)
    head.conv.conv.weight, head.fc.weight, head.classifier.weight

:func:`check_network_spec` validates a spec up front (channel chain, kernels, strides, names), so a bad spec
fails with a one-line :class:`~nasforge.errors.InvalidValue` instead of a late tensor-size error in torch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import InvalidValue
from .layers import ACTIVATIONS, GATES, ConvBNAct, SqueezeExcite, make_activation
from .spec import ConvSpec, HeadSpec, MBConvSpec, NetworkSpec

__all__ = ["TransitionShortcut", "InvertedResidual", "Head", "MBConvNet", "build_network", "check_block_spec",
           "check_network_spec"]


def _positive(field: str, value: object, where: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValue(field, value, "a positive int", where=where)


def _kernel_stride(kernel: object, stride: object, where: str) -> None:
    _positive("kernel", kernel, where)
    if kernel % 2 == 0:  # type: ignore[operator]
        raise InvalidValue("kernel", kernel, "an odd int (padding is kernel // 2)", where=where)
    if stride not in (1, 2) or isinstance(stride, bool):
        raise InvalidValue("stride", stride, (1, 2), where=where)


def _act(field: str, value: object, where: str) -> None:
    if value not in ACTIVATIONS:
        raise InvalidValue(field, value, sorted(ACTIVATIONS), where=where)


def check_block_spec(spec: MBConvSpec, where: str = "block") -> None:
    """Validate one :class:`MBConvSpec`; raises :class:`InvalidValue` naming the field and ``where``."""
    if not isinstance(spec, MBConvSpec):
        raise InvalidValue("block", type(spec).__name__, "an MBConvSpec", where=where)
    for field in ("in_ch", "mid_ch", "out_ch"):
        _positive(field, getattr(spec, field), where)
    _kernel_stride(spec.kernel, spec.stride, where)
    if not isinstance(spec.se_ch, int) or isinstance(spec.se_ch, bool) or spec.se_ch < 0:
        raise InvalidValue("se_ch", spec.se_ch, "an int >= 0 (0 = no squeeze-and-excite)", where=where)
    _act("act", spec.act, where)
    if spec.se_gate not in GATES:
        raise InvalidValue("se_gate", spec.se_gate, sorted(GATES), where=where)
    if not spec.expand and spec.mid_ch != spec.in_ch:
        raise InvalidValue("mid_ch", spec.mid_ch, f"{spec.in_ch} (= in_ch, since expand is False)", where=where)
    if not isinstance(spec.transition_skip, bool):
        raise InvalidValue("transition_skip", spec.transition_skip, "True or False", where=where)


def check_network_spec(spec: NetworkSpec) -> None:
    """Validate a whole :class:`NetworkSpec`: every part, and that channels chain from input to classifier."""
    if not isinstance(spec, NetworkSpec):
        raise InvalidValue("spec", type(spec).__name__, "a NetworkSpec")
    shape = spec.input_shape
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise InvalidValue("input_shape", shape, "three positive ints (channels, height, width)")
    stem = spec.stem
    if not isinstance(stem, ConvSpec):
        raise InvalidValue("stem", type(stem).__name__, "a ConvSpec")
    _positive("out_ch", stem.out_ch, "stem")
    _kernel_stride(stem.kernel, stem.stride, "stem")
    _act("act", stem.act, "stem")
    if stem.in_ch != shape[0]:
        raise InvalidValue("in_ch", stem.in_ch, f"{shape[0]} (the input channels)", where="stem")
    channels = stem.out_ch
    for i, block in enumerate(spec.blocks):
        check_block_spec(block, where=f"block {i}")
        if block.in_ch != channels:
            raise InvalidValue("in_ch", block.in_ch, f"{channels} (the previous output channels)",
                               where=f"block {i}")
        channels = block.out_ch
    head = spec.head
    if not isinstance(head, HeadSpec):
        raise InvalidValue("head", type(head).__name__, "a HeadSpec")
    if head.in_ch != channels:
        raise InvalidValue("in_ch", head.in_ch, f"{channels} (the last block's output channels)", where="head")
    for field in ("conv_ch", "feature_ch"):
        value = getattr(head, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidValue(field, value, "an int >= 0 (0 = none)", where="head")
    _positive("num_classes", head.num_classes, "head")
    _act("act", head.act, "head")
    if not isinstance(head.dropout, (int, float)) or not 0.0 <= head.dropout < 1.0:
        raise InvalidValue("dropout", head.dropout, "a float in [0, 1)", where="head")


class TransitionShortcut(nn.Module):
    """The stage-transition skip connection of BigNAS (Yu et al. 2020, Sec. 3.1 "Initialization"): "a skip
    connection in each stage transition when either resolutions or channels differ (using 2x2 average pooling
    and/or 1x1 convolution if necessary)".

    ``pool``: ``AvgPool2d(2, ceil_mode=True)`` when ``stride == 2`` (its output size ``ceil(H / 2)`` equals the
    strided conv's), else ``nn.Identity``. ``conv``: a bias-free 1x1 ``Conv2d(in_ch, out_ch)`` when the channels
    differ (or when ``conv=True`` forces one), else ``nn.Identity``. Pooling runs first, so the conv runs on the
    output resolution.
    """

    def __init__(self, *, in_ch: int, out_ch: int, stride: int, conv: bool | None = None) -> None:
        super().__init__()
        _positive("in_ch", in_ch, "transition shortcut")
        _positive("out_ch", out_ch, "transition shortcut")
        if stride not in (1, 2) or isinstance(stride, bool):
            raise InvalidValue("stride", stride, (1, 2), where="transition shortcut")
        self.pool: nn.Module = nn.AvgPool2d(2, ceil_mode=True) if stride == 2 else nn.Identity()
        use_conv = in_ch != out_ch if conv is None else conv
        if not use_conv and in_ch != out_ch:
            raise InvalidValue("conv", conv, f"True or None (in_ch={in_ch} != out_ch={out_ch} needs the 1x1 conv)",
                               where="transition shortcut")
        self.conv: nn.Module = nn.Conv2d(in_ch, out_ch, 1, bias=False) if use_conv else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (Sandler et al. 2018, Sec. 3.3 and Table 1), optionally with
    squeeze-and-excite between depthwise and projection as in MobileNetV3 (Howard et al. 2019, Sec. 5, Fig. 4).

    ``1x1 expand + BN + act`` (only when ``spec.expand``) -> ``kxk depthwise (stride) + BN + act`` ->
    ``SE`` (when ``spec.se_ch > 0``) -> ``1x1 project + BN`` (no activation: the linear bottleneck) ->
    ``+ x`` when ``spec.has_skip`` (stride 1 and ``in_ch == out_ch``; decided once, at construction), else
    ``+ shortcut(x)`` (a :class:`TransitionShortcut`) when ``spec.has_transition`` (BigNAS Sec. 3.1); without
    either, ``shortcut`` is ``None``.
    """

    def __init__(self, spec: MBConvSpec) -> None:
        super().__init__()
        check_block_spec(spec)
        self.has_skip = spec.has_skip
        if spec.expand:
            self.expand: nn.Module = ConvBNAct(in_ch=spec.in_ch, out_ch=spec.mid_ch, kernel=1, act=spec.act)
        else:
            self.expand = nn.Identity()
        self.dw = ConvBNAct(in_ch=spec.mid_ch, out_ch=spec.mid_ch, kernel=spec.kernel, stride=spec.stride,
                            groups=spec.mid_ch, act=spec.act)
        if spec.se_ch > 0:
            self.se: nn.Module = SqueezeExcite(channels=spec.mid_ch, reduced=spec.se_ch, gate=spec.se_gate)
        else:
            self.se = nn.Identity()
        self.project = ConvBNAct(in_ch=spec.mid_ch, out_ch=spec.out_ch, kernel=1, act=None)
        self.shortcut: TransitionShortcut | None = None
        if spec.has_transition:
            self.shortcut = TransitionShortcut(in_ch=spec.in_ch, out_ch=spec.out_ch, stride=spec.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.expand(x)
        x = self.dw(x)
        x = self.se(x)
        x = self.project(x)
        if self.has_skip:
            x = x + shortcut
        elif self.shortcut is not None:
            x = x + self.shortcut(shortcut)
        return x


class Head(nn.Module):
    """Classifier head per :class:`HeadSpec`: optional 1x1 ConvBNAct to ``conv_ch``, global average pool,
    optional ``Linear(feature_ch) + act`` (MobileNetV3's 960 -> 1280 "last stage", Howard et al. 2019, Sec. 5.4),
    dropout, and the classifier ``Linear(num_classes)``."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        channels = spec.in_ch
        if spec.conv_ch > 0:
            self.conv: nn.Module = ConvBNAct(in_ch=channels, out_ch=spec.conv_ch, kernel=1, act=spec.act)
            channels = spec.conv_ch
        else:
            self.conv = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        if spec.feature_ch > 0:
            self.fc: nn.Module = nn.Linear(channels, spec.feature_ch)
            self.act = make_activation(spec.act)
            channels = spec.feature_ch
        else:
            self.fc, self.act = nn.Identity(), nn.Identity()
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(channels, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.conv(x)))
        x = self.act(self.fc(x))
        return self.classifier(self.dropout(x))


class MBConvNet(nn.Module):
    """A standalone MBConv network: ``stem`` (ConvBNAct) -> ``blocks`` (``nn.Sequential`` of
    :class:`InvertedResidual`) -> ``head`` (:class:`Head`). ``spec`` keeps the :class:`NetworkSpec` it was
    built from (plain frozen data)."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        check_network_spec(spec)
        self.spec = spec
        st = spec.stem
        self.stem = ConvBNAct(in_ch=st.in_ch, out_ch=st.out_ch, kernel=st.kernel, stride=st.stride, act=st.act)
        self.blocks = nn.Sequential(*(InvertedResidual(b) for b in spec.blocks))
        self.head = Head(spec.head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map after the last block (before the head)."""
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def build_network(spec: NetworkSpec) -> MBConvNet:
    """Build the standalone network described by ``spec`` (validated first; see :func:`check_network_spec`)."""
    return MBConvNet(spec)
