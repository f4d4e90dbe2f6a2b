"""The :class:`SearchSpace` contract: a search space is pure data, never an ``nn.Module``.

A space is a list of flat, labelled :class:`Dimension` s (NNI-style) plus three hooks that subclasses override:

* :meth:`SearchSpace.is_active` — which genes the network actually uses (e.g. layer genes beyond a stage's
  depth are inactive). Inactive genes are dropped by :meth:`SearchSpace.make`, which makes architectures
  canonical: equal networks are equal values with equal keys.
* :meth:`SearchSpace.check` — constraints across genes (e.g. at most 4 down-samples), raising
  :class:`~nasforge.errors.InvalidArchitecture`.
* :meth:`format` / :meth:`parse`, :meth:`build`, :meth:`flops`, :meth:`params`, :meth:`smallest`,
  :meth:`largest`, :meth:`cardinality`.

Sampling, mutation, crossover, encoding and validation are generic and take a seeded
``numpy.random.Generator``; nothing here touches a global RNG.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..arch import Architecture, Gene
from ..errors import InvalidArchitecture, InvalidValue, UnknownName

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["Dimension", "SearchSpace", "InputShape", "same_choice", "checked_op_sets"]

InputShape = tuple[int, int, int]  # (channels, height, width)


def same_choice(a: Any, b: Any) -> bool:
    """Equality that does not confuse ``True`` with ``1`` (bool genes and int genes never match)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


@dataclass(frozen=True)
class Dimension:
    """One labelled, categorical gene: ``label`` takes one of ``choices`` (ordered, e.g. small to large)."""

    label: str
    choices: tuple[Gene, ...]

    def index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if same_choice(c, value):
                return i
        raise ValueError(value)


