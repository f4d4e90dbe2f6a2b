"""MENAS search spaces MobileNet3-MT (``menas-mt``) and MobileNet3-WS (``menas-ws``): MENAS Table 1, Fig. 3 and
the "Search Space" section (Wei et al., *Multi-trial Neural Architecture Search with Lottery Tickets*).

Network (Fig. 3): the common stem and tail of MobileNetV3-Large (Howard et al. 2019, Table 1) around five
searchable stages of inverted residuals (Sandler et al. 2018)::

    stem   conv 3x3, stride 2, 16 channels, h-swish
    s1..s5 base output channels 24, 40, 80, 112, 160 (MobileNetV3-Large's stages after its first block),
           ReLU in s1-s2 and h-swish in s3-s5 as in MobileNetV3-Large; only a stage's first layer has stride 2,
           and only when the stage down-samples
    tail   conv 1x1 960 + h-swish, global pool, linear 1280 + h-swish, dropout 0.2 (MENAS "Experimental
           Details"), classifier

MobileNetV3-Large's first block (a 16-channel depthwise-separable layer) is not part of the searchable stages
and is left out; the stem is the 3x3 conv alone.

Genes (flat labels; stages 1-based, layers 0-based), MENAS Table 1 right column:

* ``s{i}.depth`` {1..6}; ``s{i}.width`` {1/2, 5/8, 3/4, 1, 5/4, 3/2, 2}, applied to the stage's base output
  channels with ``make_divisible(base * w, 8)``; ``s{i}.down`` {no, yes}.
* ``s{i}.l{j}.kernel`` {3, 5, 7}; ``.expand`` {1..6}; ``.se`` {no, yes} (SE width ``make_divisible(mid / 4)``,
  ReLU inside and a hard-sigmoid gate as in MobileNetV3); ``.prune`` 0.7..0.975 step 0.025, plus 1.0 for
  unpruned. The pruning rate is a keep-rate on the expansion channels (Fig. 3: "pruning rates are used for
  expansion ratios"): ``mid = int(in_ch * expand * prune)`` (:func:`~.mbconv_common.pruned_channels`). The
  same rule applies to MENAS Eq. 1's truncation ``W[:C_out * p_i]``.

Down-sampling. The paper says the number of down-samples is at most 4, "the first down-sample is conducted in
the stem", and MobileNet3-WS, a sub-space of MT, down-samples in 4 of its 5 stages (yes, yes, yes, no, yes).
Both statements hold only if the limit applies to the five stages, with the stem's down-sample on top. So at
most ``max_downsample=4`` stages down-sample, which gives 5 in total at most, like MobileNetV3 (224 -> 7).
Reading it as "4 including the stem" would exclude MobileNet3-WS from MT.

Network sizes against the paper (issue 16; measured by ``benchmarks/menas_widths.py``, 224x224, 1000 classes).
MENAS reports 13.6 M parameters at 1.5 G multiply-adds for its network (Table 2) and 16.9 +- 3.0 M for the
networks random search *selects* (Table 4), under the 1 ~ 1.6 G budget: selected networks, not average ones. The
paper fixes what sets the widths here: the space is "based on MobileNetV3" and MobileNet3-WS, which has no width
multiplier, is a sub-space of MT, so width 1 gives MobileNetV3's channels; MobileNetV3-Large written in this space
has 5.48 M parameters and 212 M multiply-adds (Howard et al.: 5.4 M, 219 M). The tail: Table 3 drops from 13.6 to
12.5 M (each rounded to 0.1 M) when the 1000-way classifier becomes a CIFAR one, 1.0-1.2 M = (1000 - 100) x
1111..1333 features; 1280 gives 1.15 M, a wider head (1920: 1.73 M) does not fit. Both sizes are reachable inside
the budget (13.58 M at 1.50 G, 21.8 M at 1.12 G; tests/spaces/test_mobilenet.py). What does not match is how big
*random* networks are: 1000 uniform samples inside the budget have 4.4 +- 1.3 M (95th percentile 7.1 M, largest
11.4 M), and the largest of 200 (random search's N) averages 10.4 M, below the 16.9 +- 3.0 M random search
selected; 91 % of them down-sample in only 2-3 stages, spending their FLOPs on 28x28 / 14x14 maps rather than on
parameters. Doubling the base channels would give 8.3 +- 4.2 M (largest of 200: 28.8 M), in line with Table 4, but
contradicts the statements above and no number in the paper gives a factor, so the defaults stay MobileNetV3's.
The paper leaves open how random networks are drawn (here: every gene uniform, down-sampling and pruning genes
included), which may explain the gap; ``base_channels`` (a constructor argument, e.g. ``space: {name: menas-mt,
kwargs: {base_channels: [48, 80, 160, 224, 320]}}``) is where to try a wider calibration.

Canonical form. Several gene settings can build the same network; :meth:`MobileNet3Space.make` maps them all
to one architecture, so equal networks have equal keys and :meth:`~MobileNet3Space.cardinality` counts
distinct networks:

1. masking: layer genes beyond a stage's depth, the pruning gene of an expand-ratio-1 layer (no expansion
   conv) and genes with a single allowed value are dropped;
2. values: ``make_divisible`` maps widths 1/2 and 5/8 of 24 both to 16, and at 16 input channels
   ``(expand 4, prune 0.75)`` and ``(expand 3, prune 1)`` both give 48 mid channels; the smallest choice with
   the same effect is kept (for expansion: smallest expand ratio, then smallest pruning rate);
3. stage split: a boundary between two stages with equal output channels, equal activation and no down-sample
   (possible between s1 and s2, e.g. both at 24 channels) is invisible in the network, so layers can move
   across it; each stage, in order, takes as many of the layers as the later stages allow.

String form (grammar in :mod:`.mbconv_common`): one stage per ``-``, a header ``r<depth>_s<1|2>_w<width>`` and
then one ``k<kernel>_e<expand>_se<0|1>[_p<prune>]`` block per layer, e.g.
``r2_s2_w1,k3_e6_se0_p1,k5_e1_se1-r1_s2_w0.5,k7_e3_se1_p0.8-...``. The string shows the values that build the
network, including ones that the space fixes.
"""
from __future__ import annotations

