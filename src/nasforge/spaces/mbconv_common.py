"""Shared parts of every MBConv search space: the :class:`MBConvSpace` base and the block-string codec.

An MBConv space only has to turn an architecture into a :class:`~nasforge.nn.spec.NetworkSpec`
(:meth:`MBConvSpace.spec`); :meth:`~MBConvSpace.build`, :meth:`~MBConvSpace.flops` and
:meth:`~MBConvSpace.params` follow from that one value, so the module and the cost formulas cannot disagree.

Block strings
-------------
Architectures print as timm-style block strings (timm ``_decode_block_str``), but with a codec that is
table-driven, paired (``parse(format(x)) == x``) and strict. Grammar::

    arch   := stage ( "-" stage )*           stages, in network order
    stage  := block ( "," block )*            e.g. a stage header block, then one block per layer
    block  := [kind "_"] token ( "_" token )*
    token  := PREFIX VALUE                    PREFIX from the codec's table, longest prefix wins
    VALUE  := INT | DECIMAL | "0" | "1"       int, float (no exponent, no sign) or bool

The usual tokens (:data:`TOKENS`): ``k3`` kernel, ``e6`` expand ratio, ``se1`` squeeze-and-excite on/off,
``p0.9`` pruning keep-rate, ``c24`` output channels, ``r2`` repeats (depth), ``s2`` stride, ``w1.25`` width
multiplier. A space picks the tokens it needs with :func:`codec`. Floats are written without trailing zeros
(``w1``, ``p0.925``). Unknown prefixes, bad values and repeated tokens raise
:class:`~nasforge.errors.ParseError` naming the token.

Labels
------
Genes are flat: stage genes ``s{stage}.{name}`` (stages 1-based) and layer genes ``s{stage}.l{layer}.{name}``
(layers 0-based), built with :func:`stage_label` and :func:`layer_label`.

Small inputs
------------
A space describes its network at the default input (e.g. 224x224, strides planned for it). :func:`fit_input`
adapts that plan to the actual input: the stem's input channels become ``input_shape[0]``, and the planned
strides (stem first, then every block in order) go through :func:`nasforge.nn.spec.stride_plan` on
``min(H, W)``, which turns a stride-2 step into stride 1 once it would shrink the map below 4 pixels. At 224
nothing changes; at 32x32 the first three down-samples are kept (32 -> 16 -> 8 -> 4) and later ones become
stride 1; at 28x28 likewise (28 -> 14 -> 7 -> 4). A block whose stride became 1 with ``in_ch == out_ch`` then
has an identity skip, as the spec's rule says.
"""
from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Mapping, Sequence

from ..arch import Architecture, Gene
from ..errors import InvalidValue, ParseError
from ..nn.analytic import spec_flops, spec_params
from ..nn.mbconv import build_network
from ..nn.spec import ConvSpec, HeadSpec, MBConvSpec, NetworkSpec, stride_plan
from .base import InputShape, SearchSpace

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "Token", "TOKENS", "BlockCodec", "codec", "format_value", "parse_value",
    "STAGE_SEP", "BLOCK_SEP", "join_stages", "split_stages",
    "stage_label", "layer_label", "pruned_channels", "fit_input", "MBConvSpace",
]

STAGE_SEP = "-"
BLOCK_SEP = ","
_INT = re.compile(r"\d+")
_FLOAT = re.compile(r"\d+(\.\d+)?")
_KINDS = {int: "an int", float: "a decimal number", bool: "0 or 1"}


@dataclass(frozen=True)
class Token:
    """One row of a codec table: ``PREFIX VALUE`` stands for field ``field`` of type ``kind`` (int/float/bool)."""

    prefix: str
    field: str
    kind: type


#: The common tokens, by field name.
TOKENS: dict[str, Token] = {t.field: t for t in (
    Token("k", "kernel", int),
    Token("e", "expand", int),
    Token("se", "se", bool),
    Token("p", "prune", float),
    Token("c", "channels", int),
    Token("r", "depth", int),
    Token("s", "stride", int),
    Token("w", "width", float),
)}


