"""Constrained multi-objective evolution: NSGA-II (Deb et al. 2002) as PAD-NAS's Constrained Evolutionary
Search (CES, padnas.txt Sec. 3.2 and 4.1).

Objectives: maximise the metric (e.g. one-shot accuracy) and minimise a cost (e.g. latency from a lookup
table). The cost bounds ``Lat_min <= cost <= Lat_max`` (PAD-NAS Eq. 2) are :class:`~.base.Constraint` s: a
child that violates them is discarded during crossover / mutation and regenerated (the base class does this
for every strategy). Unlike SPOS's evolution, nothing is discarded by accuracy: every evaluated architecture
is sorted each generation, and :meth:`NSGA2.ranks` gives the non-domination rank of every one of them (PAD-NAS
counts operations over architectures of rank < 10, with the Pareto frontier at rank 1).

Duplicates. Polynomial mutation with ``mutation_prob = 1/n`` and ``eta_m = 20`` moves few genes by little, so many
offspring round back to an architecture already evaluated (measured on NAS-Bench-201, population 32, 10
generations: half of the bred offspring). An offspring is de-duplicated against the population and the archive
(every architecture asked before: evaluated, failed or in flight): its mutation is redrawn from the same crossed
encoding up to :attr:`NSGA2.mutation_retries` times; if it still repeats one, the base class breeds anew (new
tournaments) and finally falls back to uniform samples. :attr:`NSGA2.duplicates` counts what happened and is part
of the strategy state (and of ``pareto.json`` / PAD-NAS's stage records).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import InvalidValue
from ..pareto import crowding_distance, fast_non_dominated_sort
from ..trial import Candidate, Trial
from .base import Hyper, register_strategy
from .evolution import GenerationalStrategy

__all__ = ["NSGA2", "fast_non_dominated_sort", "crowding_distance", "two_point_crossover",
           "polynomial_mutation"]


def two_point_crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``a`` with the segment between two random cut points taken from ``b`` (first child of two-point crossover)."""
    n = a.shape[0]
    if n < 2:
        return a.copy()
    i, j = int(rng.integers(1, n + 1)), int(rng.integers(1, n))  # two distinct cut points in 1..n
    j += j >= i
    i, j = min(i, j), max(i, j)
    child = a.copy()
    child[i:j] = b[i:j]
    return child


def polynomial_mutation(x: np.ndarray, upper: np.ndarray, rng: np.random.Generator, prob: float,
                        eta: float) -> np.ndarray:
    """Bounded polynomial mutation (Deb & Agrawal 1995; the NSGA-II operator) on ``0 <= x <= upper``.

    Each gene mutates with probability ``prob``: with ``u ~ U(0, 1)``, ``d1 = x / upper``, ``d2 = 1 - d1``,
    ``dq = (2u + (1 - 2u)(1 - d1)^(eta+1))^(1/(eta+1)) - 1`` if ``u < 0.5`` else
    ``1 - (2(1 - u) + 2(u - 0.5)(1 - d2)^(eta+1))^(1/(eta+1))``, and ``x' = clip(x + dq * upper)``.
    Genes with ``upper == 0`` are left alone. Real values are returned (decoding rounds them).
    """
    x = np.asarray(x, dtype=float).copy()
    upper = np.asarray(upper, dtype=float)
    hit = (rng.random(x.shape[0]) < prob) & (upper > 0)
    u = rng.random(x.shape[0])
    span = np.where(upper > 0, upper, 1.0)
    d1, d2 = x / span, 1.0 - x / span
    p = 1.0 / (eta + 1.0)
    lo = (2 * u + (1 - 2 * u) * (1 - d1) ** (eta + 1)) ** p - 1
    hi = 1 - (2 * (1 - u) + 2 * (u - 0.5) * (1 - d2) ** (eta + 1)) ** p
    dq = np.where(u < 0.5, lo, hi)
    return np.where(hit, np.clip(x + dq * span, 0.0, upper), x)


