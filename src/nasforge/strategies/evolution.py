"""Evolutionary strategies: regularized (aging) evolution and the generation-synchronous evolution of SPOS / DCNAS.

* :class:`RegularizedEvolution` — Real et al., "Regularized Evolution for Image Classifier Architecture Search",
  AAAI 2019, Algorithm 1 (tournament selection of the best of ``S`` samples, mutation, aging removal of the
  oldest member).
* :class:`SposEvolution` — the evolutionary search of SPOS (Guo et al. 2020, Sec. 3.4 / Algorithm 1) that DCNAS
  uses for its final search (dcnas.txt, Sec. 4.1 "Search": population 50, max iteration 20, mutation and
  crossover performed on the top-10 architectures of each iteration).
* :class:`GenerationalStrategy` — the shared generation bookkeeping (also used by NSGA-II in :mod:`.nsga2`).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Mapping

import numpy as np

from ..arch import Architecture
from ..errors import InvalidValue
from ..spaces.base import SearchSpace
from ..trial import Candidate, Trial
from .base import Hyper, Strategy, register_strategy

__all__ = ["RegularizedEvolution", "GenerationalStrategy", "SposEvolution", "resample_genes"]


def resample_genes(space: SearchSpace, arch: Architecture, rng: np.random.Generator, prob: float) -> Architecture:
    """Each encoded gene redrawn uniformly with probability ``prob`` (SPOS mutation; may return ``arch`` itself).

    Works on :meth:`SearchSpace.encode` indices, so it applies to every space; the result goes through
    :meth:`SearchSpace.decode` and is therefore canonical and valid (or raises ``InvalidArchitecture``).
    """
    vec = space.encode(arch)
    hit = rng.random(vec.shape[0]) < prob
    new = rng.integers(0, space.bounds() + 1)
    return space.decode(np.where(hit, new, vec))


@register_strategy("regularized-evolution")
class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution, Real et al. 2019, Algorithm 1.

    The first ``population_size`` asks are uniform samples. Afterwards each child is a single-gene mutation
    (:meth:`SearchSpace.mutate`) of the best of ``sample_size`` members drawn without replacement from the
    population; every complete trial joins the population and the *oldest* member (first told) leaves once
    there are more than ``population_size``. Failed trials never join.

    Hyper-parameters: ``population_size`` P and ``sample_size`` S. Defaults P=10, S=3 are those of the
    NAS-Bench-201 baseline (Dong & Yang 2020, REA); the AmoebaNet search itself used P=100, S=25.
    """

    hyper = {
        "population_size": Hyper(10, int, 1, None, doc="P: members kept (aging removes the oldest)"),
        "sample_size": Hyper(3, int, 1, None, doc="S: members drawn per tournament"),
    }

    def __init__(self, space: SearchSpace, **kw: Any) -> None:
        super().__init__(space, **kw)
        self._population: list[int] = []  # trial ids, oldest first

    def _check_hyper(self, where: str) -> None:
        if self.hp["sample_size"] > self.hp["population_size"]:
            raise InvalidValue("sample_size", self.hp["sample_size"],
                               f"at most population_size ({self.hp['population_size']})", where=where)

    def _propose(self) -> Candidate:
        if self._n_asked < self.hp["population_size"] or not self._population:
            return self._random_candidate()
        k = min(self.hp["sample_size"], len(self._population))
        drawn = self._rng.choice(len(self._population), size=k, replace=False)
        parent = max((self._trials[self._population[i]] for i in drawn), key=lambda t: self._scores[t.id])
        child = self.space.mutate(parent.arch, self._rng)
        return Candidate(child, (parent.id,), parent.generation + 1)

    def _observe(self, trial: Trial, score: float | None) -> None:
        if score is None:
            return
        self._population.append(trial.id)
        if len(self._population) > self.hp["population_size"]:
            self._population.pop(0)

    def _extra_state(self) -> dict[str, Any]:
        return {"population": list(self._population)}

    def _load_extra_state(self, d: Mapping[str, Any]) -> None:
        self._population = [int(i) for i in d["population"]]

    @property
    def population(self) -> list[Trial]:
        """Current population, oldest first."""
        return [self._trials[i] for i in self._population]