def format_value(value: Gene, kind: type) -> str:
    """``value`` as written in a block string: ``1``/``0`` for bools, plain decimals without trailing zeros."""
    if kind is bool:
        return "1" if value else "0"
    if kind is float:
        return f"{float(value):.6f}".rstrip("0").rstrip(".")
    return str(int(value))


def parse_value(text: str, kind: type) -> Gene | None:
    """Inverse of :func:`format_value`; ``None`` when ``text`` is not a value of ``kind``."""
    if kind is bool:
        return {"0": False, "1": True}.get(text)
    if kind is int:
        return int(text) if _INT.fullmatch(text) else None
    return float(text) if _FLOAT.fullmatch(text) else None


class BlockCodec:
    """A table-driven, paired formatter/parser of one block string (``k3_e6_se1``) <-> ``{field: value}``.

    ``kind`` is an optional leading word (timm's block type, e.g. ``"ir"``): written by :meth:`format`, and
    optional on input. Fields are written in table order; fields missing from the mapping are skipped.
    """

    def __init__(self, tokens: Sequence[Token], kind: str | None = None) -> None:
        prefixes = [t.prefix for t in tokens]
        if len(set(prefixes)) != len(prefixes) or len({t.field for t in tokens}) != len(tokens):
            raise ValueError(f"codec tokens must have distinct prefixes and fields: {prefixes}")
        self.tokens = tuple(tokens)
        self.kind = kind
        self._by_prefix = sorted(self.tokens, key=lambda t: -len(t.prefix))  # longest prefix wins

    def expected(self) -> str:
        """The grammar of one block, for error messages."""
        head = f"[{self.kind}_]" if self.kind else ""
        return head + "_".join(f"{t.prefix}<{t.field}>" for t in self.tokens)

    def format(self, fields: Mapping[str, Gene]) -> str:
        """The block string of ``fields`` (unknown field names raise ``InvalidValue``)."""
        known = {t.field for t in self.tokens}
        for name in fields:
            if name not in known:
                raise InvalidValue("block field", name, sorted(known))
        parts = [self.kind] if self.kind else []
        parts += [t.prefix + format_value(fields[t.field], t.kind) for t in self.tokens if t.field in fields]
        return "_".join(parts)

    def parse(self, text: str, what: str = "block") -> dict[str, Gene]:
        """``{field: value}`` of a block string; :class:`ParseError` names the offending token."""
        parts = text.strip().split("_")
        if self.kind and parts and parts[0] == self.kind:
            parts = parts[1:]
        if not parts or parts == [""]:
            raise ParseError(what, text, self.expected())
        out: dict[str, Gene] = {}
        for part in parts:
            token = next((t for t in self._by_prefix if part.startswith(t.prefix)), None)
            if token is None:
                raise ParseError(f"{what} token", part, f"one of the prefixes {[t.prefix for t in self.tokens]}")
            value = parse_value(part[len(token.prefix):], token.kind)
            if value is None:
                raise ParseError(f"{what} token", part, f"{token.prefix}<{token.field}: {_KINDS[token.kind]}>")
            if token.field in out:
                raise ParseError(f"{what} token", part, f"{token.prefix!r} at most once per block")
            out[token.field] = value
        return out


def codec(*fields: str, kind: str | None = None) -> BlockCodec:
    """A :class:`BlockCodec` over the common :data:`TOKENS` named by ``fields``, in that order."""
    return BlockCodec([TOKENS[f] for f in fields], kind)


def join_stages(stages: Sequence[Sequence[str]]) -> str:
    """``[["r2_s2", "k3_e6"], ...]`` -> ``"r2_s2,k3_e6-..."``."""
    return STAGE_SEP.join(BLOCK_SEP.join(blocks) for blocks in stages)


