"""The BigNAS model family as values: budgets, benchmarked children, members and the family (Yu et al., ECCV 2020,
Sec. 3.2, 4.2 and 4.4), with a JSON round trip so that a run folder stores ``family.json``.

* :class:`Budget` — a resource budget ``cost <= max`` on ``flops``, ``params`` or ``latency_ms`` (Sec. 3.2: "the
  best architectures w.r.t. the resource budgets"), also given as a fraction of the largest child's FLOPs;
* :class:`Entry` — one benchmarked child: architecture, compact string, accuracy without fine-tuning, costs
  (a row of the coarse table, Fig. 8 left);
* :class:`Member` / :class:`Family` — one selected child per budget, named S, M, L, XL... by increasing budget
  (BigNASModel-S/M/L/XL, Sec. 4.2 and Table 2), and the coarse table they were picked from.

:func:`nasforge.supernet.select.coarse_to_fine` produces a :class:`Family`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..arch import Architecture
from ..errors import DataError, InvalidValue, ParseError
from ..io import write_json
from ..spaces.base import SearchSpace

__all__ = ["COST_NAMES", "FAMILY_FORMAT", "Budget", "Entry", "Member", "Family", "member_names"]

#: the cost names a budget may constrain (``latency_ms`` only with a latency model)
COST_NAMES: tuple[str, ...] = ("flops", "params", "latency_ms")
FAMILY_FORMAT = "nasforge.bignas-family/1"


@dataclass(frozen=True)
class Budget:
    """A resource budget ``costs[cost] <= max`` (Sec. 3.2); ``fraction`` records a budget given as a fraction of
    the largest child's FLOPs."""

    cost: str
    max: float
    fraction: float | None = None

    def __post_init__(self) -> None:
        if self.cost not in COST_NAMES:
            raise InvalidValue("budget cost", self.cost, COST_NAMES)
        if isinstance(self.max, bool) or not isinstance(self.max, (int, float)) or not self.max > 0:
            raise InvalidValue(f"budget {self.cost!r} max", self.max, "a positive number")

    def satisfied(self, costs: Mapping[str, float]) -> bool:
        """Whether ``costs[self.cost] <= self.max``."""
        if self.cost not in costs:
            raise InvalidValue("budget cost", self.cost, sorted(costs))
        return float(costs[self.cost]) <= self.max

    @classmethod
    def coerce(cls, value: Any, largest_flops: float) -> "Budget":
        """A budget from itself, a ``(cost, max)`` pair, a :class:`~nasforge.strategies.base.Constraint` without a
        ``min``, a mapping ``{"cost", "max"}`` / ``{"fraction"}``, or a number in (0, 1]: that fraction of
        ``largest_flops``."""
        if isinstance(value, Budget):
            return value
        if isinstance(value, Mapping) and set(value) == {"fraction"}:
            value = value["fraction"]
        if isinstance(value, Mapping) and {"cost", "max"} <= set(value) <= {"cost", "max", "fraction"}:
            return cls(value["cost"], value["max"], value.get("fraction"))
        if not isinstance(value, bool) and isinstance(value, (int, float)):
            if not 0 < value <= 1:
                raise InvalidValue("budget fraction", value, "a fraction of the largest child's FLOPs in (0, 1]")
            return cls("flops", float(value) * largest_flops, float(value))
        if hasattr(value, "name") and hasattr(value, "max") and hasattr(value, "min"):  # a strategies Constraint
            if value.min is not None or value.max is None:
                raise InvalidValue(f"budget {value.name!r}", str(value), "an upper bound only (min=None, max set)")
            return cls(value.name, value.max)
        if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str):
            return cls(value[0], value[1])
        raise InvalidValue("budget", value, "(cost, max), a fraction in (0, 1], {'cost', 'max'} or {'fraction'}")

    def to_dict(self) -> dict[str, Any]:
        return {"cost": self.cost, "max": self.max, "fraction": self.fraction}

    def __str__(self) -> str:
        frac = f" ({self.fraction:g} of the largest)" if self.fraction is not None else ""
        return f"{self.cost} <= {self.max:g}{frac}"