@register_strategy("nsga2")
class NSGA2(GenerationalStrategy):
    """PAD-NAS Constrained Evolutionary Search: NSGA-II over (metric, cost) with cost bounds.

    Generation 0 is ``population_size`` uniform feasible samples. At the start of each later generation every
    evaluated architecture is sorted (fast non-dominated sort + crowding distance, Deb 2002 Sec. III) and the
    best ``population_size`` by (rank, crowding) become parents. A child: two binary tournaments on the
    crowded-comparison order pick the parents; with ``crossover_prob`` a two-point crossover of their
    encodings (:meth:`SearchSpace.encode`), else a copy of the first; then polynomial mutation of each gene with
    ``mutation_prob`` (distribution index ``eta_m``); :meth:`SearchSpace.decode` rounds it back.

    Defaults: PAD-NAS Sec. 4.1 (population 64, 40 iterations, two-point crossover, polynomial mutation); the
    paper gives no probabilities, so those are Deb et al.'s: ``crossover_prob = 0.9``, ``mutation_prob = 1/n``
    (n = encoding length) and ``eta_m = 20``. ``cost`` names the minimised objective, read from the trial's
    costs (or metrics), else from ``cost_fn``.
    """

    #: the cost objective by default (hyper-parameter ``cost``): the search config builds a cost function for it
    cost_objective = "latency_ms"
    #: redraws of an offspring's mutation while it repeats an architecture of the population / archive
    mutation_retries: ClassVar[int] = 10
    #: the counters of :attr:`duplicates`
    DUPLICATE_COUNTS: ClassVar[tuple[str, ...]] = ("offspring", "parent_copies", "rebred", "asked")

    hyper = {
        "population_size": Hyper(64, int, 2, None, doc="PAD-NAS: 64"),
        "max_iterations": Hyper(40, int, 1, None, doc="generations, initial included (PAD-NAS: 40)"),
        "crossover_prob": Hyper(0.9, float, 0.0, 1.0, doc="two-point crossover probability (Deb 2002: 0.9)"),
        "mutation_prob": Hyper(None, float, 0.0, 1.0, nullable=True, doc="per gene; None = 1/n (Deb 2002)"),
        "eta_m": Hyper(20.0, float, 0.0, None, doc="polynomial mutation distribution index (Deb 2002: 20)"),
        "cost": Hyper("latency_ms", str, doc="the cost objective (minimised)"),
    }

    def __init__(self, space: Any, **kw: Any) -> None:
        super().__init__(space, **kw)
        self._cost_of: dict[int, float] = {}  # trial id -> cost objective (complete trials only)
        self._enc: dict[int, np.ndarray] = {}  # trial id -> encoding (a cache, not state)
        self._dups: dict[str, int] = dict.fromkeys(self.DUPLICATE_COUNTS, 0)

    @property
    def duplicates(self) -> dict[str, int]:
        """Duplicate offspring so far: ``offspring`` (mutated offspring that repeated an architecture of the
        population or the archive and were redrawn), ``parent_copies`` (those of them that were a copy of one of
        their own parents), ``rebred`` (offspring still repeating one after :attr:`mutation_retries` redraws, bred
        anew), ``asked`` (duplicates asked anyway because nothing new turned up: the space is exhausted)."""
        return dict(self._dups)

    # -- objectives ------------------------------------------------------------------------------------
    def _trial_cost(self, trial: Trial) -> float:
        name = self.hp["cost"]
        res = trial.result
        if res is not None and name in res.costs:
            return float(res.costs[name])
        if res is not None and name in res.metrics:
            return float(res.metrics[name])
        have = self.costs(trial.arch)
        if name not in have:
            names = sorted({*(res.costs if res else ()), *(res.metrics if res else ()), *have})
            raise InvalidValue("cost", name, names or "a cost in the results or from cost_fn",
                               where=f"strategy {self.name!r}")
        return float(have[name])

    def _precheck(self, trial: Trial, score: float | None) -> None:
        if score is not None:
            self._trial_cost(trial)  # raises early when the cost objective is missing

    def _observe(self, trial: Trial, score: float | None) -> None:
        if score is not None:
            c = self._trial_cost(trial)
            if math.isnan(c):
                self._scores[trial.id] = None  # unusable: treated like a failed trial
            else:
                self._cost_of[trial.id] = c

    def _archive(self) -> tuple[list[int], np.ndarray]:
        ids = [tid for tid, s in self._scores.items() if s is not None and tid in self._cost_of]
        objs = np.array([[-self._scores[i], self._cost_of[i]] for i in ids], dtype=float).reshape(-1, 2)
        return ids, objs

    def ranks(self) -> dict[int, int]:
        """Non-domination rank of every evaluated (complete) trial: ``{trial id: rank}``, Pareto front = 1."""
        ids, objs = self._archive()
        out = {}
        for r, front in enumerate(fast_non_dominated_sort(objs), start=1):
            for i in front:
                out[ids[i]] = r
        return out

    def pareto_front(self) -> list[Trial]:
        """The rank-1 trials (none dominated by another evaluated trial), by increasing cost."""
        ranks = self.ranks()
        return sorted((self._trials[i] for i, r in ranks.items() if r == 1),
                      key=lambda t: (self._cost_of[t.id], t.id))

    # -- evolution -------------------------------------------------------------------------------------
    def _select_parents(self) -> list[int]:
        """Best ``population_size`` of all evaluated by (rank, -crowding, tell order) (Deb 2002, Sec. III-C)."""
        ids, objs = self._archive()
        order: list[tuple[int, float, int]] = []
        for r, front in enumerate(fast_non_dominated_sort(objs)):
            crowd = crowding_distance(objs[front])
            order.extend((r, -float(c), int(i)) for i, c in zip(front, crowd))
        order.sort()
        return [ids[i] for _, _, i in order[: self.hp["population_size"]]]

    def _tournament(self) -> int:
        """Binary tournament on the crowded-comparison order (``_parents`` is sorted best first)."""
        i, j = self._rng.integers(len(self._parents), size=2)
        return self._parents[int(min(i, j))]

    def _breed(self, index: int) -> Candidate:
        """Tournaments, crossover, then polynomial mutation, redrawn (up to :attr:`mutation_retries` times) while
        the offspring repeats an architecture of the population or the archive (module docstring)."""
        a, b = self._trials[self._tournament()], self._trials[self._tournament()]
        va, vb = self._encoding(a), self._encoding(b)
        crossed = a.id != b.id and self._rng.random() < self.hp["crossover_prob"]
        base = two_point_crossover(va, vb, self._rng) if crossed else va
        prob = self.hp["mutation_prob"]
        prob = 1.0 / len(va) if prob is None else prob
        upper = self.space.bounds()
        parents = (a.id, b.id) if crossed else (a.id,)
        for attempt in range(self.mutation_retries + 1):
            x = polynomial_mutation(base, upper, self._rng, prob, self.hp["eta_m"])
            rounded = np.clip(np.rint(x), 0, upper)
            copy = next((p for p, vp in ((a, va), (b, vb)) if np.array_equal(rounded, vp)), None)
            arch = copy.arch if copy is not None else self.space.decode(x)  # a parent's copy: skip decoding
            if arch.key() not in self._seen:
                return Candidate(arch, parents, self._gen, {"mutation_retries": attempt} if attempt else {})
            self._dups["offspring"] += 1
            self._dups["parent_copies"] += copy is not None
        self._dups["rebred"] += 1
        return Candidate(arch, parents, self._gen)  # still a duplicate: the base class breeds anew

    def _encoding(self, trial: Trial) -> np.ndarray:
        if trial.id not in self._enc:
            self._enc[trial.id] = self.space.encode(trial.arch)
        return self._enc[trial.id]

    def _on_ask(self, cand: Candidate) -> None:
        super()._on_ask(cand)
        if cand.info.get("duplicate"):
            self._dups["asked"] += 1

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "cost_of": {str(k): v for k, v in self._cost_of.items()},
                "duplicates": dict(self._dups)}

    def _load_extra_state(self, d: Mapping[str, Any]) -> None:
        super()._load_extra_state(d)
        self._cost_of = {int(k): float(v) for k, v in d["cost_of"].items()}
        saved = d.get("duplicates") or {}  # states saved before the counters existed start them at 0
        self._dups = {k: int(saved.get(k, 0)) for k in self.DUPLICATE_COUNTS}
        for tid in self._scores:
            if self._scores[tid] is not None and tid not in self._cost_of:
                self._scores[tid] = None