from itertools import product
from typing import Any, Mapping, Sequence

from ..arch import Architecture, Gene
from ..errors import InvalidArchitecture, InvalidValue, ParseError
from ..nn.spec import ConvSpec, HeadSpec, MBConvSpec, NetworkSpec, make_divisible
from ..registry import register_space
from .base import Dimension, InputShape, SearchSpace
from .mbconv_common import (
    MBConvSpace,
    codec,
    fit_input,
    join_stages,
    layer_label,
    pruned_channels,
    split_stages,
    stage_label,
)

__all__ = ["MobileNet3Space", "MenasMT", "MenasWS", "PRUNE_RATES", "WIDTHS", "BASE_CHANNELS"]

#: MENAS Table 1: pruning rates (0.7, 0.975, 0.025), plus 1.0 = unpruned.
PRUNE_RATES: tuple[float, ...] = tuple(round(0.7 + 0.025 * i, 3) for i in range(12)) + (1.0,)
#: MENAS Table 1: stage width multipliers.
WIDTHS: tuple[float, ...] = (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0)
#: MobileNetV3-Large (Howard et al. 2019, Table 1): output channels of the five searchable stages, their
#: activations, and the stem / tail widths.
BASE_CHANNELS: tuple[int, ...] = (24, 40, 80, 112, 160)
STAGE_ACTS: tuple[str, ...] = ("relu", "relu", "hswish", "hswish", "hswish")
STEM_CH, HEAD_CONV_CH, HEAD_FEATURE_CH, DROPOUT = 16, 960, 1280, 0.2
SE_RATIO, SE_GATE = 0.25, "hsigmoid"
#: MENAS Table 1, MobileNet3-WS: down-sample in stages 1, 2, 3 and 5.
WS_DOWNSAMPLE: tuple[bool, ...] = (True, True, True, False, True)

