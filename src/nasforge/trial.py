"""Values that flow between strategies, evaluators, executors and the trial store.

* :class:`Candidate` — what a strategy proposes: an architecture plus its lineage (parent trial ids, generation).
* :class:`Result` — what an evaluator returns: metrics, costs, artifacts (e.g. a checkpoint path) and info.
* :class:`Trial` — one row of the trial store: a candidate, its state, its result or error, timings, checkpoint.

All are plain dataclasses that round-trip through JSON-compatible dicts (``to_dict`` / ``from_dict``).
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from .arch import Architecture

__all__ = ["Candidate", "Result", "Trial", "TrialState", "INTERRUPTED"]

#: error message given to trials found running after a crash (they are evaluated again on resume)
INTERRUPTED = "interrupted"


class TrialState(str, enum.Enum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class Candidate:
    """A proposed architecture with its lineage."""

    arch: Architecture
    parents: tuple[int, ...] = ()
    generation: int = 0
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Result:
    """What an evaluation produced. ``metrics`` are maximised or minimised as the study says; ``costs`` are
    e.g. ``params``, ``flops``, ``latency_ms``; ``artifacts`` map names to file paths; ``info`` is free JSON."""

    metrics: dict[str, float]
    costs: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        return cls(metrics=dict(d.get("metrics", {})), costs=dict(d.get("costs", {})),
                   artifacts=dict(d.get("artifacts", {})), info=dict(d.get("info", {})))


@dataclass
class Trial:
    """One evaluated (or running, or failed) architecture, as stored."""

    id: int
    arch: Architecture
    state: TrialState = TrialState.RUNNING
    result: Result | None = None
    parents: tuple[int, ...] = ()
    generation: int = 0
    seed: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    #: the proposing strategy's :attr:`Candidate.info` (e.g. MENAS's trial kind), stored with the trial
    info: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str, default: float | None = None) -> float | None:
        if self.result is None:
            return default
        if name in self.result.metrics:
            return self.result.metrics[name]
        return self.result.costs.get(name, default)
