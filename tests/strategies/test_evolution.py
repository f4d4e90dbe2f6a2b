"""Regularized evolution (Real et al. 2019, Algorithm 1) and SPOS / DCNAS generation-synchronous evolution."""
from __future__ import annotations

import numpy as np
import pytest

from nasforge.errors import InvalidValue
from nasforge.eval.tabular import TabularEvaluator
from nasforge.registry import get_space
from nasforge.strategies import get_strategy
from nasforge.strategies.evolution import resample_genes
from nasforge.strategies.loop import run_loop
from nasforge.trial import Trial, TrialState


@pytest.fixture(scope="module")
def ev():
    return TabularEvaluator.nb201("cifar10", "hp200-test", costs=False)


def genes_changed(a, b) -> int:
    return sum(a[k] != b[k] for k in a)


def test_regularized_evolution_defaults_and_checks() -> None:
    s = get_strategy("regularized-evolution", "nb201", seed=0)
    assert (s.hp["population_size"], s.hp["sample_size"]) == (10, 3)  # NAS-Bench-201's REA setting
    with pytest.raises(InvalidValue, match="sample_size.*at most population_size"):
        get_strategy("regularized-evolution", "nb201", seed=0, population_size=4, sample_size=5)
    with pytest.raises(InvalidValue, match="population_size.*int"):
        get_strategy("regularized-evolution", "nb201", seed=0, population_size=2.5)


def test_regularized_evolution_aging_and_tournament(ev) -> None:
    s = get_strategy("regularized-evolution", "nb201", seed=4, population_size=6, sample_size=2)
    told: list[Trial] = []
    for i in range(40):
        before = [t.id for t in s.population]
        c = s.ask(1)[0]
        if i < 6:
            assert c.parents == () and c.generation == 0  # the initial population is random
        else:
            (p,) = c.parents
            assert p in before  # the parent is a current (not yet aged-out) member
            assert genes_changed(s.trials[p].arch.to_dict(), c.arch.to_dict()) == 1  # one-edge mutation
            assert c.generation == s.trials[p].generation + 1
        failed = i % 7 == 3
        t = Trial(i, c.arch, TrialState.FAILED if failed else TrialState.COMPLETE,
                  None if failed else ev.evaluate(c.arch), c.parents, c.generation)
        s.tell(t)
        told.append(t)
    complete = [t.id for t in told if t.state is TrialState.COMPLETE]
    assert [t.id for t in s.population] == complete[-6:]  # the oldest leave first; failed never join


def test_regularized_evolution_beats_random_on_nb201(ev) -> None:
    """Averaged over seeds, RE's best after 150 queries is better than random search's (NB201 Fig. / Table 5)."""
    def mean_best(name):
        bests = []
        for seed in range(8):
            s = get_strategy(name, "nb201", seed=seed)
            run_loop(s, ev.evaluate, 150)
            bests.append(s.best().metric("accuracy"))
        return np.mean(bests)
    assert mean_best("regularized-evolution") > mean_best("random")


def test_spos_evolution_defaults_and_checks() -> None:
    s = get_strategy("spos-evolution", "nb201", seed=0)
    hp = s.hp
    assert (hp["population_size"], hp["max_iterations"], hp["top_k"]) == (50, 20, 10)  # DCNAS Sec. 4.1
    assert (hp["mutation_num"], hp["crossover_num"], hp["mutation_prob"]) == (25, 25, 0.1)  # SPOS
    assert s.budget == 1000 and not s.finished
    with pytest.raises(InvalidValue, match="mutation_num \\+ crossover_num"):
        get_strategy("spos-evolution", "nb201", seed=0, population_size=20)
    with pytest.raises(InvalidValue, match="mutation_prob"):
        get_strategy("spos-evolution", "nb201", seed=0, mutation_prob=1.5)


def test_spos_generation_structure(ev) -> None:
    s = get_strategy("spos-evolution", "nb201", seed=2, population_size=12, top_k=3, mutation_num=5,
                     crossover_num=4, max_iterations=2)
    gen0 = s.ask(12)
    assert all(c.generation == 0 and c.parents == () for c in gen0)
    for i, c in enumerate(gen0):
        s.tell(Trial(i, c.arch, TrialState.COMPLETE, ev.evaluate(c.arch)))
    top = sorted(s.trials, key=lambda t: -t.metric("accuracy"))[:3]
    gen1 = s.ask(12)  # one ask returns a whole generation
    assert s.finished and all(c.generation == 1 for c in gen1)
    top_ids = {t.id for t in top}
    assert [len(c.parents) for c in gen1] == [1] * 5 + [2] * 4 + [0] * 3
    assert all(set(c.parents) <= top_ids for c in gen1)
    assert all(c.info["op"] == "mutation" for c in gen1[:5]) and all(c.info["op"] == "crossover" for c in gen1[5:9])
    assert s.generation == 2


def test_resample_genes() -> None:
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    a = space.sample(rng)
    assert resample_genes(space, a, rng, 0.0) == a
    kids = [resample_genes(space, a, rng, 0.1) for _ in range(200)]
    changed = [genes_changed(a.to_dict(), k.to_dict()) for k in kids]
    assert 0.3 < np.mean(changed) < 0.7  # about 6 genes * 0.1 * 4/5
    assert all(space.validate(k) == k for k in kids)
