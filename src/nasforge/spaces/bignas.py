"""The BigNAS search space (Yu et al., ECCV 2020, Sec. 4.1 and Table 1): ``bignas``.

A MobileNetV2-style stack of inverted residual (MBConv) blocks with squeeze-and-excite (as in EfficientNet) and
swish activations: a 3x3 stem, seven searchable stages and a 1x1 head conv. What is searched (Table 1):

=====  ========  ======  ================  ===========  ========  ======
stage  operator  stride  channels          layers       kernels   expand
=====  ========  ======  ================  ===========  ========  ======
stem   conv 3x3  2       32, 40            1            3         -
1      MBConv1   1       16, 24            1-2          3         1
2      MBConv6   2       24, 32            2-3          3         6
3      MBConv6   2       40, 48            2-3          3, 5      6
4      MBConv6   2       80, 88            2-4          3, 5      6
5      MBConv6   1       112, 120, 128     2-6          3, 5      6
6      MBConv6   2       192, ..., 216     2-6          3, 5      6
7      MBConv6   1       320, ..., 352     1-2          3, 5      6
head   conv 1x1  1       1280, ..., 1408   1            1         -
=====  ========  ======  ================  ===========  ========  ======

Choices made where the paper gives only a range (documented, change them with the constructor):

* channel ranges are read as multiples of 8 (the MobileNet divisor): ``32-40`` is {32, 40}, ``1280-1408`` is
  {1280, 1288, ..., 1408};
* the strides follow the resolution column of Table 1 (the input of stage 1 is 96-160 px, of stage 3 48-80 px...);
* the expand ratio is fixed by the operator (MBConv1 / MBConv6) but still a per-layer gene with one choice, so a
  wider space (Sec. 4.1: "channel numbers can be adjusted layer-wise") only needs a different table;
* resolution choices are {192, 224, 256, 288, 320}: the coarse-to-fine selection set of Sec. 4.4 (training
  samples {192, 224, 288, 320}, Sec. 4.1; the selected child of Sec. 4.4 runs at 256);
* SE width follows EfficientNet: ``max(1, int(0.25 * block input channels))``, sigmoid gate;
* the head has dropout 0.2 (Sec. 4.2; BigNAS applies it only to the largest child during supernet training).

Genes are flat: ``resolution``, ``stem.width``, ``s{k}.depth``, ``s{k}.width``, ``s{k}.l{j}.kernel``,
``s{k}.l{j}.expand`` (k = 1..7, j = 0..max depth - 1) and ``head.width``. Layer genes with ``j >= s{k}.depth`` are
inactive and dropped, so equal networks are equal architectures. The layout is the one the elastic supernet
slices (Sec. 4.1): a child keeps the lower-index channels, the first ``depth`` layers of every stage and the
centre of the largest depthwise kernel.

Resolution and the input shape: with no ``input_shape`` the network reads ``resolution x resolution`` images
(the default input is the largest resolution, 320). With an ``input_shape`` (C, H, W) the gene scales it:
``H' = floor(H * resolution / 320 + 0.5)`` (likewise W), e.g. 32x32 CIFAR images run at 19, 22, 26, 29 or 32 px.
The built network (:class:`ResolutionNet`) resizes its input to ``(H', W')`` with bicubic interpolation, as BigNAS
feeds one crop to every child at its own resolution (Sec. 3.1, inplace distillation); resizing costs no counted
FLOPs. The stride plan (:func:`~nasforge.spaces.mbconv_common.fit_input`) is computed on the caller's ``H`` so
that every resolution of one input shape shares the same topology, as the children of one supernet do.

Stage-transition skips (Sec. 3.1 "Initialization"): with ``transition_skip=True`` (the default, the paper's
model) every block without an identity skip (a stage's first layer, where the resolution or the channels change)
adds a shortcut of 2x2 average pooling (when it down-samples) and/or a bias-free 1x1 conv (when the channels
change) (:class:`~nasforge.nn.mbconv.TransitionShortcut`), so every block is residual. The 1x1 convs count in
:meth:`~BigNASSpace.flops` and :meth:`~BigNASSpace.params`: the Sec. 4.4 child has 658.5M multiply-adds and
6.69M parameters at 256 px (636.8M and 6.57M without them; the paper says "FLOPs near 650M").
``transition_skip=False`` gives the plain MBConv stack.

Not modelled here: the zero-initialised last BN gamma of Sec. 3.1 is an initialisation of the weight-sharing
model (:class:`nasforge.supernet.ElasticMBConvSupernet`, ``zero_init_last_bn``), not of the architecture.

String form (timm-style, :mod:`~nasforge.spaces.mbconv_common` codec): a header ``res<resolution>_c<stem>``, one
stage per ``-`` with a stage block ``r<depth>_c<width>`` followed by one ``k<kernel>_e<expand>`` block per active
layer, and the head ``c<width>``::

    res256_c32-r1_c16,k3_e1-r2_c24,k3_e6,k3_e6-...-r1_c352,k3_e6-c1408
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..arch import Architecture, Gene
from ..errors import InvalidArchitecture, InvalidValue, ParseError
from ..nn.mbconv import MBConvNet
from ..nn.spec import ConvSpec, HeadSpec, MBConvSpec, NetworkSpec
from ..registry import register_space
from .base import Dimension, InputShape
from .mbconv_common import (
    BlockCodec,
    MBConvSpace,
    Token,
    codec,
    fit_input,
    join_stages,
    layer_label,
    split_stages,
    stage_label,
)

__all__ = ["BigNASStage", "TABLE1_STAGES", "TABLE1_RESOLUTIONS", "TABLE1_STEM", "TABLE1_HEAD", "BigNASSpace",
           "ResolutionNet", "channel_range", "parse_block", "scaled_size"]


def channel_range(low: int, high: int, step: int = 8) -> tuple[int, ...]:
    """The channel choices of a Table 1 range ``low-high``: multiples of ``step`` from ``low`` to ``high``."""
    return tuple(range(low, high + 1, step))


@dataclass(frozen=True)
class BigNASStage:
    """One searchable stage of Table 1: output-width, depth, kernel and expand-ratio choices, and the stride of its
    first layer. Choices are ordered from small to large."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]
    stride: int


