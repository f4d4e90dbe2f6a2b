"""NSGA-II / PAD-NAS constrained evolutionary search: sorting and crowding on hand-made fronts, the operators, and
a constrained (accuracy, latency) search on NAS-Bench-201 with HELP's measured latencies."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nasforge.errors import InvalidValue
from nasforge.eval.tabular import TabularEvaluator
from nasforge.registry import get_space
from nasforge.strategies import Constraint, get_strategy
from nasforge.strategies.loop import run_loop
from nasforge.strategies.nsga2 import (crowding_distance, fast_non_dominated_sort, polynomial_mutation,
                                       two_point_crossover)
from nasforge.trial import TrialState


def dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def brute_force_fronts(points):
    left, fronts = set(range(len(points))), []
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        fronts.append(sorted(front))
        left -= front
    return fronts


def test_non_dominated_sort_hand_made() -> None:
    pts = np.array([(1, 5), (2, 3), (4, 1), (3, 4), (5, 5), (2, 3), (6, 6)], dtype=float)
    fronts = [f.tolist() for f in fast_non_dominated_sort(pts)]
    assert fronts == [[0, 1, 2, 5], [3], [4], [6]]  # the duplicate (2, 3) shares the first front
    assert fast_non_dominated_sort(np.zeros((0, 2))) == []


def test_non_dominated_sort_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for m in (2, 3):
        pts = rng.integers(0, 6, size=(60, m)).astype(float)  # many ties
        assert [f.tolist() for f in fast_non_dominated_sort(pts)] == brute_force_fronts(pts.tolist())
    with pytest.raises(InvalidValue, match="objectives shape"):
        fast_non_dominated_sort(np.zeros(3))


def test_crowding_distance_hand_made() -> None:
    front = np.array([(0, 5), (1, 3), (3, 2), (5, 0)], dtype=float)
    d = crowding_distance(front)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx(3 / 5 + 3 / 5)  # obj0 neighbours 0 and 3; obj1 neighbours 2 and 5
    assert d[2] == pytest.approx(4 / 5 + 3 / 5)  # obj0 neighbours 1 and 5; obj1 neighbours 0 and 3
    assert np.isinf(crowding_distance(front[:2])).all()
    flat = crowding_distance(np.array([(1, 7), (2, 7), (3, 7)], dtype=float))  # a constant objective adds 0
    assert flat[1] == pytest.approx(1.0)


def test_two_point_crossover_takes_one_segment() -> None:
    rng = np.random.default_rng(1)
    a, b = np.zeros(8, dtype=int), np.ones(8, dtype=int)
    for _ in range(50):
        c = two_point_crossover(a, b, rng)
        ones = np.flatnonzero(c)
        assert c[0] == 0 and ones.size >= 1 and np.all(np.diff(ones) == 1)  # one contiguous, non-empty segment of b


def test_polynomial_mutation_stays_in_bounds() -> None:
    rng = np.random.default_rng(2)
    upper = np.array([4, 4, 0, 2], dtype=float)
    x = np.array([0, 4, 0, 1], dtype=float)
    assert np.array_equal(polynomial_mutation(x, upper, rng, 0.0, 20.0), x)
    moved = np.array([polynomial_mutation(x, upper, rng, 1.0, 1.0) for _ in range(300)])
    assert (moved >= 0).all() and (moved <= upper).all()
    assert (moved[:, 2] == 0).all()  # a single-choice gene never moves
    assert moved[:, 0].max() > 0.5 and moved[:, 1].min() < 3.5  # boundary genes move inwards


def test_paper_defaults() -> None:
    s = get_strategy("nsga2", "nb201", seed=0)
    assert (s.hp["population_size"], s.hp["max_iterations"]) == (64, 40)  # PAD-NAS Sec. 4.1
    assert s.hp["crossover_prob"] == 0.9 and s.hp["mutation_prob"] is None and s.hp["eta_m"] == 20.0
    assert s.budget == 64 * 40


@pytest.fixture(scope="module")
def latency_eval(shared_data):
    return TabularEvaluator.nb201("cifar10", "hp12-valid", costs=False,
                                  latency_table=shared_data / "nb201_latency_help" / "nb201_latency_ms.csv.gz",
                                  latency_device="pixel3")


def test_constrained_search_ranks_and_front(latency_eval) -> None:
    """PAD-NAS Eq. 2: every asked architecture meets Lat_min <= latency <= Lat_max; ranks cover every trial."""
    lat = lambda a: {"latency_ms": latency_eval.evaluate(a).costs["latency_ms"]}  # noqa: E731
    lo, hi = 20.0, 40.0
    s = get_strategy("nsga2", "nb201", seed=3, population_size=16, constraints=[Constraint("latency_ms", lo, hi)],
                     cost_fn=lat)
    trials = run_loop(s, latency_eval.evaluate, 64)
    assert all(lo <= t.result.costs["latency_ms"] <= hi for t in trials)
    assert [t.generation for t in trials] == [g for g in range(4) for _ in range(16)]  # generation-synchronous
    ranks = s.ranks()
    assert set(ranks) == {t.id for t in trials if t.state is TrialState.COMPLETE}
    objs = {t.id: (-t.metric("accuracy"), t.result.costs["latency_ms"]) for t in trials}
    for tid, r in ranks.items():  # rank r: dominated by some rank r-1 trial, by no trial of rank >= r
        assert not any(dominates(objs[o], objs[tid]) for o, ro in ranks.items() if ro >= r)
        if r > 1:
            assert any(dominates(objs[o], objs[tid]) for o, ro in ranks.items() if ro == r - 1)
    front = s.pareto_front()
    assert {t.id for t in front} == {i for i, r in ranks.items() if r == 1}
    costs = [t.result.costs["latency_ms"] for t in front]
    assert costs == sorted(costs)
    bred = [t for t in trials if t.generation > 0]
    assert all(1 <= len(t.parents) <= 2 for t in bred)
    assert any(len(t.parents) == 2 for t in bred)  # crossover happened


def test_missing_cost_objective_is_reported() -> None:
    ev = TabularEvaluator.nb201("cifar10", "hp200-test", costs=False)
    s = get_strategy("nsga2", "nb201", seed=0, population_size=4)  # cost "latency_ms": not in the results
    with pytest.raises(InvalidValue, match="cost.*'latency_ms'"):
        run_loop(s, ev.evaluate, 2)
    assert s.trials == []  # nothing recorded for the rejected trial


def test_ranks_over_all_evaluated_not_just_parents() -> None:
    space = get_space("nb201")
    ev = TabularEvaluator.nb201("cifar10", "hp200-test")
    s = get_strategy("nsga2", space, seed=1, population_size=8, cost="flops")
    trials = run_loop(s, ev.evaluate, 40)
    assert len(s.ranks()) == 40 > s.hp["population_size"]
    best_acc = max(trials, key=lambda t: t.metric("accuracy"))
    cheapest = min(trials, key=lambda t: (t.result.costs["flops"], -t.metric("accuracy")))
    assert s.ranks()[best_acc.id] == 1 and s.ranks()[cheapest.id] == 1
    for a, b in itertools.combinations(s.pareto_front(), 2):
        assert not dominates((-a.metric("accuracy"), a.result.costs["flops"]),
                             (-b.metric("accuracy"), b.result.costs["flops"]))


def test_offspring_repeating_the_archive_are_redrawn_and_counted() -> None:
    """Issue 12: an offspring that repeats an architecture of the population or the archive gets its mutation
    redrawn (mutation_retries times), then is bred anew; every asked architecture is new and the counts are part
    of the state."""
    ev = TabularEvaluator.nb201("cifar10", "hp200-test")
    s = get_strategy("nsga2", "nb201", seed=2, population_size=16, cost="flops")
    asked = []
    while len(asked) < 16 * 6:
        cand = s.ask(1)[0]
        asked.append(cand)
        run_loop_one(s, ev, cand, len(asked) - 1)
    assert len({c.arch.key() for c in asked}) == len(asked)  # nothing asked twice
    dups = s.duplicates
    retried = [c.info["mutation_retries"] for c in asked if "mutation_retries" in c.info]
    # every redraw of an offspring that was then asked was counted (re-bred ones add their 11 draws each)
    assert sum(retried) + (s.mutation_retries + 1) * dups["rebred"] == dups["offspring"] > 0
    assert 0 < dups["parent_copies"] <= dups["offspring"] and dups["asked"] == 0
    state = s.state_dict()
    assert state["extra"]["duplicates"] == dups
    again = get_strategy("nsga2", "nb201", seed=2, population_size=16, cost="flops")
    again.load_state_dict(state)
    assert again.duplicates == dups
    state["extra"].pop("duplicates")  # a state saved before the counters existed
    again.load_state_dict(state)
    assert again.duplicates == dict.fromkeys(("offspring", "parent_copies", "rebred", "asked"), 0)


def run_loop_one(s, ev, cand, tid) -> None:
    from nasforge.trial import Trial

    s.tell(Trial(id=tid, arch=cand.arch, state=TrialState.COMPLETE, result=ev.evaluate(cand.arch),
                 parents=cand.parents, generation=cand.generation))


def test_an_operator_that_only_copies_parents_is_bred_anew_then_sampled() -> None:
    """No crossover, no mutation: every offspring copies its parent. Each breed redraws its mutation
    mutation_retries times (11 draws), the base class breeds anew dedup_tries (100) times, then samples uniformly."""
    ev = TabularEvaluator.nb201("cifar10", "hp200-test")
    s = get_strategy("nsga2", "nb201", seed=0, population_size=4, cost="flops", crossover_prob=0.0,
                     mutation_prob=0.0)
    run_loop(s, ev.evaluate, 4)
    cand = s.ask(1)[0]
    assert cand.info == {"fallback": "uniform"} and cand.generation == 1
    draws = (s.mutation_retries + 1) * s.dedup_tries
    assert s.duplicates == {"offspring": draws, "parent_copies": draws, "rebred": s.dedup_tries, "asked": 0}
