"""The :class:`Architecture` value: one point of a search space.

An architecture is an immutable, hashable value made of the id of its search space and a flat, sorted tuple of
``label -> value`` genes (values are ``int``, ``float``, ``bool`` or ``str``). It knows nothing about networks;
its space builds, validates and formats it. Spaces only ever create *canonical* architectures: genes that the
network does not use (e.g. layers beyond a stage's depth) are dropped, so two architectures that describe the
same network compare equal and have the same :meth:`Architecture.key`.

Round trips:

* JSON: ``Architecture.from_json(a.to_json()) == a``
* compact string: ``nasforge.parse(str(a), a.space) == a`` (the string format belongs to the space: timm-style
  block strings for MBConv spaces, the official ``|op~0|+|op~0|op~1|+...`` string for NAS-Bench-201).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Union

from .errors import InvalidArchitecture, ParseError
from .registry import get_space, list_spaces

Gene = Union[int, float, bool, str]

__all__ = ["Architecture", "Gene", "parse"]


def _check_gene(label: Any, value: Any) -> None:
    if not isinstance(label, str) or not label:
        raise InvalidArchitecture("gene label", label, "a non-empty string")
    if not isinstance(value, (int, float, bool, str)):
        raise InvalidArchitecture(f"gene {label!r}", value, "int, float, bool or str")


@dataclass(frozen=True, eq=False)
class Architecture:
    """An immutable point of search space ``space``: ``Architecture("nb201", {"e0": "skip_connect", ...})``.

    Use ``space.make(genes)`` (or ``space.parse(text)``) to get a validated, canonical architecture; the plain
    constructor only checks types.
    """

    space: str
    genes: tuple[tuple[str, Gene], ...]

    def __init__(self, space: str, genes: Mapping[str, Gene] | tuple[tuple[str, Gene], ...]) -> None:
        if not isinstance(space, str) or not space:
            raise InvalidArchitecture("space", space, "a registered space name")
        items = dict(genes).items() if not isinstance(genes, Mapping) else genes.items()
        for label, value in items:
            _check_gene(label, value)
        object.__setattr__(self, "space", space)
        object.__setattr__(self, "genes", tuple(sorted(items)))

    # -- mapping-like access -------------------------------------------------------------------------------
    def __getitem__(self, label: str) -> Gene:
        for k, v in self.genes:
            if k == label:
                return v
        raise KeyError(label)

    def get(self, label: str, default: Gene | None = None) -> Gene | None:
        """The value of gene ``label``, or ``default`` when the gene is absent (masked out)."""
        try:
            return self[label]
        except KeyError:
            return default

    def __contains__(self, label: object) -> bool:
        return any(k == label for k, _ in self.genes)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.genes)

    def __len__(self) -> int:
        return len(self.genes)

    def to_dict(self) -> dict[str, Gene]:
        """The genes as a plain dict (sorted by label)."""
        return dict(self.genes)

    def replace(self, **changes: Gene) -> "Architecture":
        """A copy with some genes changed (not re-validated; pass it through ``space.make`` to canonicalise)."""
        d = self.to_dict()
        d.update(changes)
        return Architecture(self.space, d)

    # -- identity ------------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        """Equal space and genes, value types included (``1``, ``1.0`` and ``True`` are different genes), so
        equality always agrees with :meth:`key`."""
        if not isinstance(other, Architecture):
            return NotImplemented
        return self.space == other.space and self._typed() == other._typed()

    def __hash__(self) -> int:
        return hash((self.space, self._typed()))

    def _typed(self) -> tuple[tuple[str, str, Gene], ...]:
        return tuple((k, type(v).__name__, v) for k, v in self.genes)

    def to_json(self) -> str:
        """Canonical JSON: ``{"space": ..., "genes": {...}}`` with sorted keys and no whitespace."""
        return json.dumps({"space": self.space, "genes": dict(self.genes)}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any], *, validate: bool = True) -> "Architecture":
        """Inverse of :meth:`to_json`. With ``validate`` the registered space checks and canonicalises it."""
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
            space, genes = data["space"], data["genes"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ParseError("architecture JSON", str(text), '{"space": NAME, "genes": {LABEL: VALUE, ...}}') from exc
        if not isinstance(genes, Mapping):
            raise ParseError("architecture JSON", str(text), "'genes' to be an object")
        arch = cls(space, genes)
        if validate:
            return get_space(space).make(arch.to_dict())
        return arch

    def key(self) -> str:
        """A stable 16-hex-digit key (SHA-1 of the canonical JSON): equal networks have equal keys."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:16]

    def __str__(self) -> str:
        try:
            return get_space(self.space).format(self)
        except Exception:  # an unregistered space still prints something useful
            return self.to_json()

    def __repr__(self) -> str:
        return f"Architecture({self.space!r}, {str(self)!r})"


def parse(text: str, space: str | None = None) -> Architecture:
    """Parse an architecture from its compact string, or from JSON.

    ``space`` names the search space; it may be omitted for JSON (which carries it) or when ``text`` is prefixed
    with ``SPACE:`` (e.g. ``nb201:|nor_conv_3x3~0|+...``).
    """
    if not isinstance(text, str):
        raise ParseError("architecture", repr(text), "a string (compact form or JSON)")
    text = text.strip()
    if text.startswith("{"):
        return Architecture.from_json(text)
    if space is None:
        head, sep, rest = text.partition(":")
        if sep and head in list_spaces():
            space, text = head, rest
        else:
            raise ParseError("architecture", text, "JSON, or a string with the space given (SPACE:STRING or space=...)")
    return get_space(space).parse(text)