_STAGE_CODEC = codec("depth", "stride", "width")
_LAYER_CODEC = codec("kernel", "expand", "se", "prune")
_LAYER_GENES = ("kernel", "expand", "se", "prune")
_Block = tuple[int, str, int, dict[str, Any]]  # (out_ch, activation, planned stride, layer gene values)


def _choices(field: str, values: Any, kind: type, ok: Any, allowed: str) -> tuple:
    """Validated, sorted, de-duplicated constructor choices."""
    try:
        items = tuple(values)
    except TypeError:
        raise InvalidValue(field, values, f"a non-empty sequence of {allowed}") from None
    if kind is float:  # ints are fine where floats are expected (widths=(1, 2))
        items = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items)
    good = all(isinstance(v, kind) and (kind is bool or not isinstance(v, bool)) and ok(v) for v in items)
    if not items or not good:
        raise InvalidValue(field, values, f"a non-empty sequence of {allowed}")
    return tuple(sorted(set(items)))


class MobileNet3Space(MBConvSpace):
    """The MENAS MobileNet3 family: Table 1 choices as constructor arguments (defaults: MobileNet3-MT).

    Every argument restricts or changes one row of Table 1; ``downsample`` gives, per stage, the allowed values
    (a bool fixes it). ``base_channels`` may name fewer than five stages (keeping the first activations); that
    is for reduced experiments and tests, not a paper setting.
    """

    name = "menas-mt"

    def __init__(self, *, kernels: Sequence[int] = (3, 5, 7), expands: Sequence[int] = (1, 2, 3, 4, 5, 6),
                 se: Sequence[bool] = (False, True), prunes: Sequence[float] = PRUNE_RATES,
                 depths: Sequence[int] = (1, 2, 3, 4, 5, 6), widths: Sequence[float] = WIDTHS,
                 downsample: Sequence[bool | Sequence[bool]] | None = None, max_downsample: int = 4,
                 base_channels: Sequence[int] = BASE_CHANNELS) -> None:
        pos_int = (int, lambda v: v > 0, "positive ints")
        self.base_channels = _choices("base_channels", base_channels, *pos_int)
        if list(self.base_channels) != list(base_channels) or len(self.base_channels) > len(STAGE_ACTS):
            raise InvalidValue("base_channels", base_channels, "1 to 5 increasing positive ints")
        n = len(self.base_channels)
        self.kernels = _choices("kernels", kernels, int, lambda v: v > 0 and v % 2 == 1, "odd positive ints")
        self.expands = _choices("expands", expands, *pos_int)
        self.se = _choices("se", se, bool, lambda v: True, "bools")
        self.prunes = _choices("prunes", prunes, float, lambda v: 0.0 < v <= 1.0, "floats in (0, 1]")
        self.depths = _choices("depths", depths, *pos_int)
        self.widths = _choices("widths", widths, float, lambda v: v > 0, "positive floats")
        downs = [(False, True)] * n if downsample is None else list(downsample)
        if len(downs) != n:
            raise InvalidValue("downsample", downsample, f"{n} entries (one per stage)")
        self.downsample = tuple((d,) if isinstance(d, bool) else _choices("downsample", d, bool, lambda v: True,
                                                                           "bools") for d in downs)
        if not isinstance(max_downsample, int) or isinstance(max_downsample, bool) or max_downsample < 0:
            raise InvalidValue("max_downsample", max_downsample, "an int >= 0")
        self.max_downsample = max_downsample
        forced = sum(d == (True,) for d in self.downsample)
        if forced > max_downsample:
            raise InvalidValue("max_downsample", max_downsample, f">= {forced} (stages that must down-sample)")
        self._mid_cache: dict[int, dict[tuple[int, float], tuple[int, float]]] = {}
        self._cardinality: int | None = None
        #: per stage (0-based): output channels -> the smallest width multiplier giving them
        self._channel_width: list[dict[int, float]] = []
        for s in range(1, n + 1):
            table: dict[int, float] = {}
            for w in self.widths:
                table.setdefault(self.stage_channels(s, w), w)
            self._channel_width.append(table)

    # ------------------------------------------------------------------------------------------- genes
    @property
    def n_stages(self) -> int:
        return len(self.base_channels)

    def dimensions(self) -> tuple[Dimension, ...]:
        """Per stage: depth, width, down, then kernel / expand / se / prune of each of ``max(depths)`` layers."""
        dims = []
        for s in range(1, self.n_stages + 1):
            dims += [Dimension(stage_label(s, "depth"), self.depths), Dimension(stage_label(s, "width"), self.widths),
                     Dimension(stage_label(s, "down"), self.downsample[s - 1])]
            for j in range(max(self.depths)):
                dims += [Dimension(layer_label(s, j, "kernel"), self.kernels),
                         Dimension(layer_label(s, j, "expand"), self.expands),
                         Dimension(layer_label(s, j, "se"), self.se),
                         Dimension(layer_label(s, j, "prune"), self.prunes)]
        return tuple(dims)

    def _value(self, genes: Mapping[str, Gene], label: str) -> Any:
        """The gene's value, or the only allowed value of a fixed dimension (``None`` if absent)."""
        if label in genes:
            return genes[label]
        choices = self._dims[label].choices
        return choices[0] if len(choices) == 1 else None

    def is_active(self, label: str, genes: Mapping[str, Gene]) -> bool:
        """Masking rules of the module docstring (depth, expand ratio 1, fixed dimensions)."""
        if len(self._dims[label].choices) == 1:
            return False
        head, _, name = label.partition(".")
        if not name.startswith("l"):
            return True
        layer, _, name = name.partition(".")
        depth = self._value(genes, f"{head}.depth")
        if int(layer[1:]) >= (max(self.depths) if depth is None else depth):
            return False
        if name == "prune":
            expand = self._value(genes, f"{head}.{layer}.expand")
            return expand is not None and expand > 1
        return True

    def check(self, arch: Architecture) -> None:
        """At most ``max_downsample`` stages down-sample (plus the stem; see the module docstring)."""
        genes = arch.to_dict()
        downs = sum(bool(self._value(genes, stage_label(s, "down"))) for s in range(1, self.n_stages + 1))
        if downs > self.max_downsample:
            raise InvalidArchitecture("down-sampling stages", downs, f"at most {self.max_downsample} (plus the stem)",
                                      where=f"space {self.name!r}")

    # ------------------------------------------------------------------------------------------- channels
    def stage_channels(self, stage: int, width: float) -> int:
        """Output channels of ``stage`` (1-based) at width multiplier ``width``: ``make_divisible(base * w, 8)``."""
        return make_divisible(self.base_channels[stage - 1] * width, 8)

    def _mid_classes(self, in_ch: int) -> dict[tuple[int, float], tuple[int, float]]:
        """``(expand, prune) -> `` the smallest ``(expand, prune)`` giving the same mid channels (expand > 1)."""
        if in_ch not in self._mid_cache:
            first: dict[int, tuple[int, float]] = {}
            table = {}
            for e, p in product([e for e in self.expands if e > 1], self.prunes):  # sorted: smallest wins
                rep = first.setdefault(pruned_channels(in_ch * e, p), (e, p))
                table[(e, p)] = rep
            self._mid_cache[in_ch] = table
        return self._mid_cache[in_ch]

    def _blocks(self, arch: Architecture, canonical_values: bool = True) -> list[_Block]:
        """The layers of ``arch`` in network order as ``(out_ch, act, planned stride, layer values)``; with
        ``canonical_values`` each ``(expand, prune)`` is replaced by the smallest pair with the same mid width."""
        g, blocks, in_ch = arch.to_dict(), [], STEM_CH
        for s, j, v in self._layers(arch):
            out = self.stage_channels(s, self._value(g, stage_label(s, "width")))
            if canonical_values and v["expand"] > 1:
                v["expand"], v["prune"] = self._mid_classes(in_ch)[(v["expand"], v["prune"])]
            stride = 2 if j == 0 and self._value(g, stage_label(s, "down")) else 1
            blocks.append((out, STAGE_ACTS[s - 1], stride, v))
            in_ch = out
        return blocks

    def _stage_fits(self, stage: int, blocks: Sequence[_Block]) -> bool:
        """Whether ``blocks`` can be all the layers of ``stage`` (1-based)."""
        out, act, stride, _ = blocks[0]
        return (len(blocks) in self.depths and act == STAGE_ACTS[stage - 1]
                and out in self._channel_width[stage - 1]
                and (stride == 2) in self.downsample[stage - 1]
                and all(b[0] == out and b[1] == act and b[2] == 1 for b in blocks[1:]))

    def _resplit(self, blocks: Sequence[_Block]) -> dict[str, Gene]:
        """Full genes of the canonical stage split of ``blocks``: each stage, in order, takes the most layers
        that still let the later stages cover the rest (a boundary between two stages with equal channels and
        activation and no down-sample is invisible in the network, so several splits build it)."""
        n, total = self.n_stages, len(blocks)
        ok = {(n + 1, total)}  # (next stage, position) from which the remaining stages can cover the rest
        for stage in range(n, 0, -1):
            ok |= {(stage, pos) for pos in range(total) for d in self.depths
                   if (stage + 1, pos + d) in ok and pos + d <= total and self._stage_fits(stage, blocks[pos:pos + d])}
        genes: dict[str, Gene] = {}
        pos = 0
        for stage in range(1, n + 1):
            d = max(d for d in self.depths if (stage + 1, pos + d) in ok and pos + d <= total
                    and self._stage_fits(stage, blocks[pos:pos + d]))
            out = blocks[pos][0]
            genes.update({stage_label(stage, "depth"): d, stage_label(stage, "down"): blocks[pos][2] == 2,
                          stage_label(stage, "width"): self._channel_width[stage - 1][out]})
            for j, (_, _, _, v) in enumerate(blocks[pos:pos + d]):
                genes.update({layer_label(stage, j, k): x for k, x in v.items() if x is not None})
            pos += d
        return genes

    def make(self, genes: Mapping[str, Any]) -> Architecture:
        """Validate and canonicalise: masking, equal-effect values, and the canonical stage split (module
        docstring), so that architectures building the same network are equal."""
        arch = super().make(genes)
        canonical = SearchSpace.make(self, self._resplit(self._blocks(arch)))
        return arch if canonical == arch else canonical

    # ------------------------------------------------------------------------------------------- network
    def _layers(self, arch: Architecture) -> list[tuple[int, int, dict[str, Any]]]:
        """``(stage, layer, values)`` of every layer, values including fixed dimensions (``prune`` None at e=1)."""
        g = arch.to_dict()
        return [(s, j, {n: self._value(g, layer_label(s, j, n)) for n in _LAYER_GENES})
                for s in range(1, self.n_stages + 1) for j in range(self._value(g, stage_label(s, "depth")))]

    def spec(self, arch: Architecture, input_shape: InputShape | None = None,
             num_classes: int | None = None) -> NetworkSpec:
        """The network of Fig. 3 for ``arch`` (validated), adapted to ``input_shape`` by :func:`fit_input`."""
        return self._network_spec(self.validate(arch), *self.resolve_input(input_shape, num_classes))

    def _network_spec(self, arch: Architecture, shape: InputShape, classes: int) -> NetworkSpec:
        """:meth:`spec` of an already validated ``arch`` (values taken as they are)."""
        blocks, in_ch = [], STEM_CH
        for out, act, stride, v in self._blocks(arch, canonical_values=False):
            expand = v["expand"] > 1
            mid = pruned_channels(in_ch * v["expand"], v["prune"]) if expand else in_ch
            se_ch = make_divisible(mid * SE_RATIO, 8) if v["se"] else 0
            blocks.append(MBConvSpec(in_ch=in_ch, mid_ch=mid, out_ch=out, kernel=v["kernel"], stride=stride,
                                     se_ch=se_ch, act=act, se_gate=SE_GATE, expand=expand))
            in_ch = out
        stem = ConvSpec(in_ch=shape[0], out_ch=STEM_CH, kernel=3, stride=2, act="hswish")
        head = HeadSpec(in_ch=in_ch, conv_ch=HEAD_CONV_CH, feature_ch=HEAD_FEATURE_CH, num_classes=classes,
                        act="hswish", dropout=DROPOUT)
        return fit_input(shape, stem, blocks, head)

    # ------------------------------------------------------------------------------------------- strings
    def format(self, arch: Architecture) -> str:
        """``r2_s2_w1,k3_e6_se0_p1,...-...`` (see the module docstring)."""
        g = self.validate(arch).to_dict()
        stages: list[list[str]] = []
        for s in range(1, self.n_stages + 1):
            stages.append([_STAGE_CODEC.format({
                "depth": self._value(g, stage_label(s, "depth")),
                "stride": 2 if self._value(g, stage_label(s, "down")) else 1,
                "width": self._value(g, stage_label(s, "width"))})])
        for s, _, v in self._layers(Architecture(self.name, g)):
            stages[s - 1].append(_LAYER_CODEC.format({k: x for k, x in v.items() if x is not None}))
        return join_stages(stages)

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; :class:`ParseError` on malformed text, ``InvalidArchitecture`` on bad values."""
        if not isinstance(text, str):
            raise ParseError(f"{self.name} architecture", repr(text), "a string")
        genes: dict[str, Gene] = {}
        for s, blocks in enumerate(split_stages(text, f"{self.name} architecture", self.n_stages), 1):
            head = _STAGE_CODEC.parse(blocks[0], f"stage {s} header")
            for field in ("depth", "stride", "width"):
                if field not in head:
                    raise ParseError(f"stage {s} header", blocks[0], _STAGE_CODEC.expected())
            if head["stride"] not in (1, 2):
                raise ParseError(f"stage {s} header token", f"s{head['stride']}", "s1 or s2")
            if head["depth"] not in self.depths:
                raise InvalidArchitecture(f"gene {stage_label(s, 'depth')!r}", head["depth"], self.depths,
                                          where=f"space {self.name!r}")
            if len(blocks) - 1 != head["depth"]:
                raise ParseError(f"stage {s}", ",".join(blocks), f"a header and {head['depth']} layer blocks")
            genes.update({stage_label(s, "depth"): head["depth"], stage_label(s, "width"): head["width"],
                          stage_label(s, "down"): head["stride"] == 2})
            for j, block in enumerate(blocks[1:]):
                layer = _LAYER_CODEC.parse(block, f"stage {s} layer {j}")
                for field in ("kernel", "expand", "se"):
                    if field not in layer:
                        raise ParseError(f"stage {s} layer {j}", block, _LAYER_CODEC.expected())
                genes.update({layer_label(s, j, k): x for k, x in layer.items()})
        return self.make(genes)

    # ------------------------------------------------------------------------------------------- extremes
    def _down_pattern(self, smallest: bool) -> list[bool]:
        """Fewest FLOPs: down-sample as many stages as allowed, as early as possible; most FLOPs: as few."""
        forced = [d == (True,) for d in self.downsample]
        if not smallest:
            return forced
        budget = self.max_downsample - sum(forced)  # stages that must down-sample keep their share
        out = []
        for d, must in zip(self.downsample, forced):
            optional = not must and True in d and budget > 0
            budget -= optional
            out.append(must or optional)
        return out

    def _extreme(self, smallest: bool) -> Architecture:
        pick = min if smallest else max
        genes: dict[str, Gene] = {}
        for s, down in enumerate(self._down_pattern(smallest), 1):
            genes.update({stage_label(s, "depth"): pick(self.depths), stage_label(s, "width"): pick(self.widths),
                          stage_label(s, "down"): down})
            for j in range(pick(self.depths)):
                genes.update({layer_label(s, j, "kernel"): pick(self.kernels),
                              layer_label(s, j, "expand"): pick(self.expands),
                              layer_label(s, j, "se"): pick(self.se), layer_label(s, j, "prune"): pick(self.prunes)})
        return self.make(genes)

    def smallest(self) -> Architecture:
        """Fewest FLOPs: every choice at its minimum, down-sampling as early and as often as allowed (FLOPs grow
        with every channel count, kernel, depth and feature-map size, so these minima hold jointly)."""
        return self._extreme(True)

    def largest(self) -> Architecture:
        """Most FLOPs: every choice at its maximum and as few down-sampling stages as allowed."""
        return self._extreme(False)

    # ------------------------------------------------------------------------------------------- counting
    def _layer_variants(self, in_ch: int) -> int:
        """Distinct layers on ``in_ch`` input channels: kernels x SE x (expand-1 layer + distinct mid widths)."""
        mids = {pruned_channels(in_ch * e, p) for e in self.expands if e > 1 for p in self.prunes}
        return len(self.kernels) * len(self.se) * ((1 in self.expands) + len(mids))

    def _next_blocks(self, configs: frozenset, last: int) -> dict[tuple[int, str, int], frozenset]:
        """One step of the block-sequence automaton: from the set of ``(stage, layers so far)`` configurations
        reachable by a prefix ending in ``last`` channels, every next block ``(out_ch, act, stride)`` and the
        configurations it leads to (continue the stage with a stride-1 block, or start the next stage)."""
        steps: dict[tuple[int, str, int], set] = {}
        for stage, layers in configs:
            if stage > 0 and layers < max(self.depths):
                steps.setdefault((last, STAGE_ACTS[stage - 1], 1), set()).add((stage, layers + 1))
            if stage < self.n_stages and (stage == 0 or layers in self.depths):
                for out in self._channel_width[stage]:  # _channel_width[stage] is stage + 1's (0-based list)
                    for down in self.downsample[stage]:
                        steps.setdefault((out, STAGE_ACTS[stage], 2 if down else 1), set()).add((stage + 1, 1))
        return {sym: frozenset(nxt) for sym, nxt in steps.items()}

    def cardinality(self) -> int:
        """Exact number of distinct canonical architectures, which is the number of distinct networks.

        A network is its sequence of blocks. Each block is ``(out_ch, act, stride)`` plus one of
        ``_layer_variants(in_ch)`` layer settings. The count runs a subset construction over the stage
        automaton, so a sequence that several stage splits can build is counted once. Down-samples are
        capped at ``max_downsample``.
        """
        if self._cardinality is None:
            n, total = self.n_stages, 0
            states = {(frozenset({(0, 0)}), STEM_CH, 0): 1}  # (configurations, last out_ch, down-samples)
            for _ in range(n * max(self.depths)):
                nxt: dict[tuple[frozenset, int, int], int] = {}
                for (configs, last, downs), count in states.items():
                    ways = count * self._layer_variants(last)
                    for (out, _, stride), follow in self._next_blocks(configs, last).items():
                        if downs + (stride == 2) <= self.max_downsample:
                            key = (follow, out, downs + (stride == 2))
                            nxt[key] = nxt.get(key, 0) + ways
                states = nxt
                total += sum(c for (cf, _, _), c in states.items() if any(s == n and d in self.depths for s, d in cf))
            self._cardinality = total
        return self._cardinality

    # ------------------------------------------------------------------------------------------- pruning
    def prunable_layers(self, arch: Architecture) -> list[str]:
        """Ids ``"s{i}.l{j}"`` of the layers with a 1x1 expansion (expand ratio > 1), in network order: the
        layers a MENAS pruning proposal ``(p_1, ..., p_n)`` addresses (Sec. "Exploring Lottery Tickets")."""
        return [f"s{s}.l{j}" for s, j, v in self._layers(self.validate(arch)) if v["expand"] > 1]

    def block_positions(self, arch: Architecture) -> list[tuple[int, int]]:
        """``(stage, layer)`` of every block :meth:`build` makes, in order (stages 1-based, layers 0-based)."""
        return [(s, j) for s, j, _ in self._layers(self.validate(arch))]

    def layer_modules(self, arch: Architecture) -> dict[str, str]:
        """Layer id ``"s{i}.l{j}"`` -> module name ``"blocks.{k}"`` in the network :meth:`build` makes."""
        return {f"s{s}.l{j}": f"blocks.{k}" for k, (s, j, _) in enumerate(self._layers(self.validate(arch)))}

    def with_pruning(self, arch: Architecture, rates: Sequence[float]) -> Architecture:
        """``arch`` with the pruning genes of :meth:`prunable_layers` set to ``rates`` (keep-rates of the full
        expansion, from ``prunes``), canonicalised. Pruning only removes channels (Eq. 1 truncates), so a rate
        that would widen a layer beyond its current mid channels is rejected."""
        arch = self.validate(arch)
        layers = self.prunable_layers(arch)
        rates = list(rates)
        if len(rates) != len(layers):
            raise InvalidValue("pruning rates", len(rates), f"{len(layers)} rates (one per layer in {layers})")
        before = {f"s{s}.l{j}": b.mid_ch for (s, j, _), b in zip(self._layers(arch), self.spec(arch).blocks)}
        pruned = self.make({**arch.to_dict(), **{f"{lid}.prune": r for lid, r in zip(layers, rates)}})
        after = {f"s{s}.l{j}": b.mid_ch for (s, j, _), b in zip(self._layers(pruned), self.spec(pruned).blocks)}
        for lid, rate in zip(layers, rates):
            if after[lid] > before[lid]:
                raise InvalidValue(f"pruning rate of {lid}", rate, f"a rate keeping <= {before[lid]} channels "
                                   "(the layer's current width; pruning only removes channels)")
        return pruned


@register_space("menas-mt")
class MenasMT(MobileNet3Space):
    """MobileNet3-MT, the MENAS multi-trial space (Table 1, right column). Defaults: input (3, 224, 224), 1000
    classes. Constructor arguments restrict Table 1's choices (see :class:`MobileNet3Space`)."""

    name = "menas-mt"


@register_space("menas-ws")
class MenasWS(MobileNet3Space):
    """MobileNet3-WS (MENAS Table 1, left column; used for the rank-consistency study, Table 5): kernel
    {3, 5, 7}, expand ratio {3, 6}, SE always, depth 4, no width multiplier, no pruning, down-sampling in
    stages 1, 2, 3 and 5. A sub-space of MobileNet3-MT."""

    name = "menas-ws"

    def __init__(self, *, kernels: Sequence[int] = (3, 5, 7), expands: Sequence[int] = (3, 6),
                 se: Sequence[bool] = (True,), prunes: Sequence[float] = (1.0,), depths: Sequence[int] = (4,),
                 widths: Sequence[float] = (1.0,),
                 downsample: Sequence[bool | Sequence[bool]] | None = WS_DOWNSAMPLE, max_downsample: int = 4,
                 base_channels: Sequence[int] = BASE_CHANNELS) -> None:
        super().__init__(kernels=kernels, expands=expands, se=se, prunes=prunes, depths=depths, widths=widths,
                         downsample=downsample, max_downsample=max_downsample, base_channels=base_channels)
