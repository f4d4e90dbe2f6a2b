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

**Weight banks** (DCNAS, dcnas.txt Sec. 3.2.1): with ``copies=M > 1`` every operation module becomes an
``nn.ModuleList`` of M independently initialised copies ``W_{l,k} = {w^1 .. w^M}`` (state keys gain the copy index:
``...{op}.{m}.*``). The *layers* of the supernet (:meth:`ChoiceSupernet.layers`) are its choice positions in
execution order (NB201: every edge of every cell, each cell having its own weights; proxyless: every searchable
layer); an architecture runs with one copy per layer, ``with net.activate(arch, copies=[o_1, ..., o_L])``. Without
``copies`` the architecture's entry of :attr:`ChoiceSupernet.assignments` is used (``arch.key()`` -> copies), and
an architecture without one gets copies drawn from a generator seeded with ``(copy_seed, crc32(arch.key()))``
(reproducible: the same architecture always gets the same draw). ``copies=1`` builds exactly the SPOS supernet:
same modules, same state-dict keys, same initial weights for the same generator.
"""
from __future__ import annotations

import re
import zlib
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
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
                 generator: torch.Generator | None, copies: int = 1) -> None:
        super().__init__()
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidValue("generator", type(generator).__name__, "a torch.Generator or None")
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise InvalidValue("copies", copies, "an int >= 1 (weight copies per operation; 1 = SPOS)")
        self.space = space
        self.copies = copies
        self.input_shape, self.num_classes = space.resolve_input(input_shape, num_classes)
        self._active: Architecture | None = None
        self._ops: dict[str, str] | None = None
        self._copy_ids: tuple[int, ...] | None = None
        #: arch.key() -> the copy id of every layer (DCNAS assignments o_alpha; see the module docstring)
        self.assignments: dict[str, tuple[int, ...]] = {}
        #: seed of the copies drawn for architectures without an assignment
        self.copy_seed = 0
        #: when a dict, the forward pass stores the input of every layer under its index (DCNAS h^{l-1})
        self.capture: dict[int, torch.Tensor] | None = None
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
    def activate(self, arch: Architecture, copies: Sequence[int] | None = None) -> Iterator["ChoiceSupernet"]:
        """Run child ``arch`` (validated against the current op sets) inside the ``with`` block; no nesting.
        ``copies``: the weight copy of every layer (default: :meth:`copies_of`)."""
        if self._active is not None:
            raise InvalidValue("activate", "a nested activation", "one active architecture at a time")
        arch = self.space.validate(arch)
        ids = self.copies_of(arch) if copies is None else self._checked_copies(copies)
        self._active, self._ops = arch, {d.label: str(arch[d.label]) for d in self.space.dimensions()}
        self._copy_ids = ids
        try:
            yield self
        finally:
            self._active, self._ops, self._copy_ids = None, None, None

    # ------------------------------------------------------------------------------------------------ weight banks
    def layers(self) -> list[tuple[str, str]]:
        """``(layer name, gene label)`` of every choice layer in execution order (the DCNAS layers l = 1..L)."""
        return [(label, label) for label in self.space.op_sets()]

    def layer_module(self, layer: int, op: str, copy: int = 0) -> nn.Module | None:
        """Copy ``copy`` of operation ``op``'s module at ``layer`` (``None`` for ops that hold none)."""
        if op in _EMPTY:
            return None
        module = self._layer_ops(layer)[op]
        return module if self.copies == 1 else module[copy]

    def _layer_ops(self, layer: int) -> nn.ModuleDict:
        return self.choices[_key(self.layers()[layer][1])]

    def copies_of(self, arch: Architecture) -> tuple[int, ...]:
        """The copy per layer ``arch`` uses: its assignment, else a draw seeded by ``(copy_seed, arch)``."""
        n = len(self.layers())
        if self.copies == 1:
            return (0,) * n
        key = arch.key()
        if key in self.assignments:
            return self.assignments[key]
        rng = np.random.default_rng([self.copy_seed, zlib.crc32(key.encode())])
        return tuple(int(c) for c in rng.integers(0, self.copies, n))

    def _checked_copies(self, copies: Sequence[int]) -> tuple[int, ...]:
        ids = tuple(int(c) for c in copies)
        if len(ids) != len(self.layers()) or any(c < 0 or c >= self.copies for c in ids):
            raise InvalidValue("copies", list(copies), f"{len(self.layers())} copy ids in [0, {self.copies})")
        return ids

    def _bank(self, make: Any) -> nn.Module:
        """One operation's module (``copies == 1``: SPOS) or its bank of ``copies`` modules."""
        return make() if self.copies == 1 else nn.ModuleList([make() for _ in range(self.copies)])

    def _pick(self, module: nn.Module, layer: int) -> nn.Module:
        """The copy of a banked ``module`` the active architecture uses at ``layer``."""
        if self.copies == 1:
            return module
        return module[self._copy_ids[layer] if self._copy_ids is not None else 0]

    def _see(self, layer: int, x: torch.Tensor) -> None:
        if self.capture is not None:
            self.capture[layer] = x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._ops is None:
            raise InvalidValue("forward", "no active architecture", "a call inside `with net.activate(arch)`")
        return self._run(x, self._ops)

    def _op(self, label: str, ops: Mapping[str, str], layer: int) -> nn.Module | None:
        op = ops[label]
        return None if op in _EMPTY else self._pick(self.choices[_key(label)][op], layer)

    # ------------------------------------------------------------------------------------------------ extract
    def extract(self, arch: Architecture) -> nn.Module:
        """``space.build(arch)`` holding the shared weights of ``arch``'s operations (same outputs as the
        activated path; BatchNorm statistics copied as they are)."""
        arch = self.space.validate(arch)
        child = self.space.build(arch, self.input_shape, self.num_classes)
        ops = {d.label: str(arch[d.label]) for d in self.space.dimensions()}
        mine, copies = self.state_dict(), self.copies_of(arch)
        state = {k: mine[self._child_key(k, ops, arch, copies)] for k in child.state_dict()}
        child.load_state_dict(state)
        device = next(self.parameters()).device
        return child.to(device)

    def _run(self, x: torch.Tensor, ops: Mapping[str, str]) -> torch.Tensor:
        raise NotImplementedError

    def _child_key(self, key: str, ops: Mapping[str, str], arch: Architecture, copies: Sequence[int]) -> str:
        raise NotImplementedError

    def _bank_key(self, copies: Sequence[int], layer: int) -> str:
        """The state-key infix of the copy used at ``layer`` (``""`` without banks)."""
        return "" if self.copies == 1 else f"{copies[layer]}."


