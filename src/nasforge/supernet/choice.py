"""Choice-block supernets: one-shot weight sharing over spaces whose layers choose among candidate operations
(SPOS, Guo et al. 2020; the supernet of PAD-NAS Sec. 3.1 and DCNAS Sec. 3): ``proxyless-basic`` /
``proxyless-large`` (one op per searchable layer, padnas.txt Tables 1-2) and ``nb201`` (one op per cell edge).

Every choice position holds one module per operation of its *current* op set (``identity`` / ``none`` hold
nothing). ``with net.activate(arch): y = net(x)`` runs exactly the operations of ``arch`` on the shared weights;
:meth:`ChoiceSupernet.extract` returns the standalone network ``space.build(arch)`` carrying those weights (same
outputs as the activated path). :meth:`ChoiceSupernet.restrict` shrinks the op sets (PAD-NAS operation pruning):
the modules of removed operations are deleted and the weights of the operations that stay are untouched.

The standalone networks and the supernet share their module layout except at the choice positions, so
``extract`` is a renaming of state-dict keys: NB201 ``features.{i}.edges.e{j}.*`` -> ``features.{i}.edges.e{j}.{op}.*``;
proxyless ``blocks.{b}.*`` (identity layers are left out of a standalone network) -> ``layers.{l}.{op}.*``.
"""
from __future__ import annotations

import re
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..arch import Architecture
from ..errors import InvalidValue
from ..nn.mbconv import Head, InvertedResidual
from ..nn.layers import ConvBNAct
from ..nn.nb201 import EDGES, NB201Network, make_op
from ..registry import get_space
from ..spaces.base import InputShape, SearchSpace
from ..spaces.nb201 import NB201Space
from ..spaces.proxyless import IDENTITY, ProxylessSpace, op_fields
from .mbconv import _init_weights

__all__ = ["ChoiceSupernet", "NB201ChoiceSupernet", "ProxylessChoiceSupernet", "choice_supernet",
           "is_choice_space"]

_EMPTY = ("none", IDENTITY)  # operations that hold no module


def is_choice_space(space: Any) -> bool:
    """Whether ``space`` is one a choice-block supernet is built for (``nb201``, ``proxyless-*``)."""
    return isinstance(space, (NB201Space, ProxylessSpace))


class ChoiceSupernet(nn.Module):
    """Base class: a supernet over ``space`` whose positions (gene labels) hold one module per candidate op.

    Subclasses build ``self.choices`` (an ``nn.ModuleDict`` per position, keyed by op) and the fixed parts, and
    implement :meth:`_run` (a forward pass with one op per position) and :meth:`_child_key`.
    """

    def __init__(self, space: SearchSpace, input_shape: InputShape | None, num_classes: int | None,
                 generator: torch.Generator | None) -> None:
        super().__init__()
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidValue("generator", type(generator).__name__, "a torch.Generator or None")
        self.space = space
        self.input_shape, self.num_classes = space.resolve_input(input_shape, num_classes)
        self._active: Architecture | None = None
        self._ops: dict[str, str] | None = None
        self.head_dropout = nn.Dropout(0.0)  # the trainer sets p per child; standalone networks have none

    def _init(self, generator: torch.Generator | None) -> None:
        """With a generator: storage on its device (modules were made on the meta device, so torch's global RNG
        was never drawn from) and every weight drawn from it (He fan-out convs, BigNAS / SPOS init)."""
        if generator is not None:
            self.to_empty(device=generator.device)
            with torch.no_grad():
                _init_weights(self, generator)

    # ------------------------------------------------------------------------------------------------ op sets
    def op_sets(self) -> dict[str, tuple[str, ...]]:
        """The current operation set of every position (the space's)."""
        return self.space.op_sets()

    def restrict(self, op_sets: Mapping[str, Sequence[str]]) -> "ChoiceSupernet":
        """Shrink op sets in place (the space becomes ``space.restrict(op_sets)``); removed operations' modules
        are deleted, the others keep their weights. Returns ``self``."""
        if self._active is not None:
            raise InvalidValue("restrict", "inside an activation", "a call outside `with net.activate(...)`")
        self.space = self.space.restrict(op_sets)
        allowed = self.space.op_sets()
        for label, ops in self._op_dicts():
            for key in [k for k in ops if k not in allowed[label]]:
                del ops[key]
        return self

    def _op_dicts(self) -> Iterator[tuple[str, nn.ModuleDict]]:
        """Every ``(position label, op ModuleDict)`` that holds candidate ops (one per position by default)."""
        for label in self.space.op_sets():
            yield label, self.choices[_key(label)]

    # ------------------------------------------------------------------------------------------------ forward
    @property
    def active_arch(self) -> Architecture | None:
        return self._active

    @contextmanager
    def activate(self, arch: Architecture) -> Iterator["ChoiceSupernet"]:
        """Run child ``arch`` (validated against the current op sets) inside the ``with`` block; no nesting."""
        if self._active is not None:
            raise InvalidValue("activate", "a nested activation", "one active architecture at a time")
        arch = self.space.validate(arch)
        self._active, self._ops = arch, {d.label: str(arch[d.label]) for d in self.space.dimensions()}
        try:
            yield self
        finally:
            self._active, self._ops = None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._ops is None:
            raise InvalidValue("forward", "no active architecture", "a call inside `with net.activate(arch)`")
        return self._run(x, self._ops)

    def _op(self, label: str, ops: Mapping[str, str]) -> nn.Module | None:
        op = ops[label]
        return None if op in _EMPTY else self.choices[_key(label)][op]

    # ------------------------------------------------------------------------------------------------ extract
    def extract(self, arch: Architecture) -> nn.Module:
        """``space.build(arch)`` holding the shared weights of ``arch``'s operations (same outputs as the
        activated path; BatchNorm statistics copied as they are)."""
        arch = self.space.validate(arch)
        child = self.space.build(arch, self.input_shape, self.num_classes)
        ops = {d.label: str(arch[d.label]) for d in self.space.dimensions()}
        mine = self.state_dict()
        state = {k: mine[self._child_key(k, ops, arch)] for k in child.state_dict()}
        child.load_state_dict(state)
        device = next(self.parameters()).device
        return child.to(device)

    def _run(self, x: torch.Tensor, ops: Mapping[str, str]) -> torch.Tensor:
        raise NotImplementedError

    def _child_key(self, key: str, ops: Mapping[str, str], arch: Architecture) -> str:
        raise NotImplementedError