class GenerationalStrategy(Strategy):
    """Generation-synchronous evolution: generation 0 is ``population_size`` uniform samples; each later
    generation's children are bred from the parents selected (by :meth:`_select_parents`) when it starts.

    A generation starts when the previous one has been fully asked, so an ``ask(population_size)`` returns one
    generation. In a sequential ask/tell loop all of the previous generation is told by then; with parallel
    executors parents are selected from whatever has been told. ``max_iterations`` generations (initial one
    included) make the nominal budget :attr:`budget`; asking beyond it keeps evolving.
    """

    def __init__(self, space: SearchSpace, **kw: Any) -> None:
        super().__init__(space, **kw)
        self._gen = 0
        self._gen_asked = 0
        self._parents: list[int] = []  # trial ids, best first

    @abstractmethod
    def _select_parents(self) -> list[int]:
        """Trial ids of the parents of a new generation, best first."""

    @abstractmethod
    def _breed(self, index: int) -> Candidate:
        """Child number ``index`` of the current generation (> 0) from :attr:`_parents`."""

    @property
    def _generation(self) -> int:
        return self._gen

    @property
    def generation(self) -> int:
        """The generation the next ask belongs to (0 = initial population)."""
        return self._gen + (self._gen_asked >= self.hp["population_size"])

    @property
    def budget(self) -> int:
        """Nominal number of evaluations: ``population_size * max_iterations``."""
        return self.hp["population_size"] * self.hp["max_iterations"]

    @property
    def finished(self) -> bool:
        """Whether the nominal budget has been asked."""
        return self._n_asked >= self.budget

    def _propose(self) -> Candidate:
        if self._gen_asked >= self.hp["population_size"]:
            self._gen, self._gen_asked = self._gen + 1, 0
            self._parents = self._select_parents()
        if self._gen == 0 or not self._parents:
            return self._random_candidate(self._gen)
        return self._breed(self._gen_asked)

    def _on_ask(self, cand: Candidate) -> None:
        if cand.generation > self._gen:  # only while rebuilding: generations come from the stored trials
            self._gen, self._gen_asked = cand.generation, 0
        if cand.generation == self._gen:
            self._gen_asked += 1

    def _after_rebuild(self) -> None:
        self._parents = self._select_parents() if self._gen > 0 else []

    def _extra_state(self) -> dict[str, Any]:
        return {"gen": self._gen, "gen_asked": self._gen_asked, "parents": list(self._parents)}

    def _load_extra_state(self, d: Mapping[str, Any]) -> None:
        self._gen, self._gen_asked = int(d["gen"]), int(d["gen_asked"])
        self._parents = [int(i) for i in d["parents"]]


@register_strategy("spos-evolution")
class SposEvolution(GenerationalStrategy):
    """The evolutionary search of SPOS (Guo et al. 2020, Sec. 3.4) as used by DCNAS (dcnas.txt Sec. 4.1).

    Generation 0 is ``population_size`` uniform samples. Each later generation takes the ``top_k`` best
    architectures evaluated so far (over all generations) as parents and makes ``mutation_num`` children by
    redrawing each gene with probability ``mutation_prob`` (:func:`resample_genes`), ``crossover_num`` by
    uniform crossover of two distinct parents (:meth:`SearchSpace.crossover`), and fills the rest of the
    generation with uniform samples. Defaults: DCNAS's population 50, 20 iterations, top-10; the split
    25 mutations / 25 crossovers and ``mutation_prob = 0.1`` follow SPOS.
    """

    hyper = {
        "population_size": Hyper(50, int, 1, None, doc="children per generation (DCNAS: 50)"),
        "max_iterations": Hyper(20, int, 1, None, doc="generations, initial included (DCNAS: 20)"),
        "top_k": Hyper(10, int, 1, None, doc="parents: best k architectures so far (DCNAS: top-10)"),
        "mutation_num": Hyper(25, int, 0, None, doc="mutated children per generation (SPOS: 25)"),
        "crossover_num": Hyper(25, int, 0, None, doc="crossover children per generation (SPOS: 25)"),
        "mutation_prob": Hyper(0.1, float, 0.0, 1.0, doc="per-gene redraw probability (SPOS: 0.1)"),
    }

    def _check_hyper(self, where: str) -> None:
        hp = self.hp
        if hp["mutation_num"] + hp["crossover_num"] > hp["population_size"]:
            raise InvalidValue("mutation_num + crossover_num", hp["mutation_num"] + hp["crossover_num"],
                               f"at most population_size ({hp['population_size']})", where=where)

    def _select_parents(self) -> list[int]:
        ranked = sorted(self._complete(), key=lambda ts: (-ts[1], ts[0].id))
        return [t.id for t, _ in ranked[: self.hp["top_k"]]]

    def _breed(self, index: int) -> Candidate:
        hp, parents = self.hp, self._parents
        if index < hp["mutation_num"]:
            p = self._trials[parents[int(self._rng.integers(len(parents)))]]
            child = resample_genes(self.space, p.arch, self._rng, hp["mutation_prob"])
            return Candidate(child, (p.id,), self._gen, {"op": "mutation"})
        if index < hp["mutation_num"] + hp["crossover_num"] and len(parents) >= 2:
            i, j = self._rng.choice(len(parents), size=2, replace=False)
            a, b = self._trials[parents[int(i)]], self._trials[parents[int(j)]]
            child = self.space.crossover(a.arch, b.arch, self._rng)
            return Candidate(child, (a.id, b.id), self._gen, {"op": "crossover"})
        return self._random_candidate(self._gen)

    def _observe(self, trial: Trial, score: float | None) -> None:
        """Parents are chosen when a generation starts, from all told trials; nothing to do per trial."""