def _key(label: str) -> str:
    """Module-dict key of a gene label (``l3.op`` -> ``l3``; ``.`` is not allowed in module names)."""
    return label.split(".")[0]


class NB201ChoiceSupernet(ChoiceSupernet):
    """The NB201 macro network with every cell edge holding its candidate ops (each cell its own weights)."""

    _EDGE_KEY = re.compile(r"^features\.(\d+)\.edges\.(e\d)\.(.*)$")

    def __init__(self, space: NB201Space, input_shape: InputShape | None = None, num_classes: int | None = None,
                 *, generator: torch.Generator | None = None, copies: int = 1) -> None:
        super().__init__(space, input_shape, num_classes, generator, copies)
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
                edges = nn.ModuleDict({f"e{j}": nn.ModuleDict({op: self._bank(lambda: make_op(op, step.in_ch))
                                                               for op in ops if op not in _EMPTY})
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

    def layers(self) -> list[tuple[str, str]]:
        """Every edge of every cell (``c{cell}.e{j}``), cell by cell, edges in :data:`EDGES` order."""
        return [(f"c{c}.{label}", label) for c in range(len(self._cells)) for label in self.space.op_sets()]

    def _layer_ops(self, layer: int) -> nn.ModuleDict:
        labels = list(self.space.op_sets())
        return self.features[self._cells[layer // len(labels)]]["edges"][labels[layer % len(labels)]]

    def _run(self, x: torch.Tensor, ops: Mapping[str, str]) -> torch.Tensor:
        labels = list(ops)
        for i, layer in enumerate(self.features):
            if i not in self._cells:
                x = layer(x)
                continue
            nodes = [x]
            base = self._cells.index(i) * len(labels)
            for node in (1, 2, 3):
                out = None
                for j, (dst, src) in enumerate(EDGES):
                    op = ops[labels[j]]
                    if dst != node:
                        continue
                    self._see(base + j, nodes[src])
                    if op == "none":
                        continue
                    y = self._pick(layer["edges"][labels[j]][op], base + j)(nodes[src])
                    out = y if out is None else out + y
                nodes.append(torch.zeros_like(x) if out is None else out)
            x = nodes[3]
        x = self.head_norm(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(self.head_dropout(x))

    def _child_key(self, key: str, ops: Mapping[str, str], arch: Architecture, copies: Sequence[int]) -> str:
        m = self._EDGE_KEY.match(key)
        if not m:
            return key
        layer = self._cells.index(int(m[1])) * len(ops) + list(ops).index(m[2])
        return f"features.{m[1]}.edges.{m[2]}.{ops[m[2]]}.{self._bank_key(copies, layer)}{m[3]}"


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
                 num_classes: int | None = None, *, generator: torch.Generator | None = None,
                 copies: int = 1) -> None:
        super().__init__(space, input_shape, num_classes, generator, copies)
        unrestricted = type(space)()  # the channel plan: every layer with a block (no identity), so block b is layer b
        full = unrestricted.make({label: next(op for op in ops if op != IDENTITY)
                                  for label, ops in unrestricted.op_sets().items()})
        spec = unrestricted.spec(full, self.input_shape, self.num_classes)
        with _meta(generator):
            st = spec.stem
            self.stem = ConvBNAct(in_ch=st.in_ch, out_ch=st.out_ch, kernel=st.kernel, stride=st.stride, act=st.act)
            self.choices = nn.ModuleDict()
            for (label, ops), block in zip(space.op_sets().items(), spec.blocks):
                self.choices[_key(label)] = nn.ModuleDict({
                    op: self._bank(lambda: InvertedResidual(_op_spec(block, op))) for op in ops if op != IDENTITY})
            self.head = Head(spec.head)
        self.head_dropout = self.head.dropout  # one module: the trainer's per-child rate is the head's
        self._init(generator)

    def _run(self, x: torch.Tensor, ops: Mapping[str, str]) -> torch.Tensor:
        x = self.stem(x)
        for layer, label in enumerate(ops):
            self._see(layer, x)
            module = self._op(label, ops, layer)
            if module is not None:
                x = module(x)
        return self.head(x)

    def _child_key(self, key: str, ops: Mapping[str, str], arch: Architecture, copies: Sequence[int]) -> str:
        m = self._BLOCK_KEY.match(key)
        if not m:
            return key
        layers = [label for label, op in ops.items() if op != IDENTITY]
        label = layers[int(m[1])]
        return f"choices.{_key(label)}.{ops[label]}.{self._bank_key(copies, list(ops).index(label))}{m[2]}"


def _meta(generator: torch.Generator | None) -> Any:
    """Build modules on the meta device when a generator will initialise them (no global RNG is drawn)."""
    return torch.device("meta") if generator is not None else nullcontext()


def _op_spec(block: Any, op: str) -> Any:
    """The block spec of operation ``op`` (``k{K}_e{E}``) at the position of ``block`` (same channels, stride)."""
    k, e = op_fields(op)
    return replace(block, kernel=k, mid_ch=block.in_ch * e, expand=e != 1)


def choice_supernet(space: SearchSpace | str, input_shape: InputShape | None = None, num_classes: int | None = None,
                    *, generator: torch.Generator | None = None, copies: int = 1) -> ChoiceSupernet:
    """The choice-block supernet of ``space`` (``nb201`` or a ``proxyless-*`` space, possibly restricted), with
    ``copies`` weight copies per operation (1: SPOS; DCNAS weight banks otherwise)."""
    if isinstance(space, str):
        space = get_space(space)
    if isinstance(space, NB201Space):
        return NB201ChoiceSupernet(space, input_shape, num_classes, generator=generator, copies=copies)
    if isinstance(space, ProxylessSpace):
        return ProxylessChoiceSupernet(space, input_shape, num_classes, generator=generator, copies=copies)
    raise InvalidValue("space", getattr(space, "name", space), "a choice space: nb201, proxyless-basic, "
                                                               "proxyless-large")
