"""Local search (White et al. 2021): one-gene neighbourhoods, monotone climbs, restarts at local optima."""
from __future__ import annotations

import pytest

from nasforge.eval.tabular import TabularEvaluator
from nasforge.strategies import DEFAULT_STRATEGY, get_strategy
from nasforge.strategies.testing import ToySpace, toy_evaluate
from nasforge.trial import Trial, TrialState


@pytest.fixture(scope="module")
def ev():
    return TabularEvaluator.nb201("cifar10", "hp200-test", costs=False)


def drive(s, evaluate, budget):
    """ask(1) / tell loop that also keeps the candidates (for their info)."""
    cands, trials = [], []
    for i in range(budget):
        c = s.ask(1)[0]
        t = Trial(i, c.arch, TrialState.COMPLETE, evaluate(c.arch), c.parents, c.generation)
        s.tell(t)
        cands.append(c)
        trials.append(t)
    return cands, trials


def n_diff(a, b) -> int:
    return sum(a.get(k) != b.get(k) for k in set(a.to_dict()) | set(b.to_dict()))


@pytest.mark.parametrize("first", [True, False])
def test_climbs_through_one_gene_neighbours(ev, first) -> None:
    s = get_strategy("local-search", "nb201", seed=0, first_improvement=first)
    cands, trials = drive(s, ev.evaluate, 150)
    acc = {t.id: t.metric("accuracy") for t in trials}
    assert [c.info["phase"] for c in cands[:10]] == ["init"] * 10
    nbr = [(c, t) for c, t in zip(cands, trials) if c.info["phase"] == "neighbour"]
    assert nbr
    for c, t in nbr:
        (p,) = c.parents
        assert n_diff(trials[p].arch, c.arch) == 1
    centres = list(dict.fromkeys(c.parents[0] for c, _ in nbr))  # successive current points of the climbs
    restarts = [i for i, c in enumerate(cands) if c.info["phase"] == "init" and i >= 10]
    climb = [p for p in centres if p < (restarts[0] if restarts else len(cands))]
    assert all(acc[b] > acc[a] for a, b in zip(climb, climb[1:]))  # every move improves
    if not first:  # best improvement: each move goes to the best of the full neighbourhood
        for a, b in zip(climb, climb[1:]):
            kids = [t for c, t in nbr if c.parents[0] == a]
            assert len(kids) == 24 - sum(1 for t in trials[:kids[0].id] if n_diff(t.arch, trials[a].arch) == 1)
            assert acc[b] == max(t.metric("accuracy") for t in kids)


def test_restarts_at_a_local_optimum() -> None:
    space = ToySpace(ops="abcd", max_depth=4)
    s = get_strategy("local-search", space, seed=1, num_init=3)
    cands, _ = drive(s, toy_evaluate(space), 200)
    phases = [c.info.get("phase") for c in cands]
    assert phases[:3] == ["init"] * 3
    assert "init" in phases[3:]  # a new climb started after the first one stopped


def test_finds_the_nb201_optimum(ev) -> None:
    """On NB201 (CIFAR-10, 200-epoch test accuracy) local search reaches the optimum 94.37 within 300 queries."""
    for seed in range(3):
        s = get_strategy("local-search", "nb201", seed=seed)
        drive(s, ev.evaluate, 300)
        assert s.best().metric("accuracy") == pytest.approx(94.3733, abs=1e-3)


def test_is_the_default() -> None:
    assert DEFAULT_STRATEGY == "local-search"
