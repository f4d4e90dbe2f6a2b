"""The :class:`Strategy` contract: ask / tell search over a :class:`~nasforge.spaces.base.SearchSpace`.

A strategy proposes :class:`~nasforge.trial.Candidate` s (``ask``) and learns from finished
:class:`~nasforge.trial.Trial` s (``tell``). The base class owns everything the concrete strategies share:

* a seeded ``numpy.random.Generator`` (never the global RNG);
* **deduplication** by :meth:`Architecture.key`: an architecture that was already asked (told, or still in
  flight) is never asked again. A strategy's own operator gets :attr:`Strategy.dedup_tries` attempts, then the
  base falls back to up to :attr:`Strategy.dedup_tries` uniform samples; only when all of those were asked
  before does it return a duplicate, flagged ``info["duplicate"] = True`` (the feasible part of the space is
  then, in practice, exhausted);
* **constraints** on any cost, :class:`Constraint` ``(name, min, max)`` evaluated with ``cost_fn(arch) ->
  {name: value}`` (analytic params / FLOPs, a latency lookup table...): a violating candidate is never asked, it
  is regenerated (PAD-NAS Sec. 3.2, "we discard the architectures that violate the constraint in the crossover
  and mutation"); when no feasible candidate turns up in the bounded tries, :class:`InvalidValue` names them;
* failed trials (and trials whose metric is NaN) are remembered as seen but never used as parents;
* ``state_dict`` / ``load_state_dict`` (JSON-serialisable; exact resume) and ``rebuild(trials)`` (replay of
  stored trials into a fresh strategy when no state was saved).

Concrete strategies implement :meth:`Strategy._propose` and :meth:`Strategy._observe`, and declare their
hyper-parameters in a :class:`Hyper` table (named and defaulted as in their papers).
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

import numpy as np

from ..arch import Architecture
from ..errors import InvalidArchitecture, InvalidValue
from ..registry import STRATEGIES
from ..spaces.base import SearchSpace
from ..trial import Candidate, Result, Trial, TrialState

__all__ = ["Constraint", "CostFn", "Hyper", "Strategy", "register_strategy"]

CostFn = Callable[[Architecture], Mapping[str, float]]
STATE_VERSION = 1


@dataclass(frozen=True)
class Constraint:
    """Bounds on one cost: ``min <= cost_fn(arch)[name] <= max`` (either bound may be ``None``).

    PAD-NAS Eq. 2: ``Lat_min <= Latency(s) <= Lat_max`` is ``Constraint("latency", 60.0, 70.0)``.
    """

    name: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidValue("constraint name", self.name, "a non-empty cost name, e.g. 'latency' or 'flops'")
        for bound in ("min", "max"):
            v = getattr(self, bound)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v)):
                raise InvalidValue(f"constraint {self.name!r} {bound}", v, "a number or None")
        if self.min is None and self.max is None:
            raise InvalidValue(f"constraint {self.name!r}", "no bounds", "at least one of min, max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidValue(f"constraint {self.name!r} min", self.min, f"a value <= max ({self.max})")

    @classmethod
    def coerce(cls, value: "Constraint | Mapping[str, Any] | Sequence[Any]") -> "Constraint":
        """A :class:`Constraint` from itself, a mapping ``{"name", "min", "max"}`` or a tuple ``(name, min, max)``."""
        if isinstance(value, Constraint):
            return value
        if isinstance(value, Mapping):
            extra = set(value) - {"name", "min", "max"}
            if extra or "name" not in value:
                raise InvalidValue("constraint", dict(value), "a mapping with keys name, min, max")
            return cls(value["name"], value.get("min"), value.get("max"))
        if isinstance(value, (tuple, list)) and len(value) == 3:
            return cls(*value)
        raise InvalidValue("constraint", value, "Constraint(name, min, max), a mapping or a (name, min, max) tuple")

    def satisfied(self, costs: Mapping[str, float]) -> bool:
        """Whether ``costs[name]`` lies within the bounds (inclusive)."""
        if self.name not in costs:
            raise InvalidValue("constraint", self.name, sorted(costs) or "costs returned by cost_fn")
        v = float(costs[self.name])
        return not math.isnan(v) and (self.min is None or v >= self.min) and (self.max is None or v <= self.max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"{lo} <= {self.name} <= {hi}"


@dataclass(frozen=True)
class Hyper:
    """One hyper-parameter of a strategy: default, type and inclusive bounds (``nullable`` allows ``None``)."""

    default: Any
    kind: type
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    doc: str = ""

    def allowed(self) -> str:
        rng = f" in [{self.low if self.low is not None else '-inf'}, {self.high if self.high is not None else 'inf'}]"
        text = f"{self.kind.__name__}{rng if (self.low is not None or self.high is not None) else ''}"
        return text + (" or None" if self.nullable else "")

    def check(self, field: str, value: Any, where: str) -> Any:
        """``value`` converted to :attr:`kind` (ints accepted for floats), or :class:`InvalidValue`."""
        if value is None and self.nullable:
            return None
        ok = isinstance(value, self.kind) and not (self.kind is not bool and isinstance(value, bool))
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok or (isinstance(value, float) and math.isnan(value)):
            raise InvalidValue(field, value, self.allowed(), where=where)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise InvalidValue(field, value, self.allowed(), where=where)
        return value


def _trial_to_dict(t: Trial) -> dict[str, Any]:
    return {"id": t.id, "genes": t.arch.to_dict(), "state": t.state.value, "parents": list(t.parents),
            "generation": t.generation, "metrics": dict(t.result.metrics) if t.result else None,
            "costs": dict(t.result.costs) if t.result else None}


class Strategy(ABC):
    """Base class of every search strategy (see the module docstring for the shared behaviour).

    Parameters: ``space`` (a :class:`SearchSpace`), ``seed`` (of the strategy's own generator), ``metric`` (the
    result metric to optimise; a cost name works too) and ``mode`` (``"max"`` / ``"min"``), ``constraints``
    (:class:`Constraint` s, evaluated with ``cost_fn``) and the strategy's hyper-parameters (:attr:`hyper`).
    """

    #: registry name, set by :func:`register_strategy`
    name: ClassVar[str] = "abstract"
    #: hyper-parameters: name -> :class:`Hyper` (paper names and defaults)
    hyper: ClassVar[dict[str, Hyper]] = {}
    #: attempts of the strategy's own operator, then of uniform sampling, before a duplicate is returned
    dedup_tries: ClassVar[int] = 100
    #: with constraints, further uniform draws before a narrow feasible region is declared unsatisfiable
    constraint_tries: ClassVar[int] = 20_000

    def __init__(self, space: SearchSpace, *, seed: int, metric: str = "accuracy", mode: str = "max",
                 constraints: Iterable[Constraint | Mapping[str, Any] | Sequence[Any]] = (),
                 cost_fn: CostFn | None = None, pool: Iterable[Architecture] | None = None, **hyper: Any) -> None:
        where = f"strategy {self.name!r}"
        if not isinstance(space, SearchSpace):
            raise InvalidValue("space", space, "a SearchSpace instance (see nasforge.get_space)", where=where)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidValue("seed", seed, "a non-negative int", where=where)
        if not isinstance(metric, str) or not metric:
            raise InvalidValue("metric", metric, "a metric name, e.g. 'accuracy'", where=where)
        if mode not in ("max", "min"):
            raise InvalidValue("mode", mode, ["max", "min"], where=where)
        self.space, self.seed, self.metric, self.mode = space, int(seed), metric, mode
        if isinstance(constraints, (Constraint, Mapping)):
            constraints = [constraints]
        self.constraints: tuple[Constraint, ...] = tuple(Constraint.coerce(c) for c in constraints)
        if self.constraints and cost_fn is None:
            raise InvalidValue("cost_fn", None, "a callable arch -> {cost: value} when constraints are given",
                               where=where)
        if cost_fn is not None and not callable(cost_fn):
            raise InvalidValue("cost_fn", cost_fn, "a callable arch -> {cost: value}", where=where)
        self.cost_fn = cost_fn
        #: with a pool (DCNAS's architecture set A), every candidate is a member: children outside it are
        #: regenerated like infeasible ones, and uniform draws are uniform over the pool
        self.pool: list[Architecture] | None = None if pool is None else [space.validate(a) for a in pool]
        self._pool_keys = None if self.pool is None else {a.key() for a in self.pool}
        if self.pool is not None and not self.pool:
            raise InvalidValue("pool", [], "at least one architecture, or None", where=where)
        for key in hyper:
            if key not in self.hyper:
                raise InvalidValue("hyper-parameter", key, sorted(self.hyper) or "none", where=where)
        self.hp: dict[str, Any] = {k: h.check(k, hyper.get(k, h.default), where) for k, h in self.hyper.items()}
        self._check_hyper(where)
        self._rng = np.random.default_rng(self.seed)
        self._seen: dict[str, None] = {}  # every key asked or told (= told keys + in-flight keys)
        self._pending: dict[str, None] = {}  # asked, not yet told (in flight)
        self._trials: dict[int, Trial] = {}  # told trials, in tell order
        self._scores: dict[int, float | None] = {}  # trial id -> score (maximisation form), None if unusable
        self._n_asked = 0
        self._cost_cache: dict[str, Mapping[str, float]] = {}

    # ------------------------------------------------------------------------------------------- to override
    def _check_hyper(self, where: str) -> None:
        """Cross-checks between hyper-parameters (raise :class:`InvalidValue`). Default: none."""

    @abstractmethod
    def _propose(self) -> Candidate:
        """One candidate from the strategy's operator (may repeat a seen one; the base deduplicates)."""

    def _precheck(self, trial: Trial, score: float | None) -> None:
        """Validate a trial before anything is recorded (raise :class:`InvalidValue`). Default: nothing."""

    def _on_ask(self, cand: Candidate) -> None:
        """Bookkeeping once ``cand`` is accepted and handed out (also called while rebuilding)."""

    @abstractmethod
    def _observe(self, trial: Trial, score: float | None) -> None:
        """Learn from a told trial; ``score`` is the metric in maximisation form, ``None`` for failed trials."""

    def _extra_state(self) -> dict[str, Any]:
        """The subclass's own JSON-serialisable state."""
        return {}

    def _load_extra_state(self, d: Mapping[str, Any]) -> None:
        """Inverse of :meth:`_extra_state`."""

    def _after_rebuild(self) -> None:
        """Re-derive the subclass's working state after :meth:`rebuild` replayed all trials."""

    @property
    def _generation(self) -> int:
        """Generation given to fallback (uniform) candidates."""
        return 0

    # ------------------------------------------------------------------------------------------- public API
    def can_ask(self) -> bool:
        """Whether :meth:`ask` can propose a candidate now. Steady-state strategies always can; a generational
        one (MENAS) returns False while it waits for in-flight trials of its generation, or when its schedule is
        done (then a :class:`~nasforge.study.Study` stops once nothing is running)."""
        return True

    def ask(self, n: int = 1) -> list[Candidate]:
        """``n`` new, distinct, feasible candidates (see the module docstring for the fallback rules)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidValue("n", n, "a positive int", where=f"strategy {self.name!r}.ask")
        out = []
        for _ in range(int(n)):
            cand = self._next_candidate()
            key = cand.arch.key()
            self._seen[key] = None
            self._pending[key] = None
            self._n_asked += 1
            self._on_ask(cand)
            out.append(cand)
        return out

    def tell(self, trial: Trial) -> None:
        """Record a finished (complete or failed) trial. A complete trial must report :attr:`metric`."""
        where = f"strategy {self.name!r}.tell"
        if not isinstance(trial, Trial):
            raise InvalidValue("trial", type(trial).__name__, "a nasforge.trial.Trial", where=where)
        if trial.id in self._trials:
            raise InvalidValue("trial.id", trial.id, "an id that was not told before", where=where)
        stored, score = self._compact(trial, where)
        self._precheck(stored, score)
        self._record(stored, score)
        self._observe(stored, score)

    def _compact(self, trial: Trial, where: str) -> tuple[Trial, float | None]:
        """A validated copy of a finished trial keeping only what strategies use, and its score."""
        state = TrialState(trial.state)
        if state is TrialState.RUNNING:
            raise InvalidValue("trial.state", state.value, ["complete", "failed"], where=where)
        arch = self.space.validate(trial.arch)
        score = None
        if state is TrialState.COMPLETE:
            value = trial.metric(self.metric)
            if value is None:
                have = sorted({*trial.result.metrics, *trial.result.costs}) if trial.result else []
                raise InvalidValue("metric", self.metric, have or "a result with metrics", where=where)
            value = float(value)
            score = None if math.isnan(value) else (value if self.mode == "max" else -value)
        res = trial.result
        stored = Trial(id=int(trial.id), arch=arch, state=state, parents=tuple(trial.parents),
                       generation=int(trial.generation),
                       result=Result(metrics=dict(res.metrics), costs=dict(res.costs)) if res is not None else None)
        return stored, score

    def _record(self, stored: Trial, score: float | None) -> None:
        key = stored.arch.key()
        self._seen[key] = None
        self._pending.pop(key, None)
        self._trials[stored.id] = stored
        self._scores[stored.id] = score

    def score(self, trial: Trial) -> float | None:
        """The trial's metric in maximisation form (``-value`` when ``mode == "min"``); ``None`` if unusable."""
        if trial.state is not TrialState.COMPLETE:
            return None
        v = trial.metric(self.metric)
        if v is None or math.isnan(float(v)):
            return None
        return float(v) if self.mode == "max" else -float(v)

    @property
    def trials(self) -> list[Trial]:
        """Told trials, in tell order (compact copies: metrics and costs only)."""
        return list(self._trials.values())

    @property
    def n_asked(self) -> int:
        return self._n_asked

    def best(self) -> Trial | None:
        """The complete trial with the best metric (earliest on ties), or ``None``."""
        best, best_s = None, -math.inf
        for tid, s in self._scores.items():
            if s is not None and s > best_s:
                best, best_s = self._trials[tid], s
        return best

    def costs(self, arch: Architecture) -> Mapping[str, float]:
        """``cost_fn(arch)``, cached by key (``{}`` without a cost function)."""
        if self.cost_fn is None:
            return {}
        key = arch.key()
        if key not in self._cost_cache:
            got = self.cost_fn(arch)
            if not isinstance(got, Mapping):
                raise InvalidValue("cost_fn result", type(got).__name__, "a mapping {cost name: value}")
            self._cost_cache[key] = dict(got)
        return self._cost_cache[key]

    def feasible(self, arch: Architecture) -> bool:
        """Whether ``arch`` satisfies every constraint (and is a member of the pool, when there is one)."""
        if self._pool_keys is not None and arch.key() not in self._pool_keys:
            return False
        if not self.constraints:
            return True
        c = self.costs(arch)
        return all(k.satisfied(c) for k in self.constraints)

    # ------------------------------------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {"strategy": self.name, "space": self.space.name, "seed": self.seed, "metric": self.metric,
                "mode": self.mode, "constraints": [c.to_dict() for c in self.constraints], "hyper": dict(self.hp)}

    def state_dict(self, *, include_trials: bool = True) -> dict[str, Any]:
        """Everything needed to continue exactly: config, RNG state, asks in flight, told trials (in tell order),
        subclass state. JSON-serialisable, and a snapshot (it shares no mutable state with ``self``).

        With ``include_trials=False`` only the told trial *ids* are kept (a few bytes per trial instead of the
        compact trials), for a store that saves the state after every tell and already holds the trials: pass
        them back to :meth:`load_state_dict`.
        """
        d = {"version": STATE_VERSION, "config": self._config(), "rng": _jsonable(self._rng.bit_generator.state),
             "pending": list(self._pending), "n_asked": self._n_asked, "told": list(self._trials),
             "extra": _jsonable(self._extra_state())}
        if include_trials:
            d["trials"] = [_trial_to_dict(t) for t in self._trials.values()]
        return d

    def load_state_dict(self, d: Mapping[str, Any], trials: Iterable[Trial] | None = None) -> None:
        """Restore :meth:`state_dict` output into this strategy, which must have the same configuration.

        ``trials`` (any order, extra ones ignored) is required when the state was saved without its trials.
        """
        where = f"strategy {self.name!r}.load_state_dict"
        if not isinstance(d, Mapping) or d.get("version") != STATE_VERSION:
            raise InvalidValue("state_dict version", d.get("version") if isinstance(d, Mapping) else d,
                               [STATE_VERSION], where=where)
        for k, v in _jsonable(self._config()).items():
            if d["config"].get(k) != v:
                raise InvalidValue(f"state_dict config {k}", d["config"].get(k), [v], where=where)
        if "trials" in d:
            told = [Trial(id=int(td["id"]), arch=self.space.make(td["genes"]), state=TrialState(td["state"]),
                          result=None if td["metrics"] is None else Result(dict(td["metrics"]), dict(td["costs"])),
                          parents=tuple(td["parents"]), generation=int(td["generation"])) for td in d["trials"]]
        else:
            by_id = {t.id: t for t in (trials or ())}
            missing = [i for i in d["told"] if i not in by_id]
            if missing:
                raise InvalidValue("trials", f"missing ids {missing[:5]}",
                                   "every trial id of state_dict['told'] (the state was saved without trials)",
                                   where=where)
            told = [by_id[i] for i in d["told"]]
        self._rng.bit_generator.state = d["rng"]
        self._seen, self._pending = {}, dict.fromkeys(d["pending"])
        self._n_asked = int(d["n_asked"])
        self._trials, self._scores = {}, {}
        for t in told:
            self._record(*self._compact(t, where))
        self._seen.update(self._pending)
        self._load_extra_state(d["extra"])

    def rebuild(self, trials: Iterable[Trial]) -> None:
        """Replay stored trials into this fresh strategy (for stores without a saved :meth:`state_dict`).

        Every trial is first marked as asked (id order; running ones stay in flight, so they are not asked
        again), then finished ones are told in the order they finished (``finished_at``, then id). The
        population / archive is restored; the random stream is re-seeded from ``(seed, len(trials))`` so a
        rebuild is deterministic, but it is *not* the stream of the original run: exact resume needs
        :meth:`state_dict`.
        """
        if self._n_asked or self._trials:
            raise InvalidValue("rebuild", f"{self._n_asked} asks", "a fresh strategy (nothing asked or told)")
        trials = sorted(trials, key=lambda t: t.id)
        for t in trials:
            arch = self.space.validate(t.arch)
            key = arch.key()
            if key not in self._seen:
                self._seen[key] = None
                self._pending[key] = None
                self._n_asked += 1
                self._on_ask(Candidate(arch, tuple(t.parents), int(t.generation), dict(getattr(t, "info", {}) or {})))
        done = [t for t in trials if TrialState(t.state) is not TrialState.RUNNING]
        for t in sorted(done, key=lambda t: (t.finished_at if t.finished_at is not None else math.inf, t.id)):
            self.tell(t)
        self._rng = np.random.default_rng([self.seed, len(trials)])
        self._after_rebuild()

    # ------------------------------------------------------------------------------------------- internals
    def _next_candidate(self) -> Candidate:
        duplicate: Candidate | None = None
        for attempt in range(2 * self.dedup_tries):
            try:
                if attempt < self.dedup_tries:
                    cand = self._propose()
                else:
                    cand = Candidate(self._sample(), (), self._generation, {"fallback": "uniform"})
            except InvalidArchitecture:
                continue
            if not self.feasible(cand.arch):
                continue
            if cand.arch.key() not in self._seen:
                return cand
            duplicate = duplicate or cand
        if self.constraints or self.pool is not None:  # a rare feasible region: keep drawing uniformly (bounded)
            for _ in range(self.constraint_tries):
                arch = self._sample()
                if self.feasible(arch) and arch.key() not in self._seen:
                    return Candidate(arch, (), self._generation, {"fallback": "uniform-feasible"})
        if duplicate is not None:
            return dataclasses.replace(duplicate, info={**duplicate.info, "duplicate": True})
        raise InvalidValue("constraints", [str(c) for c in self.constraints],
                           f"bounds met by some architecture of space {self.space.name!r} "
                           f"(none of {2 * self.dedup_tries + self.constraint_tries} new candidates satisfied them)",
                           where=f"strategy {self.name!r}")

    def _complete(self) -> list[tuple[Trial, float]]:
        """Told trials with a usable score, in tell order."""
        return [(self._trials[tid], s) for tid, s in self._scores.items() if s is not None]

    def _random_candidate(self, generation: int = 0) -> Candidate:
        return Candidate(self._sample(), (), generation)

    def _sample(self) -> Architecture:
        """A uniform draw from the space, or from the pool when there is one."""
        if self.pool is None:
            return self.space.sample(self._rng)
        return self.pool[int(self._rng.integers(len(self.pool)))]


def _jsonable(x: Any) -> Any:
    """Tuples to lists, numpy scalars to Python numbers, recursively (so a JSON round trip is the identity)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


S = TypeVar("S", bound=type)


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator registering a :class:`Strategy` subclass under ``name`` (and setting its ``name``)."""

    def deco(cls: S) -> S:
        cls.name = name
        STRATEGIES.register(name)(cls)
        return cls

    return deco
