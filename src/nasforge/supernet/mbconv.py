"""The elastic MBConv supernet: one set of weights for every child of an MBConv space (BigNAS, Yu et al. 2020).

:class:`ElasticMBConvSupernet` holds the plain ``nasforge.nn`` modules of the space's **largest** child (same
parameter names as :class:`~nasforge.nn.mbconv.MBConvNet`, so a trained largest child loads into it) and runs any
child on slices of them (BigNAS Sec. 4.1; DESIGN.md "Supernet", "Elastic math"):

* **depth**: a child's ``(stage, layer)`` blocks (``space.block_positions``) run the supernet block at the same
  position: the first ``depth`` layers of each stage, the lower-index layers;
* **width**: lower-index channels of every in / mid / out / SE / head width; **kernel**: the centre of the
  largest depthwise kernel; BatchNorm on sliced affine parameters and running statistics
  (:mod:`nasforge.supernet.elastic`);
* what carries no weight comes from the child's spec: strides (so MENAS' down-sampling genes nest), activations,
  SE gates, identity skips; the stage-transition shortcut of Sec. 3.1 (2x2 average pooling and/or a sliced 1x1
  conv) where the child's spec has one;
* **resolution**: when the space's networks resize their input (BigNAS's
  :class:`~nasforge.spaces.bignas.ResolutionNet`), the input is resized to the child's ``spec.input_shape``
  with the same bicubic interpolation, so an activated supernet and an extracted child see the same pixels.

A child whose expand ratio is 1 has no expansion conv; its depthwise conv runs on the lower-index channels of the
supernet's (expanded) depthwise weights. The supernet has a transition 1x1 conv at the first layer of every stage
(and wherever the largest child changes channels) when the space sets ``transition_skip``; a child that needs one
elsewhere raises :class:`~nasforge.errors.InvalidValue`, as does any child that does not nest. For the built-in
spaces ``bignas`` (Table 1), ``menas-ws`` and ``menas-mt`` every child nests: the largest child takes the largest
value of every gene at every position, and strides are not weights.

Per-architecture plans (precomputed weight indices, :mod:`~nasforge.supernet.elastic`) are cached by
``arch.key()`` (least recently used, :data:`PLAN_CACHE_SIZE` entries), so a forward pass only indexes views.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..arch import Architecture
from ..errors import InvalidArchitecture, InvalidValue
from ..nn.layers import ConvBNAct, SqueezeExcite, make_activation, make_gate
from ..nn.mbconv import Head, InvertedResidual, TransitionShortcut
from ..nn.spec import HeadSpec, MBConvSpec, NetworkSpec
from ..registry import get_space
from ..spaces.base import InputShape
from ..spaces.bignas import ResolutionNet
from ..spaces.mbconv_common import MBConvSpace
from .elastic import (
    ConvPlan,
    Index,
    LinearPlan,
    SEPlan,
    conv_bn_act,
    conv_plan,
    crop,
    linear,
    linear_plan,
    plan_index,
    se_plan,
    squeeze_excite,
    take,
)

__all__ = ["ElasticMBConvSupernet", "Supernet", "PLAN_CACHE_SIZE"]

#: How many per-architecture plans a supernet keeps (least recently used first out).
PLAN_CACHE_SIZE = 256


@dataclass(frozen=True)
class _BlockPlan:
    """One active block: its supernet block, the sliced units, and the shortcut kind."""

    index: int
    expand: ConvPlan | None
    dw: ConvPlan
    se: SEPlan | None
    project: ConvPlan
    skip: bool
    transition: bool
    pool: bool
    shortcut: Index | None  # None: no conv, or the whole conv weight (``conv`` says which)
    conv: bool


@dataclass(frozen=True)
class _Plan:
    """Everything a forward pass of one child needs, computed once per architecture."""

    arch: Architecture
    spec: NetworkSpec
    size: tuple[int, int] | None
    stem: ConvPlan
    blocks: tuple[_BlockPlan, ...]
    head_conv: ConvPlan | None
    fc: LinearPlan | None
    head_act: nn.Module
    classifier: LinearPlan


def _check_space(space: MBConvSpace | str) -> MBConvSpace:
    if isinstance(space, str):
        space = get_space(space)
    if not isinstance(space, MBConvSpace) or not callable(getattr(space, "block_positions", None)):
        raise InvalidValue("space", getattr(space, "name", space),
                           "an MBConv space with block_positions (bignas, menas-mt, menas-ws)")
    return space


def _supernet_block(spec: MBConvSpec, first_in_stage: bool) -> InvertedResidual:
    """The largest block at one position, with a transition 1x1 conv wherever a child may need one: at a stage's
    first layer, or where the largest child changes channels (BigNAS Sec. 3.1)."""
    block = InvertedResidual(spec)
    has_conv = block.shortcut is not None and isinstance(block.shortcut.conv, nn.Conv2d)
    if spec.transition_skip and (first_in_stage or spec.in_ch != spec.out_ch) and not has_conv:
        block.shortcut = TransitionShortcut(in_ch=spec.in_ch, out_ch=spec.out_ch, stride=spec.stride, conv=True)
    return block


@torch.no_grad()
def _init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every parameter and buffer from ``generator``: He-normal (fan-out) convs, the init BigNAS
    starts from (Sec. 3.1 "Initialization", He et al. 2015); linear weights uniform in ``+-1/sqrt(out)`` (the
    EfficientNet dense init); zero biases; BatchNorm reset to identity (weight 1, bias 0, fresh statistics)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            m.weight.uniform_(-bound, bound, generator=generator)
            m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


class ElasticMBConvSupernet(nn.Module):
    """Weight-sharing supernet over an MBConv space (BigNAS Sec. 3-4.1): ``with net.activate(arch): y = net(x)``.

    Built from ``space.spec(space.largest(), input_shape, num_classes)``; outside :meth:`activate` it runs the
    largest child. :meth:`extract` returns ``space.build(arch, ...)`` holding the child's slice of every weight
    and BatchNorm buffer, a standalone module that equals the activated supernet.

    ``zero_init_last_bn`` sets gamma = 0 in the last BatchNorm (the projection's) of every block that is residual
    in the largest child (identity or transition skip), BigNAS Sec. 3.1 "Initialization". With a ``generator``
    every weight is drawn from it (:func:`_init_weights`; the modules are created on the generator's device
    without touching torch's global generator); without one, the ``torch.nn`` default initialisation is kept.
    """

    def __init__(self, space: MBConvSpace | str, input_shape: InputShape | None = None,
                 num_classes: int | None = None, *, zero_init_last_bn: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        space = _check_space(space)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidValue("generator", type(generator).__name__, "a torch.Generator or None")
        self.space = space
        self.input_shape, self.num_classes = space.resolve_input(input_shape, num_classes)
        largest = space.largest()
        spec = space.spec(largest, self.input_shape, self.num_classes)
        positions = space.block_positions(largest)
        self._positions = {pos: i for i, pos in enumerate(positions)}
        with torch.device("meta") if generator is not None else nullcontext():
            st = spec.stem
            self.stem = ConvBNAct(in_ch=st.in_ch, out_ch=st.out_ch, kernel=st.kernel, stride=st.stride, act=st.act)
            self.blocks = nn.ModuleList(_supernet_block(b, j == 0) for b, (_, j) in zip(spec.blocks, positions))
            self.head = Head(spec.head)
        #: whether the space's networks resize their input to the resolution gene (BigNAS's ResolutionNet)
        self._resizes = isinstance(self._template(space.smallest()), ResolutionNet)
        if generator is not None:
            self.to_empty(device=generator.device)
            _init_weights(self, generator)
        if zero_init_last_bn:  # only blocks that are residual in EVERY child: a zero gamma without a skip would
            # silence the child's input (a stage's first layer is an identity block in some children only)
            with torch.no_grad():
                for block, b, (_, j) in zip(self.blocks, spec.blocks, positions):
                    if b.transition_skip or (j > 0 and b.has_skip):
                        block.project.bn.weight.zero_()
        self._plans: OrderedDict[str, _Plan] = OrderedDict()
        self._active: _Plan | None = None
        self._largest = self._plan(largest)

    # ------------------------------------------------------------------------------------------------ activation
    @property
    def active_arch(self) -> Architecture | None:
        """The architecture of the enclosing :meth:`activate` block (canonical), or ``None`` outside one."""
        return None if self._active is None else self._active.arch

    @property
    def head_dropout(self) -> nn.Dropout:
        """The dropout before the classifier (BigNAS Sec. 4.2 applies it to the largest child only: a trainer
        changes its ``p`` per child). Extracted children keep their spec's rate."""
        return self.head.dropout

    @contextmanager
    def activate(self, arch: Architecture) -> Iterator["ElasticMBConvSupernet"]:
        """Run child ``arch`` inside the ``with`` block; the previous state (the largest child) comes back on exit,
        also after an exception. ``arch`` is validated first (:class:`InvalidArchitecture`, before any tensor
        op); activations do not nest (:class:`InvalidValue`)."""
        if self._active is not None:
            raise InvalidValue("activate", "a nested activation", "one active architecture at a time (leave the "
                               f"`with net.activate(...)` block of {self._active.arch.key()} first)")
        plan = self._plan(arch)
        self._active = plan
        try:
            yield self
        finally:
            self._active = None

    # ------------------------------------------------------------------------------------------------ plans
    def _plan(self, arch: Architecture) -> _Plan:
        """The cached plan of ``arch`` (validated and computed on a cache miss)."""
        if not isinstance(arch, Architecture):
            raise InvalidArchitecture("architecture", arch, f"an Architecture of space {self.space.name!r}")
        key = arch.key()
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(self.space.validate(arch))
            self._plans[key] = plan
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def _make_plan(self, arch: Architecture) -> _Plan:
        spec = self.space.spec(arch, self.input_shape, self.num_classes)
        st = spec.stem
        stem = conv_plan(self.stem, st.out_ch, st.in_ch, st.kernel, st.stride, make_activation(st.act), what="stem")
        blocks = tuple(self._block_plan(b, pos) for b, pos in zip(spec.blocks, self.space.block_positions(arch)))
        head_conv, fc, classifier = self._head_plan(spec.head)
        size = (spec.input_shape[1], spec.input_shape[2]) if self._resizes else None
        return _Plan(arch, spec, size, stem, blocks, head_conv, fc, make_activation(spec.head.act), classifier)

    def _block_plan(self, b: MBConvSpec, pos: tuple[int, int]) -> _BlockPlan:
        where = f"block s{pos[0]}.l{pos[1]}"
        i = self._positions.get(pos)
        if i is None:
            raise InvalidValue("block", where, "a (stage, layer) position of the largest child")
        block = self.blocks[i]
        act = make_activation(b.act)
        expand = None
        if b.expand:
            if not isinstance(block.expand, ConvBNAct):
                raise InvalidValue(f"expansion of {where}", b.mid_ch, "none (the supernet has no 1x1 expansion here)")
            expand = conv_plan(block.expand, b.mid_ch, b.in_ch, 1, 1, act, what=f"expansion of {where}")
        dw = conv_plan(block.dw, b.mid_ch, b.mid_ch, b.kernel, b.stride, act, depthwise=True,
                       what=f"depthwise of {where}")
        se = None
        if b.se_ch > 0:
            if not isinstance(block.se, SqueezeExcite):
                raise InvalidValue(f"se_ch of {where}", b.se_ch, "0 (the supernet has no squeeze-and-excite here)")
            se = se_plan(block.se, b.mid_ch, b.se_ch, make_gate(b.se_gate))
        project = conv_plan(block.project, b.out_ch, b.mid_ch, 1, 1, nn.Identity(), what=f"projection of {where}")
        shortcut = None
        if b.has_transition and b.in_ch != b.out_ch:
            conv = getattr(block.shortcut, "conv", None)
            if not isinstance(conv, nn.Conv2d):
                raise InvalidValue(f"transition shortcut of {where}", f"{b.in_ch}->{b.out_ch}",
                                   "a position where the supernet has a transition 1x1 conv")
            shortcut = plan_index(conv.weight.shape, (b.out_ch, b.in_ch, 1, 1), f"transition shortcut of {where}")
        return _BlockPlan(i, expand, dw, se, project, b.has_skip, b.has_transition, b.has_transition and b.stride == 2,
                          shortcut, b.has_transition and b.in_ch != b.out_ch)

    def _head_plan(self, h: HeadSpec) -> tuple[ConvPlan | None, LinearPlan | None, LinearPlan]:
        conv, fc, channels = None, None, h.in_ch
        if h.conv_ch > 0:
            if not isinstance(self.head.conv, ConvBNAct):
                raise InvalidValue("conv_ch of head", h.conv_ch, "0 (the supernet has no head conv)")
            conv = conv_plan(self.head.conv, h.conv_ch, channels, 1, 1, make_activation(h.act), what="head conv")
            channels = h.conv_ch
        if h.feature_ch > 0:
            if not isinstance(self.head.fc, nn.Linear):
                raise InvalidValue("feature_ch of head", h.feature_ch, "0 (the supernet has no feature layer)")
            fc = linear_plan(self.head.fc, h.feature_ch, channels, "head features")
            channels = h.feature_ch
        return conv, fc, linear_plan(self.head.classifier, h.num_classes, channels, "classifier")

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the active child (the largest outside :meth:`activate`) for a batch ``(N, C, H, W)``."""
        c = self.input_shape[0]
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != c or not x.is_floating_point():
            raise InvalidValue("supernet input", tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__,
                               f"a float tensor of shape (N, {c}, H, W)")
        plan = self._largest if self._active is None else self._active
        if plan.size is not None and tuple(x.shape[-2:]) != plan.size:  # as ResolutionNet.forward
            x = F.interpolate(x, size=plan.size, mode="bicubic", align_corners=False)
        x = conv_bn_act(self.stem, x, plan.stem)
        for p in plan.blocks:
            x = self._block(self.blocks[p.index], p, x)
        head = self.head
        if plan.head_conv is not None:
            x = conv_bn_act(head.conv, x, plan.head_conv)
        x = head.flatten(head.pool(x))
        if plan.fc is not None:
            x = plan.head_act(linear(head.fc, x, plan.fc))
        return linear(head.classifier, head.dropout(x), plan.classifier)

    @staticmethod
    def _block(block: InvertedResidual, p: _BlockPlan, x: torch.Tensor) -> torch.Tensor:
        """One elastic inverted residual (Sandler et al. 2018) with the active block's skip (BigNAS Sec. 3.1)."""
        h = x if p.expand is None else conv_bn_act(block.expand, x, p.expand)
        h = conv_bn_act(block.dw, h, p.dw)
        if p.se is not None:
            h = squeeze_excite(block.se, h, p.se)
        h = conv_bn_act(block.project, h, p.project)
        if p.skip:
            return h + x
        if p.transition:
            s = F.avg_pool2d(x, 2, ceil_mode=True) if p.pool else x
            if p.conv:
                s = F.conv2d(s, take(block.shortcut.conv.weight, p.shortcut))
            return h + s
        return h

    # ------------------------------------------------------------------------------------------------ extraction
    def _template(self, arch: Architecture) -> nn.Module:
        """``space.build(arch)`` on the meta device: names and shapes, no memory, no random numbers."""
        with torch.device("meta"):
            return self.space.build(arch, self.input_shape, self.num_classes)

    def _child_state(self, plan: _Plan, template: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        own = self.state_dict()
        out = {}
        for name, t in template.items():
            head, _, rest = name.partition(".")
            if head == "blocks":
                i, _, tail = rest.partition(".")
                source = f"blocks.{plan.blocks[int(i)].index}.{tail}"
            else:
                source = name
            if source not in own:
                raise InvalidValue("child tensor", name, f"a tensor of the supernet ({source} is missing)")
            out[name] = crop(own[source], t.shape, name).detach().clone(memory_format=torch.contiguous_format)
        return out

    def child_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """The child's slice of every weight and BatchNorm buffer, as copies, under the names of
        ``space.build(arch, input_shape, num_classes)`` (its ``load_state_dict`` takes it)."""
        plan = self._plan(arch)
        return self._child_state(plan, self._template(plan.arch).state_dict())

    def extract(self, arch: Architecture) -> nn.Module:
        """A standalone ``space.build(arch, input_shape, num_classes)`` holding copies of the child's weights and
        BatchNorm statistics (the BigNAS deploy path, Sec. 3: "directly slice" a child, no retraining), on the
        supernet's device and dtype, in the supernet's training mode. After BigNAS / SPOS training the supernet's
        BN statistics are not the child's: calibrate first (``calibrate_bn`` inside :meth:`activate`, or on the
        extracted module), as ``nasforge supernet eval`` and ``export_member`` do (Sec. 3.1 "Batch Norm
        Calibration")."""
        plan = self._plan(arch)
        child = self._template(plan.arch)
        child.load_state_dict(self._child_state(plan, child.state_dict()), assign=True)  # the copies, as they are
        return child.train(self.training)

    def extra_repr(self) -> str:
        return f"space={self.space.name!r}, input_shape={self.input_shape}, num_classes={self.num_classes}"


#: Short alias (DESIGN.md "Supernet").
Supernet = ElasticMBConvSupernet
