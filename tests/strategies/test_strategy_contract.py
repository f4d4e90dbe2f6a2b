"""Contract tests run over every registered strategy, on the NAS-Bench-201 space (table look-ups) and on a tiny
synthetic space with masked genes and a cross-gene constraint (DESIGN.md: "contract tests parametrised over every
registered ... strategy"; "seeded strategies reproducible; resume after a kill loses no trial")."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from nasforge.errors import InvalidValue, UnknownName
from nasforge.eval.tabular import TabularEvaluator
from nasforge.registry import get_space
from nasforge.strategies import Constraint, get_strategy, list_strategies
from nasforge.strategies.loop import run_loop
from nasforge.strategies.testing import ToySpace, jitter, toy_evaluate
from nasforge.trial import Result, Trial, TrialState

STRATEGIES = list_strategies()
#: small populations so that a few dozen trials already exercise breeding (paper defaults are tested elsewhere)
SMALL = {
    "regularized-evolution": {"population_size": 8, "sample_size": 3},
    "spos-evolution": {"population_size": 10, "top_k": 4, "mutation_num": 4, "crossover_num": 4},
    "nsga2": {"population_size": 8, "cost": "flops", "eta_m": 5.0},
    "local-search": {"num_init": 4},
}


def make(name, space, seed=0, **kw):
    return get_strategy(name, space, seed=seed, **{**SMALL.get(name, {}), **kw})


@pytest.fixture(scope="module")
def nb201_eval():
    return TabularEvaluator.nb201("cifar10", "hp200-test")


@pytest.fixture(params=["toy", "nb201"])
def problem(request, nb201_eval):
    if request.param == "toy":
        space = ToySpace(ops="abcd", max_depth=4)  # 956 architectures
        return SimpleNamespace(space=space, evaluate=toy_evaluate(space), failing=toy_evaluate(space, 0.3))

    def failing(arch):
        if jitter(arch) < 0.3:
            raise RuntimeError("simulated crash")
        return nb201_eval.evaluate(arch)

    return SimpleNamespace(space=get_space("nb201"), evaluate=nb201_eval.evaluate, failing=failing)


def archs(trials):
    return [t.arch for t in trials]


def test_builtins_registered() -> None:
    for name in ["random", "regularized-evolution", "spos-evolution", "nsga2", "local-search"]:
        assert name in STRATEGIES
    with pytest.raises(UnknownName, match="no-such"):
        get_strategy("no-such", "nb201", seed=0)


@pytest.mark.parametrize("name", STRATEGIES)
def test_asks_are_valid_unique_and_lineage_is_consistent(name, problem) -> None:
    s = make(name, problem.space, seed=1)
    trials = run_loop(s, problem.evaluate, 60, batch_size=4)  # 4 asks in flight at once
    assert [t.id for t in trials] == list(range(60))
    keys = [t.arch.key() for t in trials]
    assert len(set(keys)) == len(keys)
    by_id = {t.id: t for t in trials}
    for t in trials:
        assert problem.space.validate(t.arch) == t.arch
        for p in t.parents:  # parents are earlier, complete trials
            assert p < t.id and by_id[p].state is TrialState.COMPLETE
    assert s.best().metric("accuracy") == max(t.metric("accuracy") for t in trials)


@pytest.mark.parametrize("name", STRATEGIES)
def test_seeded_runs_reproduce(name, problem) -> None:
    a = archs(run_loop(make(name, problem.space, seed=3), problem.evaluate, 40))
    b = archs(run_loop(make(name, problem.space, seed=3), problem.evaluate, 40))
    c = archs(run_loop(make(name, problem.space, seed=4), problem.evaluate, 40))
    assert a == b
    assert a != c


@pytest.mark.parametrize("with_trials", [True, False], ids=["full", "ids-only"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_state_dict_json_round_trip_continues_identically(name, problem, with_trials) -> None:
    s1 = make(name, problem.space, seed=5)
    stored = run_loop(s1, problem.failing, 37)  # mid-generation, with failures
    state = json.loads(json.dumps(s1.state_dict(include_trials=with_trials)))
    s2 = make(name, problem.space, seed=5)
    if with_trials:
        s2.load_state_dict(state)
    else:
        with pytest.raises(InvalidValue, match="trials.*missing ids"):
            s2.load_state_dict(state, trials=stored[:-1])
        s2.load_state_dict(state, trials=reversed(stored))  # the store's trials, in any order
    assert s2.state_dict() == json.loads(json.dumps(s1.state_dict()))
    t1 = run_loop(s1, problem.failing, 30)
    t2 = run_loop(s2, problem.failing, 30)
    assert [(t.id, t.arch, t.parents, t.generation) for t in t1] == [(t.id, t.arch, t.parents, t.generation) for t in t2]
    assert json.dumps(s1.state_dict(), sort_keys=True) == json.dumps(s2.state_dict(), sort_keys=True)


@pytest.mark.parametrize("name", STRATEGIES)
def test_state_dict_with_asks_in_flight(name, problem) -> None:
    s1 = make(name, problem.space, seed=6)
    run_loop(s1, problem.evaluate, 20)
    in_flight = s1.ask(3)
    s2 = make(name, problem.space, seed=6)
    s2.load_state_dict(json.loads(json.dumps(s1.state_dict())))
    for s in (s1, s2):
        nxt = s.ask(2)  # in-flight asks count as seen
        assert not {c.arch for c in nxt} & {c.arch for c in in_flight}
        for i, c in enumerate(in_flight + nxt):
            s.tell(Trial(20 + i, c.arch, TrialState.COMPLETE, problem.evaluate(c.arch), c.parents, c.generation))
    assert archs(run_loop(s1, problem.evaluate, 15)) == archs(run_loop(s2, problem.evaluate, 15))


@pytest.mark.parametrize("name", STRATEGIES)
def test_rebuild_from_stored_trials(name, problem) -> None:
    s1 = make(name, problem.space, seed=7)
    trials = run_loop(s1, problem.failing, 45)
    running = s1.ask(1)[0]  # in flight when the process died
    stored = trials + [Trial(45, running.arch, TrialState.RUNNING, None, running.parents, running.generation)]
    s2, s3 = make(name, problem.space, seed=7), make(name, problem.space, seed=7)
    s2.rebuild(stored)
    s3.rebuild(list(reversed(stored)))
    assert s2.best().id == s1.best().id
    assert sorted(t.id for t in s2.trials) == list(range(45))
    nxt = run_loop(s2, problem.evaluate, 20, start_id=46)
    assert archs(nxt) == archs(run_loop(s3, problem.evaluate, 20, start_id=46))  # rebuild is deterministic
    seen = {t.arch for t in stored}
    assert not seen & set(archs(nxt))
    with pytest.raises(InvalidValue, match="rebuild"):
        s2.rebuild(stored)


@pytest.mark.parametrize("name", STRATEGIES)
def test_failed_trials_are_tolerated(name, problem) -> None:
    s = make(name, problem.space, seed=8)
    trials = run_loop(s, problem.failing, 60)
    failed = {t.id for t in trials if t.state is TrialState.FAILED}
    assert 5 < len(failed) < 40
    assert all(not set(t.parents) & failed for t in trials)
    assert s.best().state is TrialState.COMPLETE
    # a NaN metric counts as failed too
    c = s.ask(1)[0]
    s.tell(Trial(60, c.arch, TrialState.COMPLETE, Result(metrics={"accuracy": float("nan")}, costs={"flops": 1.0})))
    assert s.best().id != 60
    assert len(run_loop(s, problem.failing, 10, start_id=61)) == 10


@pytest.mark.parametrize("name", STRATEGIES)
def test_constraints_are_respected(name, problem) -> None:
    space = problem.space
    cost_fn = lambda a: {"flops": float(space.flops(a))}  # noqa: E731
    sample = [space.flops(space.sample(np.random.default_rng(i))) for i in range(40)]
    lo, hi = np.percentile(sample, [20, 70])
    s = make(name, space, seed=9, constraints=[Constraint("flops", float(lo), float(hi))], cost_fn=cost_fn)
    trials = run_loop(s, problem.evaluate, 30)
    assert all(lo <= space.flops(t.arch) <= hi for t in trials)
    bad = make(name, space, seed=9, constraints=[{"name": "flops", "max": -1.0}], cost_fn=cost_fn)
    with pytest.raises(InvalidValue, match="constraints"):
        bad.ask(1)
    with pytest.raises(InvalidValue, match="constraint"):
        make(name, space, seed=9, constraints=[("latency", None, 5.0)], cost_fn=cost_fn).ask(1)


@pytest.mark.parametrize("name", STRATEGIES)
def test_exhausted_space_returns_flagged_duplicates(name) -> None:
    tiny = ToySpace(ops="ab", max_depth=1, widths=(8, 16))  # 4 architectures
    s = get_strategy(name, tiny, seed=0, **({"cost": "flops"} if name == "nsga2" else {}))
    trials = run_loop(s, toy_evaluate(tiny), 4)
    assert len({t.arch for t in trials}) == 4
    extra = s.ask(2)
    assert all(c.info.get("duplicate") for c in extra)


@pytest.mark.parametrize("name", STRATEGIES)
def test_bad_options_raise_naming_the_field(name) -> None:
    space = ToySpace()
    with pytest.raises(InvalidValue, match="hyper-parameter.*'bogus'"):
        get_strategy(name, space, seed=0, bogus=1)
    with pytest.raises(InvalidValue, match="mode"):
        get_strategy(name, space, seed=0, mode="maximise")
    with pytest.raises(InvalidValue, match="seed"):
        get_strategy(name, space, seed=-1)
    with pytest.raises(InvalidValue, match="cost_fn"):
        get_strategy(name, space, seed=0, constraints=[Constraint("flops", max=10)])
    s = make(name, space)
    with pytest.raises(InvalidValue, match="n of"):
        s.ask(0)
    c = s.ask(1)[0]
    with pytest.raises(InvalidValue, match="trial.state"):
        s.tell(Trial(0, c.arch))
    with pytest.raises(InvalidValue, match="metric.*'accuracy'"):
        s.tell(Trial(0, c.arch, TrialState.COMPLETE, Result(metrics={"acc": 1.0})))
    s.tell(Trial(0, c.arch, TrialState.FAILED, None, error="boom"))
    with pytest.raises(InvalidValue, match="trial.id"):
        s.tell(Trial(0, c.arch, TrialState.FAILED))