def _key(label: str) -> str:
    """Module-dict key of a gene label (``l3.op`` -> ``l3``; ``.`` is not allowed in module names)."""
    return label.split(".")[0]


class NB201ChoiceSupernet(ChoiceSupernet):
    """The NB201 macro network with every cell edge holding its candidate ops (each cell its own weights)."""

    _EDGE_KEY = re.compile(r"^features\.(\d+)\.edges\.(e\d)\.(.*)$")

    def __init__(self, space: NB201Space, input_shape: InputShape | None = None, num_classes: int | None = None,
                 *, generator: torch.Generator | None = None) -> None:
        super().__init__(space, input_shape, num_classes, generator)
        plan = space.plan(self.input_shape, self.num_classes)
        with _meta(generator):
            self._build(space, plan)
        self._init(generator)

    def _build(self, space: NB201Space, plan: list[Any]) -> None:
        template = NB201Network(["skip_connect"] * len(EDGES), channels=space.C, cells_per_stage=space.N,
                                in_channels=plan[0].in_ch, num_classes=plan[-1].out_ch,
                                reduction_strides=[s.stride for s in plan if s.kind == "reduce"])
        layers: list[nn.Module] = []
        self._cells: list[int] = []
        for i, (step, module) in enumerate(zip(plan[:-1], template.features)):
            if step.kind == "cell":
                self._cells.append(i)
                edges = nn.ModuleDict({f"e{j}": nn.ModuleDict({op: make_op(op, step.in_ch) for op in ops
                                                               if op not in _EMPTY})
                                       for j, ops in enumerate(space.op_sets().values())})
                layers.append(nn.ModuleDict({"edges": edges}))
            else:
                layers.append(module)
        self.features = nn.ModuleList(layers)
        self.head_norm, self.classifier = template.head_norm, template.classifier

    @property
    def choices(self) -> Mapping[str, nn.ModuleDict]:  # the op dicts of the first cell name the positions
        return _CellChoices(self)

    def _op_dicts(self) -> Iterator[tuple[str, nn.ModuleDict]]:
        """Each edge's op dict in every cell (each cell has its own weights)."""
        for i in self._cells:
            for label in self.space.op_sets():
                yield label, self.features[i]["edges"][label]

    def _run(self, x: torch.Tensor, ops: Mapping[str, str]) -> torch.Tensor:
        labels = list(ops)
        for i, layer in enumerate(self.features):
            if i not in self._cells:
                x = layer(x)
                continue
            nodes = [x]
            for node in (1, 2, 3):
                out = None
                for j, (dst, src) in enumerate(EDGES):
                    op = ops[labels[j]]
                    if dst != node or op == "none":
                        continue
                    y = layer["edges"][labels[j]][op](nodes[src])
                    out = y if out is None else out + y
                nodes.append(torch.zeros_like(x) if out is None else out)
            x = nodes[3]
        x = self.head_norm(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(self.head_dropout(x))

    def _child_key(self, key: str, ops: Mapping[str, str], arch: Architecture) -> str:
        m = self._EDGE_KEY.match(key)
        return f"features.{m[1]}.edges.{m[2]}.{ops[m[2]]}.{m[3]}" if m else key


class _CellChoices(Mapping):
    """Read-only view: position label -> the op ``ModuleDict`` of that edge in the first cell."""

    def __init__(self, net: NB201ChoiceSupernet) -> None:
        self._edges = net.features[net._cells[0]]["edges"]

    def __getitem__(self, key: str) -> nn.ModuleDict:
        return self._edges[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._edges)

    def __len__(self) -> int:
        return len(self._edges)


class ProxylessChoiceSupernet(ChoiceSupernet):
    """Table 1's fixed stem and head with, per searchable layer, one inverted residual per ``k{K}_e{E}`` op."""

    _BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.*)$")

    def __init__(self, space: ProxylessSpace, input_shape: InputShape | None = None,
                 num_classes: int | None = None, *, generator: torch.Generator | None = None) -> None:
        super().__init__(space, input_shape, num_classes, generator)
        unrestricted = type(space)()  # the channel plan: every layer with a block (no identity), so block b is layer b
        full = unrestricted.make({label: next(op for op in ops if op != IDENTITY)
                                  for label, ops in unrestricted.op_sets().items()})
        spec = unrestricted.spec(full, self.input_shape, self.num_classes)
        with _meta(generator):
            st = spec.stem
            self.stem = ConvBNAct(in_ch=st.in_ch, out_ch=st.out_ch, kernel=st.kernel, stride=st.stride, act=st.act)
            self.choices = nn.ModuleDict()
            for (label, ops), block in zip(space.op_sets().items(), spec.blocks):
                self.choices[_key(label)] = nn.ModuleDict({op: InvertedResidual(_op_spec(block, op)) for op in ops
                                                           if op != IDENTITY})
            self.head = Head(spec.head)
        self.head_dropout = self.head.dropout  # one module: the trainer's per-child rate is the head's
        self._init(generator)

    def _run(self, x: torch.Tensor, ops: Mapping[str, str]) -> torch.Tensor:
        x = self.stem(x)
        for label in ops:
            module = self._op(label, ops)
            if module is not None:
                x = module(x)
        return self.head(x)

    def _child_key(self, key: str, ops: Mapping[str, str], arch: Architecture) -> str:
        m = self._BLOCK_KEY.match(key)
        if not m:
            return key
        layers = [label for label, op in ops.items() if op != IDENTITY]
        label = layers[int(m[1])]
        return f"choices.{_key(label)}.{ops[label]}.{m[2]}"


def _meta(generator: torch.Generator | None) -> Any:
    """Build modules on the meta device when a generator will initialise them (no global RNG is drawn)."""
    return torch.device("meta") if generator is not None else nullcontext()


def _op_spec(block: Any, op: str) -> Any:
    """The block spec of operation ``op`` (``k{K}_e{E}``) at the position of ``block`` (same channels, stride)."""
    k, e = op_fields(op)
    return replace(block, kernel=k, mid_ch=block.in_ch * e, expand=e != 1)


def choice_supernet(space: SearchSpace | str, input_shape: InputShape | None = None, num_classes: int | None = None,
                    *, generator: torch.Generator | None = None) -> ChoiceSupernet:
    """The choice-block supernet of ``space`` (``nb201`` or a ``proxyless-*`` space, possibly restricted)."""
    if isinstance(space, str):
        space = get_space(space)
    if isinstance(space, NB201Space):
        return NB201ChoiceSupernet(space, input_shape, num_classes, generator=generator)
    if isinstance(space, ProxylessSpace):
        return ProxylessChoiceSupernet(space, input_shape, num_classes, generator=generator)
    raise InvalidValue("space", getattr(space, "name", space), "a choice space: nb201, proxyless-basic, "
                                                               "proxyless-large")
