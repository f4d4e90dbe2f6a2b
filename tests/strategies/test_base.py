"""The shared strategy machinery: constraints, hyper-parameter checks, state-dict guards, the in-memory loop."""
from __future__ import annotations

import json

import pytest

from nasforge.errors import InvalidValue
from nasforge.strategies import Constraint, Hyper, get_strategy
from nasforge.strategies.loop import run_loop
from nasforge.strategies.testing import ToySpace, toy_evaluate
from nasforge.trial import Result, TrialState


def test_constraint_forms_and_checks() -> None:
    c = Constraint("latency_ms", 60, 70)  # PAD-NAS basic space: 60 ms <= latency <= 70 ms
    assert Constraint.coerce({"name": "latency_ms", "min": 60, "max": 70}) == c
    assert Constraint.coerce(("latency_ms", 60, 70)) == c
    assert c.satisfied({"latency_ms": 60.0}) and c.satisfied({"latency_ms": 70.0})
    assert not c.satisfied({"latency_ms": 70.1}) and not c.satisfied({"latency_ms": float("nan")})
    assert Constraint("flops", max=5).satisfied({"flops": -1e9})
    assert str(c) == "60 <= latency_ms <= 70"
    with pytest.raises(InvalidValue, match="at least one of min, max"):
        Constraint("latency_ms")
    with pytest.raises(InvalidValue, match="constraint 'flops' min: got 5"):
        Constraint("flops", 5, 1)
    with pytest.raises(InvalidValue, match="constraint name"):
        Constraint("", 1, 2)
    with pytest.raises(InvalidValue, match="constraint 'flops' max"):
        Constraint("flops", None, "10")
    with pytest.raises(InvalidValue, match="constraint: got"):
        Constraint.coerce({"name": "flops", "maximum": 3})
    with pytest.raises(InvalidValue, match="constraint: got 'params'.*'flops'"):
        Constraint("params", max=1).satisfied({"flops": 1.0})


def test_hyper_checks_types_and_bounds() -> None:
    h = Hyper(10, int, 1, None)
    assert h.check("population_size", 5, "s") == 5
    for bad in (0, 2.0, True, "5", None):
        with pytest.raises(InvalidValue, match="population_size of s"):
            h.check("population_size", bad, "s")
    f = Hyper(0.5, float, 0.0, 1.0, nullable=True)
    assert f.check("p", 1, "s") == 1.0 and isinstance(f.check("p", 1, "s"), float)
    assert f.check("p", None, "s") is None
    with pytest.raises(InvalidValue, match="float in \\[0.0, 1.0\\] or None"):
        f.check("p", float("nan"), "s")
    assert Hyper(True, bool).check("flag", False, "s") is False
    with pytest.raises(InvalidValue):
        Hyper(True, bool).check("flag", 1, "s")


def test_load_state_dict_refuses_another_configuration() -> None:
    space = ToySpace()
    s = get_strategy("regularized-evolution", space, seed=0)
    run_loop(s, toy_evaluate(space), 5)
    state = json.loads(json.dumps(s.state_dict()))
    with pytest.raises(InvalidValue, match="state_dict config seed"):
        get_strategy("regularized-evolution", space, seed=1).load_state_dict(state)
    with pytest.raises(InvalidValue, match="state_dict config strategy"):
        get_strategy("random", space, seed=0).load_state_dict(state)
    with pytest.raises(InvalidValue, match="state_dict config hyper"):
        get_strategy("regularized-evolution", space, seed=0, sample_size=2).load_state_dict(state)
    with pytest.raises(InvalidValue, match="state_dict version"):
        get_strategy("regularized-evolution", space, seed=0).load_state_dict({**state, "version": 99})


def test_state_dict_is_a_snapshot() -> None:
    space = ToySpace()
    s = get_strategy("spos-evolution", space, seed=0, population_size=6, top_k=2, mutation_num=2, crossover_num=2)
    run_loop(s, toy_evaluate(space), 8)
    snap = s.state_dict()
    frozen = json.dumps(snap, sort_keys=True)
    run_loop(s, toy_evaluate(space), 8)
    assert json.dumps(snap, sort_keys=True) == frozen


def test_mode_min_and_cost_metric() -> None:
    """``mode="min"`` on a cost works: the best trial is the one with the fewest FLOPs."""
    space = ToySpace()
    s = get_strategy("local-search", space, seed=0, metric="flops", mode="min")
    trials = run_loop(s, toy_evaluate(space), 40)
    assert s.best().result.costs["flops"] == min(t.result.costs["flops"] for t in trials)
    assert s.best().result.costs["flops"] == space.flops(space.smallest())


def test_run_loop_records_failures_and_batches() -> None:
    space = ToySpace()
    calls = []

    def evaluate(arch):
        calls.append(arch)
        if len(calls) % 4 == 0:
            raise RuntimeError("out of memory")
        if len(calls) % 4 == 1:
            return {"accuracy": 1.0}
        if len(calls) % 4 == 2:
            return "nonsense"
        return Result(metrics={"accuracy": 2.0})

    trials = run_loop(get_strategy("random", space, seed=0), evaluate, 10, batch_size=3)
    assert [t.id for t in trials] == list(range(10))
    states = [t.state for t in trials]
    assert states.count(TrialState.FAILED) == 5
    assert "RuntimeError: out of memory" in trials[3].error and "returned str" in trials[1].error
    assert run_loop(get_strategy("random", space, seed=0), evaluate, 0) == []
    with pytest.raises(InvalidValue, match="budget"):
        run_loop(get_strategy("random", space, seed=0), evaluate, -1)
    with pytest.raises(InvalidValue, match="batch_size"):
        run_loop(get_strategy("random", space, seed=0), evaluate, 1, batch_size=0)