#: Table 1 of BigNAS (Yu et al. 2020), stages 1-7; see the module docstring for the readings of its ranges.
TABLE1_STAGES: tuple[BigNASStage, ...] = (
    BigNASStage(channel_range(16, 24), (1, 2), (3,), (1,), 1),          # MBConv1, 96-160 px
    BigNASStage(channel_range(24, 32), (2, 3), (3,), (6,), 2),          # MBConv6, 96-160 px in
    BigNASStage(channel_range(40, 48), (2, 3), (3, 5), (6,), 2),        # MBConv6, 48-80 px in
    BigNASStage(channel_range(80, 88), (2, 3, 4), (3, 5), (6,), 2),     # MBConv6, 24-40 px in
    BigNASStage(channel_range(112, 128), (2, 3, 4, 5, 6), (3, 5), (6,), 1),  # MBConv6, 12-20 px
    BigNASStage(channel_range(192, 216), (2, 3, 4, 5, 6), (3, 5), (6,), 2),  # MBConv6, 12-20 px in
    BigNASStage(channel_range(320, 352), (1, 2), (3, 5), (6,), 1),      # MBConv6, 6-10 px
)
TABLE1_RESOLUTIONS: tuple[int, ...] = (192, 224, 256, 288, 320)  # Sec. 4.4 selection set
TABLE1_STEM: tuple[int, ...] = channel_range(32, 40)               # 3x3 conv, stride 2
TABLE1_HEAD: tuple[int, ...] = channel_range(1280, 1408)           # 1x1 conv

_HEADER = BlockCodec([Token("res", "resolution", int), Token("c", "channels", int)])
_STAGE = codec("depth", "channels")
_LAYER = codec("kernel", "expand")
_HEAD = codec("channels")