def split_stages(text: str, what: str, n_stages: int | None = None) -> list[list[str]]:
    """Inverse of :func:`join_stages`; checks the number of stages when ``n_stages`` is given."""
    text = text.strip()
    stages = [s.split(BLOCK_SEP) for s in text.split(STAGE_SEP)]
    if n_stages is not None and len(stages) != n_stages:
        raise ParseError(what, text, f"{n_stages} stages separated by {STAGE_SEP!r} (got {len(stages)})")
    for i, blocks in enumerate(stages, 1):
        if any(not b.strip() for b in blocks):
            raise ParseError(f"{what} stage {i}", BLOCK_SEP.join(blocks),
                             f"blocks separated by {BLOCK_SEP!r}, none empty")
    return [[b.strip() for b in blocks] for blocks in stages]


def stage_label(stage: int, name: str) -> str:
    """Gene label of a stage gene: ``stage_label(1, "depth") == "s1.depth"`` (stages are 1-based)."""
    return f"s{stage}.{name}"


def layer_label(stage: int, layer: int, name: str) -> str:
    """Gene label of a layer gene: ``layer_label(1, 0, "kernel") == "s1.l0.kernel"`` (layers are 0-based)."""
    return f"s{stage}.l{layer}.{name}"


def pruned_channels(full: int, rate: float) -> int:
    """Channels kept when ``full`` channels are pruned with keep-rate ``rate``: ``int(full * rate)``.

    MENAS Eq. 1 truncates a weight to ``W[:C_out * p_i]``; the lottery-ticket step must slice with this same
    function. A tiny epsilon guards against binary rounding (``40 * 0.975`` is 39, not 38); never below 1.
    """
    return max(1, int(full * rate + 1e-9))


def fit_input(input_shape: InputShape, stem: ConvSpec, blocks: Sequence[MBConvSpec], head: HeadSpec) -> NetworkSpec:
    """The :class:`NetworkSpec` of a network planned for the default input, adapted to ``input_shape``.

    The stem reads ``input_shape[0]`` channels; the planned strides (stem, then blocks) are passed through
    :func:`~nasforge.nn.spec.stride_plan` on ``min(H, W)`` (see the module docstring).
    """
    c, h, w = input_shape
    strides = stride_plan(min(h, w), [stem.stride] + [b.stride for b in blocks])
    stem = replace(stem, in_ch=c, stride=strides[0])
    blocks = tuple(b if b.stride == s else replace(b, stride=s) for b, s in zip(blocks, strides[1:]))
    return NetworkSpec((c, h, w), stem, blocks, head)


class MBConvSpace(SearchSpace):
    """Abstract base of the MBConv search spaces (MENAS MobileNet3-MT/WS, BigNAS, ProxylessNAS-style).

    Subclasses implement :meth:`spec`; networks, FLOPs and parameters come from it. Small inputs are handled
    by :func:`fit_input`: the stem takes ``input_shape[0]`` channels and stride-2 steps that would shrink the
    feature map below 4x4 become stride 1 (front to back), so 28x28x1 and 32x32x3 inputs keep a usable map.
    """

    supernet = "elastic"

    @abstractmethod
    def spec(self, arch: Architecture, input_shape: InputShape | None = None,
             num_classes: int | None = None) -> NetworkSpec:
        """The network of ``arch`` for ``input_shape`` (C, H, W) and ``num_classes`` (defaults of the space)."""

    def build(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> "nn.Module":
        """A standalone :class:`~nasforge.nn.mbconv.MBConvNet` for ``arch`` (freshly initialised)."""
        return build_network(self.spec(arch, input_shape, num_classes))

    def flops(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> int:
        """Analytic FLOPs at batch 1 (``FlopCounterMode`` convention, see :mod:`nasforge.nn.analytic`)."""
        return spec_flops(self.spec(arch, input_shape, num_classes))

    def params(self, arch: Architecture, input_shape: InputShape | None = None,
               num_classes: int | None = None) -> int:
        """Analytic parameter count of :meth:`build`."""
        return spec_params(self.spec(arch, input_shape, num_classes))