class SearchSpace(ABC):
    """Base class of every search space. Subclasses register with ``@register_space("name")``."""

    name: str = "abstract"
    #: the weight-sharing supernet this space's architectures live in: ``"elastic"`` (sliced channels, kernels
    #: and depths: BigNAS / MENAS MBConv spaces), ``"choice"`` (one module per candidate op: SPOS choice blocks)
    #: or ``None`` (no supernet)
    supernet: str | None = None
    #: default input (C, H, W) and number of classes used by :meth:`build` and the cost models
    default_input: InputShape = (3, 224, 224)
    default_classes: int = 1000
    #: how many times sampling / mutation retry to satisfy :meth:`check` before giving up
    max_tries: int = 1000

    # ---------------------------------------------------------------------------------------------- to override
    @abstractmethod
    def dimensions(self) -> tuple[Dimension, ...]:
        """All dimensions, in encoding order (active or not)."""

    def is_active(self, label: str, genes: Mapping[str, Gene]) -> bool:
        """Whether gene ``label`` is used by the network described by (full) ``genes``. Default: always."""
        return True

    def check(self, arch: Architecture) -> None:
        """Constraints across genes; raise :class:`InvalidArchitecture` naming the field. Default: none."""

    @abstractmethod
    def format(self, arch: Architecture) -> str:
        """The compact human string of ``arch`` (inverse of :meth:`parse`)."""

    @abstractmethod
    def parse(self, text: str) -> Architecture:
        """Parse the compact string; raise :class:`~nasforge.errors.ParseError` on malformed text."""

    @abstractmethod
    def build(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> "nn.Module":
        """A plain, standalone ``nn.Module`` for ``arch`` (no nasforge machinery needed to run it)."""

    @abstractmethod
    def flops(self, arch: Architecture, input_shape: InputShape | None = None,
              num_classes: int | None = None) -> int:
        """Analytic FLOPs of one forward pass at batch size 1, equal to ``FlopCounterMode`` on :meth:`build`."""

    @abstractmethod
    def params(self, arch: Architecture, input_shape: InputShape | None = None,
               num_classes: int | None = None) -> int:
        """Analytic number of parameters of :meth:`build` (trainable tensors)."""

    @abstractmethod
    def smallest(self) -> Architecture:
        """The architecture with the fewest FLOPs."""

    @abstractmethod
    def largest(self) -> Architecture:
        """The architecture with the most FLOPs."""

    @abstractmethod
    def cardinality(self) -> int:
        """Exact number of distinct canonical architectures."""

    # ---------------------------------------------------------------------------------------------- generic
    @cached_property
    def _dims(self) -> dict[str, Dimension]:
        return {d.label: d for d in self.dimensions()}

    def resolve_input(self, input_shape: InputShape | None, num_classes: int | None) -> tuple[InputShape, int]:
        """Defaults plus validation of an input shape ``(C, H, W)`` and a class count."""
        shape = tuple(self.default_input if input_shape is None else input_shape)
        if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
            raise InvalidValue("input_shape", input_shape, "three positive ints (channels, height, width)")
        classes = self.default_classes if num_classes is None else num_classes
        if not isinstance(classes, (int, np.integer)) or classes < 1:
            raise InvalidValue("num_classes", num_classes, "a positive int")
        return (int(shape[0]), int(shape[1]), int(shape[2])), int(classes)

    def make(self, genes: Mapping[str, Any]) -> Architecture:
        """Validate ``genes`` and return the canonical :class:`Architecture` (inactive genes dropped).

        Raises :class:`InvalidArchitecture` for an unknown label, a missing active gene or a value out of range.
        """
        dims = self._dims
        for label in genes:
            if label not in dims:
                raise InvalidArchitecture("gene", label, list(dims), where=f"space {self.name!r}")
        full: dict[str, Gene] = {}
        for d in dims.values():
            if d.label in genes:
                try:
                    full[d.label] = d.choices[d.index(genes[d.label])]
                except ValueError:
                    raise InvalidArchitecture(f"gene {d.label!r}", genes[d.label], d.choices,
                                              where=f"space {self.name!r}") from None
        canonical = {}
        for d in dims.values():
            if self.is_active(d.label, full):
                if d.label not in full:
                    raise InvalidArchitecture(f"gene {d.label!r}", "<missing>", d.choices, where=f"space {self.name!r}")
                canonical[d.label] = full[d.label]
        arch = Architecture(self.name, canonical)
        self.check(arch)
        return arch

    def validate(self, arch: Architecture) -> Architecture:
        """Check that ``arch`` belongs to this space; returns it canonicalised. Raises with the field."""
        if not isinstance(arch, Architecture):
            raise InvalidArchitecture("architecture", arch, f"an Architecture of space {self.name!r}")
        if arch.space != self.name:
            raise InvalidArchitecture("space", arch.space, [self.name])
        return self.make(arch.to_dict())

    def contains(self, arch: Architecture) -> bool:
        """True when :meth:`validate` accepts ``arch`` and it is already canonical."""
        try:
            return self.validate(arch) == arch
        except InvalidArchitecture:
            return False

    def _fill(self, genes: Mapping[str, Gene], rng: np.random.Generator) -> dict[str, Gene]:
        """``genes`` completed with random values for every dimension they lack (inactive ones)."""
        out = dict(genes)
        for d in self._dims.values():
            if d.label not in out:
                out[d.label] = d.choices[int(rng.integers(len(d.choices)))]
        return out

    def _retry(self, what: str, attempt: Any) -> Architecture:
        for _ in range(self.max_tries):
            try:
                return attempt()
            except InvalidArchitecture:
                continue
        raise InvalidValue(what, f"{self.max_tries} tries", "a space whose constraints can be satisfied",
                           where=f"space {self.name!r}")

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random valid architecture (rejection sampling over :meth:`check`)."""
        return self._retry("sample", lambda: self.make(self._fill({}, rng)))

    def mutate(self, arch: Architecture, rng: np.random.Generator, n: int = 1) -> Architecture:
        """Change ``n`` randomly chosen active genes to a different value (genes that become active are random).

        The result is valid and differs from ``arch`` (unless the space has a single architecture).
        """
        arch = self.validate(arch)

        def attempt() -> Architecture:
            genes = self._fill(arch.to_dict(), rng)
            for _ in range(n):
                active = [d for d in self._dims.values() if self.is_active(d.label, genes) and len(d.choices) > 1]
                if not active:
                    break
                d = active[int(rng.integers(len(active)))]
                cur = d.index(genes[d.label])
                new = int(rng.integers(len(d.choices) - 1))
                genes[d.label] = d.choices[new + (new >= cur)]
            child = self.make(genes)
            if child == arch and self.cardinality() > 1:
                raise InvalidArchitecture("mutation", "unchanged", "a different architecture")
            return child

        return self._retry("mutate", attempt)

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover: each dimension's gene from ``a`` or ``b`` with probability 1/2 (valid result)."""
        ga, gb = self._fill(self.validate(a).to_dict(), rng), self._fill(self.validate(b).to_dict(), rng)

        def attempt() -> Architecture:
            pick = rng.random(len(self._dims)) < 0.5
            return self.make({d.label: (ga if p else gb)[d.label] for d, p in zip(self._dims.values(), pick)})

        return self._retry("crossover", attempt)

    def encode(self, arch: Architecture) -> np.ndarray:
        """Integer vector of choice indices, one per dimension in :meth:`dimensions` order (inactive -> 0)."""
        arch = self.validate(arch)
        g = arch.to_dict()
        return np.array([d.index(g[d.label]) if d.label in g else 0 for d in self._dims.values()], dtype=np.int64)

    def decode(self, vec: Sequence[float] | np.ndarray) -> Architecture:
        """Inverse of :meth:`encode`; real values are rounded and clipped to the valid index range."""
        vec = np.asarray(vec)
        if vec.shape != (len(self._dims),):
            raise InvalidValue("encoding length", vec.shape, f"({len(self._dims)},)", where=f"space {self.name!r}")
        genes = {}
        for d, x in zip(self._dims.values(), vec):
            i = int(np.clip(np.rint(x), 0, len(d.choices) - 1))
            genes[d.label] = d.choices[i]
        full = dict(genes)
        return self.make({k: v for k, v in full.items() if self.is_active(k, full)})

    def bounds(self) -> np.ndarray:
        """Upper index bound of each encoding position (``len(choices) - 1``)."""
        return np.array([len(d.choices) - 1 for d in self._dims.values()], dtype=np.int64)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def checked_op_sets(base: Mapping[str, tuple[str, ...]], op_sets: Any, where: str,
                    position: str = "layer") -> dict[str, tuple[str, ...]]:
    """``base`` (position label -> allowed ops) with the positions of ``op_sets`` replaced by non-empty subsets,
    in ``base``'s canonical order; one-line errors naming the position and op (spaces with op sets that shrink:
    PAD-NAS operation pruning)."""
    if not isinstance(op_sets, Mapping):
        raise InvalidValue("op_sets", op_sets, f"a mapping of {position} gene label -> operations", where=where)
    sets = dict(base)
    for label, ops in op_sets.items():
        if label not in base:
            raise UnknownName(f"op_sets {position}", label, list(base), where=where)
        if isinstance(ops, str) or not isinstance(ops, Sequence) or not ops:
            raise InvalidValue(f"op set of {label!r}", ops, "a non-empty sequence of operations", where=where)
        for op in ops:
            if op not in base[label]:
                raise InvalidValue(f"op set of {label!r}", op, base[label], where=where)
        sets[label] = tuple(op for op in base[label] if op in set(ops))
    return sets
