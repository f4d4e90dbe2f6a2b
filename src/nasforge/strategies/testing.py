"""A small synthetic search space and objective for testing strategies (as ``optuna.testing`` does for samplers).

Used by nasforge's own contract tests and reusable by code that drives strategies (a study, an executor)
without a real benchmark. :class:`ToySpace` has a depth gene that masks the op genes beyond it
(canonicalisation), a width gene and one cross-gene constraint (depth 3 with width 32 is invalid), so strategies
meet every path of the :class:`~nasforge.spaces.base.SearchSpace` contract while staying tiny (90 architectures
by default, 956 with ``ToySpace("abcd", 4)``). It is not registered: pass the instance to a strategy.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from typing import TYPE_CHECKING, Any, Callable

from ..arch import Architecture
from ..errors import InvalidArchitecture, InvalidValue, ParseError
from ..spaces.base import Dimension, SearchSpace
from ..trial import Result

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["ToySpace", "jitter", "toy_accuracy", "toy_evaluate"]

OP_COST = {"a": 1, "b": 3, "c": 9, "d": 27}
OP_GAIN = {"a": 0.0, "b": 2.0, "c": 3.0, "d": 1.0}


class ToySpace(SearchSpace):
    """``depth`` in 1..max_depth, ``op{i}`` active for i < depth, ``width``; depth == 3 forbids width 32."""

    name = "toy-strategies"

    def __init__(self, ops: str = "abc", max_depth: int = 3, widths: tuple[int, ...] = (8, 16, 32)) -> None:
        if not ops or any(o not in OP_COST for o in ops) or len(set(ops)) != len(ops):
            raise InvalidValue("ops", ops, "distinct letters from 'abcd'", where="ToySpace")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise InvalidValue("max_depth", max_depth, "a positive int", where="ToySpace")
        self.ops, self.max_depth, self.widths = tuple(ops), max_depth, tuple(widths)
        self._cardinality: int | None = None

    def dimensions(self) -> tuple[Dimension, ...]:
        return (Dimension("depth", tuple(range(1, self.max_depth + 1))),
                *(Dimension(f"op{i}", self.ops) for i in range(self.max_depth)),
                Dimension("width", self.widths))

    def is_active(self, label: str, genes: Any) -> bool:
        return not label.startswith("op") or int(label[2:]) < int(genes.get("depth", self.max_depth))

    def check(self, arch: Architecture) -> None:
        if arch["depth"] == 3 and arch["width"] == 32:
            raise InvalidArchitecture("width", 32, "8 or 16 when depth is 3", where=f"space {self.name!r}")

    def format(self, arch: Architecture) -> str:
        return json.dumps(arch.to_dict(), sort_keys=True)

    def parse(self, text: str) -> Architecture:
        try:
            return self.make(json.loads(text))
        except ValueError as exc:
            raise ParseError("toy architecture", text, "JSON genes") from exc

    def build(self, arch: Architecture, input_shape: Any = None, num_classes: Any = None) -> "nn.Module":
        """An identity network: the toy space is for search logic, not training."""
        import torch.nn as nn

        return nn.Identity()

    def flops(self, arch: Architecture, input_shape: Any = None, num_classes: Any = None) -> int:
        return int(arch["width"]) * sum(OP_COST[arch[f"op{i}"]] for i in range(int(arch["depth"])))

    def params(self, arch: Architecture, input_shape: Any = None, num_classes: Any = None) -> int:
        return self.flops(arch) // 2

    def all(self) -> list[Architecture]:
        """Every valid architecture (enumerated)."""
        out = []
        for d in range(1, self.max_depth + 1):
            for ops in itertools.product(self.ops, repeat=d):
                for w in self.widths:
                    g = {"depth": d, "width": w, **{f"op{i}": o for i, o in enumerate(ops)}}
                    try:
                        out.append(self.make(g))
                    except InvalidArchitecture:
                        pass
        return out

    def smallest(self) -> Architecture:
        return min(self.all(), key=self.flops)

    def largest(self) -> Architecture:
        return max(self.all(), key=self.flops)

    def cardinality(self) -> int:
        if self._cardinality is None:
            self._cardinality = len(self.all())
        return self._cardinality


def jitter(arch: Architecture) -> float:
    """A deterministic pseudo-random value in [0, 1) per architecture."""
    return int(hashlib.sha1(arch.key().encode()).hexdigest()[:8], 16) / 2**32


def toy_accuracy(arch: Architecture) -> float:
    """A rugged but structured objective: op gains, a width bonus and a small per-architecture jitter."""
    gain = sum(OP_GAIN[arch[f"op{i}"]] for i in range(int(arch["depth"])))
    return 50.0 + 5.0 * gain + 0.1 * int(arch["width"]) + jitter(arch)


def toy_evaluate(space: ToySpace, fail_rate: float = 0.0) -> Callable[[Architecture], Result]:
    """An evaluate function returning accuracy and costs; fails (raises) for a deterministic subset of archs."""

    def evaluate(arch: Architecture) -> Result:
        if jitter(arch) < fail_rate:
            raise RuntimeError("simulated training crash")
        return Result(metrics={"accuracy": toy_accuracy(arch)},
                      costs={"flops": float(space.flops(arch)), "params": float(space.params(arch))})

    return evaluate