@dataclass(frozen=True)
class Entry:
    """One benchmarked child: the architecture, its compact string, accuracy (%) without fine-tuning, costs."""

    arch: Architecture
    text: str
    accuracy: float
    costs: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.text, "genes": self.arch.to_dict(), "accuracy": self.accuracy, **self.costs}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], space_name: str, space: SearchSpace | None = None) -> "Entry":
        try:
            genes, text, acc = d["genes"], d["arch"], float(d["accuracy"])
        except (KeyError, TypeError, ValueError):
            raise ParseError("family entry", json.dumps(d, default=str),
                             '{"arch", "genes", "accuracy", costs...}') from None
        arch = space.make(genes) if space is not None else Architecture(space_name, genes)
        costs = {k: v for k, v in d.items() if k not in ("arch", "genes", "accuracy")}
        return cls(arch, text, acc, costs)


def member_names(n: int) -> list[str]:
    """Names of ``n`` family members by increasing budget: S, M, L, XL (BigNASModel-S/M/L/XL, Sec. 4.2 and Table 2),
    then XXL, XXXL, ..."""
    return [("S", "M", "L")[i] if i < 3 else "X" * (i - 2) + "L" for i in range(n)]


@dataclass(frozen=True)
class Member:
    """One selected child of the family: its name, budget, the chosen child (accuracy without fine-tuning and
    costs), the coarse skeleton it was mutated from, and how many fine-grained children were evaluated."""

    name: str
    budget: Budget
    entry: Entry
    skeleton: Entry
    fine_evaluated: int

    @property
    def arch(self) -> Architecture:
        return self.entry.arch

    @property
    def accuracy(self) -> float:
        return self.entry.accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "budget": self.budget.to_dict(), **self.entry.to_dict(),
                "skeleton": self.skeleton.to_dict(), "fine_evaluated": self.fine_evaluated}


@dataclass
class Family:
    """The result of :func:`coarse_to_fine`: the coarse benchmark table (Fig. 8, left) and one member per budget,
    ordered by increasing budget (the BigNASModel family, Sec. 4.2). ``info`` records the settings (seed, split,
    calibration steps, input shape...). JSON round trip: ``Family.from_dict(f.to_dict(), space) == f``."""

    space: str
    coarse: list[Entry]
    members: list[Member]
    info: dict[str, Any] = field(default_factory=dict)

    def member(self, name: str) -> Member:
        """The member called ``name`` (e.g. ``"M"``)."""
        for m in self.members:
            if m.name == name:
                return m
        raise InvalidValue("family member", name, [m.name for m in self.members])

    def to_dict(self) -> dict[str, Any]:
        return {"format": FAMILY_FORMAT, "space": self.space, "info": self.info,
                "coarse": [e.to_dict() for e in self.coarse], "members": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], space: SearchSpace | None = None) -> "Family":
        """Inverse of :meth:`to_dict`. With ``space`` every architecture is validated (needed for a space built from
        a custom table; without it the genes are taken as stored)."""
        if not isinstance(d, Mapping) or d.get("format") != FAMILY_FORMAT:
            raise ParseError("family", json.dumps(d, default=str)[:200], f'an object with "format": "{FAMILY_FORMAT}"')
        name = d["space"]
        if space is not None and space.name != name:
            raise InvalidValue("space", space.name, [name])
        entry = lambda e: Entry.from_dict(e, name, space)  # noqa: E731
        cost_keys = ("name", "budget", "skeleton", "fine_evaluated")
        members = [Member(m["name"], Budget.coerce(m["budget"], 1.0),
                          entry({k: v for k, v in m.items() if k not in cost_keys}), entry(m["skeleton"]),
                          int(m["fine_evaluated"])) for m in d["members"]]
        return cls(name, [entry(e) for e in d["coarse"]], members, dict(d.get("info", {})))

    def save(self, path: str | Path) -> None:
        """Write ``family.json`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | None = None) -> "Family":
        """Read a ``family.json`` written by :meth:`save`."""
        if not Path(path).is_file():
            raise DataError(f"family file: {str(path)!r} does not exist")
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ParseError("family file", str(path), f"JSON ({exc})") from None
        return cls.from_dict(data, space)