def parse_block(block_codec: BlockCodec, text: str, what: str) -> dict[str, Gene]:
    """Parse one block string with ``block_codec`` and require every field of its table (strict codec use)."""
    fields = block_codec.parse(text, what)
    if len(fields) != len(block_codec.tokens):
        raise ParseError(what, text, block_codec.expected())
    return fields


def scaled_size(size: int, resolution: int, max_resolution: int) -> int:
    """``floor(size * resolution / max_resolution + 0.5)``, at least 1: the side an input of ``size`` px is resized
    to for the resolution gene ``resolution`` (module docstring)."""
    return max(1, math.floor(size * resolution / max_resolution + 0.5))


class ResolutionNet(MBConvNet):
    """An :class:`~nasforge.nn.mbconv.MBConvNet` that first resizes its input to ``spec.input_shape[1:]`` (bicubic,
    no antialiasing, as TensorFlow's default resize that BigNAS used; Sec. 3.1). Same parameter names as
    ``MBConvNet``; an input of the right size passes untouched."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__(spec)
        self.input_size = (spec.input_shape[1], spec.input_shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bicubic", align_corners=False)
        return super().forward(x)


def _check_choices(field: str, values: Sequence[int], allowed: str = "a non-empty, increasing tuple of positive ints"
                   ) -> tuple[int, ...]:
    vals = tuple(values)
    if not vals or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in vals) \
            or list(vals) != sorted(set(vals)):
        raise InvalidValue(field, values, allowed, where="space 'bignas'")
    return vals


_STAGE_FIELDS = ("widths", "depths", "kernels", "expands", "stride")


def _check_stage(k: int, stage: "BigNASStage | Mapping[str, object]") -> BigNASStage:
    if isinstance(stage, Mapping):  # a YAML / JSON stage: {widths: [...], depths: [...], ..., stride: 2}
        if set(stage) != set(_STAGE_FIELDS):
            raise InvalidValue(f"stage {k}", dict(stage), "a mapping with exactly " + ", ".join(_STAGE_FIELDS),
                               where="space 'bignas'")
        stage = BigNASStage(*(stage[f] if f == "stride" else tuple(stage[f])  # type: ignore[arg-type]
                              for f in _STAGE_FIELDS))
    if not isinstance(stage, BigNASStage):
        raise InvalidValue(f"stage {k}", stage, "a BigNASStage", where="space 'bignas'")
    for name in ("widths", "depths", "kernels", "expands"):
        _check_choices(f"stage {k} {name}", getattr(stage, name))
    if any(kk % 2 == 0 for kk in stage.kernels):
        raise InvalidValue(f"stage {k} kernels", stage.kernels, "odd kernel sizes", where="space 'bignas'")
    if stage.stride not in (1, 2) or isinstance(stage.stride, bool):
        raise InvalidValue(f"stage {k} stride", stage.stride, (1, 2), where="space 'bignas'")
    return stage


@register_space("bignas")
class BigNASSpace(MBConvSpace):
    """BigNAS's MobileNetV2-based space (Table 1, Sec. 4.1). The defaults are the paper's; the constructor takes
    another table (e.g. a tiny one for tests or CIFAR-scale experiments); ``transition_skip=False`` leaves out the
    stage-transition shortcuts of Sec. 3.1."""

    name = "bignas"
    act = "swish"          # Sec. 4.2: swish activation (Ramachandran et al.)
    se_ratio = 0.25        # EfficientNet SE: 1/4 of the block's input channels
    dropout = 0.2          # Sec. 4.2 / 4.3: dropout 0.2 before the classifier

    def __init__(self, stages: Sequence[BigNASStage] = TABLE1_STAGES,
                 resolutions: Sequence[int] = TABLE1_RESOLUTIONS, stem_widths: Sequence[int] = TABLE1_STEM,
                 head_widths: Sequence[int] = TABLE1_HEAD, transition_skip: bool = True) -> None:
        if not isinstance(stages, Sequence) or not stages:
            raise InvalidValue("stages", stages, "a non-empty sequence of BigNASStage", where="space 'bignas'")
        self.stages = tuple(_check_stage(k, s) for k, s in enumerate(stages, 1))
        self.resolutions = _check_choices("resolutions", resolutions)
        self.stem_widths = _check_choices("stem_widths", stem_widths)
        self.head_widths = _check_choices("head_widths", head_widths)
        if not isinstance(transition_skip, bool):
            raise InvalidValue("transition_skip", transition_skip, "True or False", where="space 'bignas'")
        self.transition_skip = transition_skip
        self.default_input = (3, self.resolutions[-1], self.resolutions[-1])

    # ------------------------------------------------------------------------------------------------ genes
    def dimensions(self) -> tuple[Dimension, ...]:
        """``resolution``, ``stem.width``, then per stage ``depth``, ``width`` and the layer genes, ``head.width``."""
        dims = [Dimension("resolution", self.resolutions), Dimension("stem.width", self.stem_widths)]
        for k, st in enumerate(self.stages, 1):
            dims += [Dimension(stage_label(k, "depth"), st.depths), Dimension(stage_label(k, "width"), st.widths)]
            for j in range(st.depths[-1]):
                dims += [Dimension(layer_label(k, j, "kernel"), st.kernels),
                         Dimension(layer_label(k, j, "expand"), st.expands)]
        dims.append(Dimension("head.width", self.head_widths))
        return tuple(dims)

    @cached_property
    def _layer_pos(self) -> dict[str, tuple[int, int]]:
        """Layer gene label -> (stage, layer index)."""
        return {layer_label(k, j, name): (k, j) for k, st in enumerate(self.stages, 1)
                for j in range(st.depths[-1]) for name in ("kernel", "expand")}

    def is_active(self, label: str, genes: Mapping[str, Gene]) -> bool:
        """Layer genes are active for the first ``s{k}.depth`` layers of stage k (Sec. 4.1, lower-index layers)."""
        pos = self._layer_pos.get(label)
        if pos is None:
            return True
        depth = genes.get(stage_label(pos[0], "depth"))
        return not isinstance(depth, int) or pos[1] < depth

    def cardinality(self) -> int:
        """``|res| * |stem| * |head| * prod_k |widths_k| * sum_{d in depths_k} (|kernels_k| * |expands_k|)^d``."""
        total = len(self.resolutions) * len(self.stem_widths) * len(self.head_widths)
        for st in self.stages:
            per_layer = len(st.kernels) * len(st.expands)
            total *= len(st.widths) * sum(per_layer ** d for d in st.depths)
        return total

    def _extreme(self, pick: int) -> Architecture:
        genes = {d.label: d.choices[pick] for d in self.dimensions()}
        return self.make({k: v for k, v in genes.items() if self.is_active(k, genes)})

    def smallest(self) -> Architecture:
        """The sandwich rule's smallest child (Sec. 3.1): lowest resolution, thinnest, shallowest, smallest kernels.
        FLOPs grow monotonically with every gene, so this is the minimum."""
        return self._extreme(0)

    def largest(self) -> Architecture:
        """The full model of the sandwich rule (Sec. 3.1): every gene at its largest choice."""
        return self._extreme(-1)

    # ------------------------------------------------------------------------------------------------ network
    def spec(self, arch: Architecture, input_shape: InputShape | None = None,
             num_classes: int | None = None) -> NetworkSpec:
        """The network of ``arch`` (Table 1) at the resolution rule of the module docstring."""
        g = self.validate(arch).to_dict()
        (c, h, w), classes = self.resolve_input(input_shape, num_classes)
        channels = int(g["stem.width"])
        stem = ConvSpec(c, channels, 3, 2, self.act)
        blocks: list[MBConvSpec] = []
        for k, st in enumerate(self.stages, 1):
            width = int(g[stage_label(k, "width")])
            for j in range(int(g[stage_label(k, "depth")])):
                e = int(g[layer_label(k, j, "expand")])
                blocks.append(MBConvSpec(
                    in_ch=channels, mid_ch=channels * e, out_ch=width, kernel=int(g[layer_label(k, j, "kernel")]),
                    stride=st.stride if j == 0 else 1, se_ch=max(1, int(channels * self.se_ratio)),
                    act=self.act, se_gate="sigmoid", expand=e != 1, transition_skip=self.transition_skip))
                channels = width
        head = HeadSpec(channels, int(g["head.width"]), 0, classes, self.act, self.dropout)
        net = fit_input((c, h, w), stem, blocks, head)
        res, top = int(g["resolution"]), self.resolutions[-1]
        return replace(net, input_shape=(c, scaled_size(h, res, top), scaled_size(w, res, top)))

    def build(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> ResolutionNet:
        """A standalone :class:`ResolutionNet`: resizes the input to the resolution gene, then the MBConv stack."""
        return ResolutionNet(self.spec(arch, input_shape, num_classes))

    def block_positions(self, arch: Architecture) -> list[tuple[int, int]]:
        """``(stage, layer)`` of every block :meth:`build` makes, in order (stages 1-based, layers 0-based): the
        first ``s{k}.depth`` layers of each stage (Sec. 4.1, lower-index layers)."""
        g = self.validate(arch).to_dict()
        return [(k, j) for k in range(1, len(self.stages) + 1) for j in range(int(g[stage_label(k, "depth")]))]

    def layer_modules(self, arch: Architecture) -> dict[str, str]:
        """Layer id ``"s{k}.l{j}"`` -> module name ``"blocks.{i}"`` in the network :meth:`build` makes."""
        return {f"s{k}.l{j}": f"blocks.{i}" for i, (k, j) in enumerate(self.block_positions(arch))}

    # ------------------------------------------------------------------------------------------------ strings
    def format(self, arch: Architecture) -> str:
        """``res<r>_c<stem>-r<depth>_c<width>,k<k>_e<e>,...-...-c<head>`` (module docstring)."""
        g = self.validate(arch).to_dict()
        stages = [[_HEADER.format({"resolution": g["resolution"], "channels": g["stem.width"]})]]
        for k in range(1, len(self.stages) + 1):
            depth = int(g[stage_label(k, "depth")])
            blocks = [_STAGE.format({"depth": depth, "channels": g[stage_label(k, "width")]})]
            blocks += [_LAYER.format({"kernel": g[layer_label(k, j, "kernel")],
                                      "expand": g[layer_label(k, j, "expand")]}) for j in range(depth)]
            stages.append(blocks)
        stages.append([_HEAD.format({"channels": g["head.width"]})])
        return join_stages(stages)

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; :class:`ParseError` for malformed text, ``InvalidArchitecture`` for values
        outside the space (naming the gene)."""
        if not isinstance(text, str):
            raise ParseError("bignas architecture", repr(text), "a string")
        stages = split_stages(text, "bignas architecture", len(self.stages) + 2)
        if len(stages[0]) != 1 or len(stages[-1]) != 1:
            raise ParseError("bignas architecture", text, "a single header block and a single head block")
        header = parse_block(_HEADER, stages[0][0], "bignas header")
        genes: dict[str, Gene] = {"resolution": header["resolution"], "stem.width": header["channels"],
                                  "head.width": parse_block(_HEAD, stages[-1][0], "bignas head")["channels"]}
        for k, blocks in enumerate(stages[1:-1], 1):
            st = parse_block(_STAGE, blocks[0], f"bignas stage {k}")
            if st["depth"] not in self.stages[k - 1].depths:
                raise InvalidArchitecture(f"gene {stage_label(k, 'depth')!r}", st["depth"],
                                          self.stages[k - 1].depths, where=f"space {self.name!r}")
            if len(blocks) - 1 != st["depth"]:
                raise ParseError(f"bignas stage {k}", ",".join(blocks),
                                 f"{st['depth']} layer blocks after the stage block (r{st['depth']})")
            genes[stage_label(k, "depth")], genes[stage_label(k, "width")] = st["depth"], st["channels"]
            for j, block in enumerate(blocks[1:]):
                layer = parse_block(_LAYER, block, f"bignas stage {k} layer {j}")
                genes[layer_label(k, j, "kernel")] = layer["kernel"]
                genes[layer_label(k, j, "expand")] = layer["expand"]
        return self.make(genes)
