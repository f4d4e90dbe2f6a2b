"""ProxylessNAS-style layer-wise operation spaces of PAD-NAS (Xia et al. 2021, Sec. 4.1, Tables 1-2):
``proxyless-basic`` and ``proxyless-large``.

The macro network is fixed (Table 1): a 3x3 stem conv (stride 2), 22 search block structures (SBS) in seven
stages, a 1x1 head conv to 1280 channels, global average pooling and the classifier. Every SBS layer chooses one
operation; the channel plan never changes.

=====  ==================  ======  ======  ==========================================
stage  out channels        layers  stride  layer genes
=====  ==================  ======  ======  ==========================================
stem   32 (large: 16)      1       2       -
1      16                  1       1       ``l0.op``: IBConv_K{3,5,7}_E1 (fixed E1)
2      32 (large: 24)      4       2       ``l1.op`` ... ``l4.op``
3      40                  4       2       ``l5.op`` ... ``l8.op``
4      80                  4       2       ``l9.op`` ... ``l12.op``
5      96                  4       1       ``l13.op`` ... ``l16.op``
6      192                 4       2       ``l17.op`` ... ``l20.op``
7      320                 1       1       ``l21.op``
head   1280                1       1       -
=====  ==================  ======  ======  ==========================================

Operations (Table 2) are written like their block strings: ``k3_e6`` is IBConv_K3_E6 (an inverted bottleneck of
MobileNetV2 with a 3x3 depthwise kernel and expansion 6; ReLU6, no SE, no swish: Sec. 4.1), ``identity`` skips the
layer. The basic space offers K{3,5,7} x E{3,6}; the large one K{3,5,7} x E{1..6}; both add ``identity``, which is
forbidden in the first layer of every stage, and the first SBS has its expansion fixed to 1 (so it chooses among
``k3_e1``, ``k5_e1``, ``k7_e1``). This gives the paper's sizes: 3 x 6^6 x 7^15 (basic) and 3 x 18^6 x 19^15 (large).

Layer-wise operation sets (PAD-NAS Sec. 3.2, Algorithm 1): the constructor takes ``op_sets`` (gene label ->
allowed operations; default: the full sets above) and :meth:`ProxylessSpace.restrict` returns a space with
smaller sets, which is how PAD-NAS prunes operations whose frequency is at most ``P_th``. A restricted space keeps
its registered name, so architectures move freely between the stages of a progressive search.

Identity semantics: the gene is the operation *per layer* (ProxylessNAS / SPOS choice blocks, each layer with its
own weights), so ``k3_e6, identity`` and ``identity, k3_e6`` in one stage are different architectures even though
their standalone networks are equal; identity layers are skipped entirely when the network is built.
Cardinality is therefore the product of the per-layer set sizes.

String form: one ``-``-separated group per stage, one ``,``-separated operation per layer::

    k3_e1-k5_e6,identity,k3_e3,identity-...-k7_e6
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Sequence

from ..arch import Architecture, Gene
from ..errors import ParseError
from ..nn.analytic import spec_costs
from ..nn.spec import ConvSpec, HeadSpec, MBConvSpec, NetworkSpec
from ..registry import register_space
from .base import Dimension, InputShape, checked_op_sets
from .bignas import parse_block
from .mbconv_common import MBConvSpace, codec, fit_input, join_stages, split_stages

__all__ = ["IDENTITY", "ProxylessVariant", "BASIC", "LARGE", "op_name", "op_fields", "ProxylessSpace",
           "ProxylessBasicSpace", "ProxylessLargeSpace", "DcnasMBConvSpace", "DCNAS"]

IDENTITY = "identity"
_OP = codec("kernel", "expand")


def op_name(kernel: int, expand: int) -> str:
    """The operation string of IBConv_K{kernel}_E{expand}: ``op_name(3, 6) == "k3_e6"``."""
    return _OP.format({"kernel": kernel, "expand": expand})


def op_fields(op: str) -> tuple[int, int]:
    """``(kernel, expand)`` of an operation string (inverse of :func:`op_name`); ``ParseError`` otherwise."""
    fields = parse_block(_OP, op, "operation")
    return int(fields["kernel"]), int(fields["expand"])


@dataclass(frozen=True)
class ProxylessVariant:
    """One column of Table 1 (stem width, per-stage ``(out channels, layers, stride)``) with its Table 2 ops."""

    stem: int
    stages: tuple[tuple[int, int, int], ...]
    ops: tuple[str, ...]
    first_ops: tuple[str, ...] = tuple(op_name(k, 1) for k in (3, 5, 7))


_STAGES = ((16, 1, 1), (32, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
#: basic search space: Table 1 without brackets, Table 2 left column (same as ProxylessNAS)
BASIC = ProxylessVariant(32, _STAGES, tuple(op_name(k, e) for k in (3, 5, 7) for e in (3, 6)))
#: large search space: Table 1 bracketed widths (16-16-24), Table 2 both columns (expansion 1..6)
LARGE = ProxylessVariant(16, ((16, 1, 1), (24, 4, 2)) + _STAGES[2:],
                         tuple(op_name(k, e) for k in (3, 5, 7) for e in range(1, 7)))


class ProxylessSpace(MBConvSpace):
    """A PAD-NAS / ProxylessNAS space with per-layer operation sets (subclasses fix the :class:`ProxylessVariant`).

    ``op_sets`` maps gene labels (``"l3.op"``) to the allowed operations of that layer; layers left out keep their
    full set. Operation order is always the canonical one of the full set, whatever order is given.
    """

    variant: ProxylessVariant = BASIC
    supernet = "choice"  # one module per candidate op (SPOS / PAD-NAS), not sliced like the other MBConv spaces
    act = "relu6"      # MobileNetV2 / ProxylessNAS; PAD-NAS uses neither SE nor swish (Sec. 4.1)
    head_width = 1280  # Table 1: 1x1 conv to 1280
    dropout = 0.0      # the paper names no classifier dropout
    se_ratio = 0.0     # squeeze-and-excite width as a fraction of the block input (PAD-NAS: none)

    def __init__(self, op_sets: Mapping[str, Sequence[str]] | None = None) -> None:
        self._sets = self._checked(self._full_sets, {} if op_sets is None else op_sets)

    # ------------------------------------------------------------------------------------------------ layout
    @cached_property
    def _layers(self) -> tuple[tuple[int, int, int, bool], ...]:
        """Per layer: (input channels, output channels, planned stride, first layer of its stage)."""
        out, channels = [], self.variant.stem
        for width, repeats, stride in self.variant.stages:
            for j in range(repeats):
                out.append((channels, width, stride if j == 0 else 1, j == 0))
                channels = width
        return tuple(out)

    @cached_property
    def _full_sets(self) -> dict[str, tuple[str, ...]]:
        """The full operation set of every layer (Sec. 4.1 rules for the first SBS and stage-first layers)."""
        sets = {}
        for i, (_, _, _, first) in enumerate(self._layers):
            ops = self.variant.first_ops if i == 0 else self.variant.ops if first else (IDENTITY,) + self.variant.ops
            sets[f"l{i}.op"] = ops
        return sets

    def _checked(self, base: Mapping[str, tuple[str, ...]],
                 op_sets: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
        """``base`` with the layers of ``op_sets`` replaced by validated subsets (canonical order)."""
        return checked_op_sets(base, op_sets, f"space {self.name!r}")

    def op_sets(self) -> dict[str, tuple[str, ...]]:
        """The current operation set of every layer, by gene label (``{"l0.op": ("k3_e1", ...), ...}``)."""
        return dict(self._sets)

    def restrict(self, op_sets: Mapping[str, Sequence[str]]) -> "ProxylessSpace":
        """A new space whose layers in ``op_sets`` keep only the given operations (PAD-NAS pruning, Alg. 1 l. 7).

        Each given set must be a non-empty subset of the layer's current set; other layers are unchanged.
        """
        sets = self._checked(self._sets, op_sets)
        return type(self)(sets)

    # ------------------------------------------------------------------------------------------------ genes
    def dimensions(self) -> tuple[Dimension, ...]:
        """One ``l{i}.op`` dimension per SBS layer, choices = its current operation set."""
        return tuple(Dimension(label, ops) for label, ops in self._sets.items())

    def cardinality(self) -> int:
        """Product of the per-layer set sizes (identity positions distinguish architectures; module docstring)."""
        total = 1
        for ops in self._sets.values():
            total *= len(ops)
        return total

    @cached_property
    def _extremes(self) -> tuple[Architecture, Architecture]:
        """(smallest, largest) by FLOPs at the default input. The channel plan is fixed, so a network's FLOPs are
        a sum of per-layer terms and the per-layer minimum / maximum is the global one."""
        costs: dict[str, list[int]] = {label: [] for label in self._sets}
        for p in range(max(len(ops) for ops in self._sets.values())):
            arch = self.make({label: ops[min(p, len(ops) - 1)] for label, ops in self._sets.items()})
            blocks = iter(c.flops for name, c in spec_costs(self.spec(arch)) if name.startswith("blocks."))
            for label, ops in self._sets.items():  # identity layers have no block, hence cost 0
                if p < len(ops):
                    costs[label].append(0 if ops[p] == IDENTITY else next(blocks))
                elif arch[label] != IDENTITY:
                    next(blocks)
        lo = {label: ops[c.index(min(c))] for (label, ops), c in zip(self._sets.items(), costs.values())}
        hi = {label: ops[c.index(max(c))] for (label, ops), c in zip(self._sets.items(), costs.values())}
        return self.make(lo), self.make(hi)

    def smallest(self) -> Architecture:
        """The architecture with the fewest FLOPs (identity wherever allowed, else the cheapest op)."""
        return self._extremes[0]

    def largest(self) -> Architecture:
        """The architecture with the most FLOPs."""
        return self._extremes[1]

    # ------------------------------------------------------------------------------------------------ network
    def spec(self, arch: Architecture, input_shape: InputShape | None = None,
             num_classes: int | None = None) -> NetworkSpec:
        """Table 1 with each layer's operation; identity layers are left out of the block list."""
        g = self.validate(arch).to_dict()
        (c, h, w), classes = self.resolve_input(input_shape, num_classes)
        blocks = []
        for i, (in_ch, out_ch, stride, _) in enumerate(self._layers):
            op = str(g[f"l{i}.op"])
            if op == IDENTITY:
                continue
            k, e = op_fields(op)
            blocks.append(MBConvSpec(in_ch=in_ch, mid_ch=in_ch * e, out_ch=out_ch, kernel=k, stride=stride,
                                     se_ch=max(1, int(in_ch * self.se_ratio)) if self.se_ratio else 0,
                                     act=self.act, expand=e != 1))
        stem = ConvSpec(c, self.variant.stem, 3, 2, self.act)
        head = HeadSpec(self.variant.stages[-1][0], self.head_width, 0, classes, self.act, self.dropout)
        return fit_input((c, h, w), stem, blocks, head)

    # ------------------------------------------------------------------------------------------------ strings
    def format(self, arch: Architecture) -> str:
        """``op,op,...-op,...`` (one group per stage; module docstring)."""
        g = self.validate(arch).to_dict()
        stages, i = [], 0
        for _, repeats, _ in self.variant.stages:
            stages.append([str(g[f"l{j}.op"]) for j in range(i, i + repeats)])
            i += repeats
        return join_stages(stages)

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; :class:`ParseError` for malformed text, ``InvalidArchitecture`` (naming the
        layer gene) for an operation the layer does not allow."""
        if not isinstance(text, str):
            raise ParseError(f"{self.name} architecture", repr(text), "a string")
        stages = split_stages(text, f"{self.name} architecture", len(self.variant.stages))
        genes: dict[str, Gene] = {}
        for k, (blocks, (_, repeats, _)) in enumerate(zip(stages, self.variant.stages), 1):
            if len(blocks) != repeats:
                raise ParseError(f"{self.name} stage {k}", ",".join(blocks), f"{repeats} operations")
            for block in blocks:
                genes[f"l{len(genes)}.op"] = block if block == IDENTITY else op_name(*op_fields(block))
        return self.make(genes)


@register_space("proxyless-basic")
class ProxylessBasicSpace(ProxylessSpace):
    """PAD-NAS basic search space (= ProxylessNAS's): K{3,5,7} x E{3,6} + identity, 3 x 6^6 x 7^15 networks."""

    name = "proxyless-basic"
    variant = BASIC


@register_space("proxyless-large")
class ProxylessLargeSpace(ProxylessSpace):
    """PAD-NAS large search space: K{3,5,7} x E{1..6} + identity, widths 16-16-24, 3 x 18^6 x 19^15 networks."""

    name = "proxyless-large"
    variant = LARGE


#: DCNAS's MBConv space (dcnas.txt Sec. 4.1): K{3,5} x E{4,5,6} in every one of L = 16 layers (K = 6 operators)
DCNAS = ProxylessVariant(16, ((24, 4, 2), (40, 4, 2), (80, 4, 2), (112, 2, 1), (192, 2, 2)),
                         tuple(op_name(k, e) for k in (3, 5) for e in (4, 5, 6)))


@register_space("dcnas-mbconv")
class DcnasMBConvSpace(ProxylessSpace):
    """The search space of DCNAS (dcnas.txt Sec. 4.1): "MBConv and squeeze-excitation modules ... 6 basic
    operators, MBConv with kernel sizes of 3, 5 and expansion rates of 4, 5, 6" over L = 16 layers (``l0.op`` ..
    ``l15.op``; no identity, so 6^16 networks). The paper gives neither the channel plan nor the stem; here the
    stem is 16 channels and the stages (out channels, layers, stride) are 24x4/2, 40x4/2, 80x4/2, 112x2/1,
    192x2/2, with SE (ratio 0.25 of the block input, sigmoid gate) and swish as in EfficientNet-B0's blocks."""

    name = "dcnas-mbconv"
    variant = DCNAS
    act = "swish"
    se_ratio = 0.25

    @cached_property
    def _full_sets(self) -> dict[str, tuple[str, ...]]:
        return {f"l{i}.op": self.variant.ops for i in range(len(self._layers))}
