"""MenasStrategy with a fake evaluator (no training): the generational schedule, lottery tickets from result info,
parent selection (80% best tickets + 20% largest), children, the can_ask barrier, exact resume and rebuild."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nasforge.errors import InvalidValue
from nasforge.strategies import Constraint, get_strategy
from nasforge.strategies.menas import MenasStrategy, nominal_budget
from nasforge.strategies.testing import ToySpace, toy_accuracy, toy_evaluate
from nasforge.trial import Candidate, Result, Trial, TrialState

SPACE = ToySpace(ops="abcd", max_depth=4)  # 956 architectures
SMALL = dict(population_size=6, parent_size=4, num_children=4, generations=3, lottery_tickets=2)


def proposals(arch, n: int = 4) -> list:
    """A net's fake ranked pruning proposals: a few other architectures, best toy accuracy first."""
    rng = np.random.default_rng(int(arch.key(), 16) % 2**32)
    out = []
    for _ in range(30):
        p = SPACE.mutate(arch, rng)
        if p not in out:
            out.append(p)
        if len(out) == n:
            break
    return sorted(out, key=toy_accuracy, reverse=True)


def fake_evaluate(arch, kind: str, fail=frozenset()) -> Result:
    """Toy accuracy and costs; a net (init / child) also reports its ranked lottery tickets, as MenasEvaluator."""
    if arch.key() in fail:
        raise RuntimeError("simulated crash")
    res = toy_evaluate(SPACE)(arch)
    if kind != "ticket":
        res.info["lottery_tickets"] = [{"arch": SPACE.format(p), "accuracy": toy_accuracy(p)} for p in proposals(arch)]
    return res


def finish(c: Candidate, tid: int, fail=frozenset()) -> Trial:
    try:
        res, state = fake_evaluate(c.arch, c.info["kind"], fail), TrialState.COMPLETE
    except RuntimeError:
        res, state = None, TrialState.FAILED
    return Trial(tid, c.arch, state, res, c.parents, c.generation, info=dict(c.info))


def drive(s: MenasStrategy, limit: int = 10_000, start: int = 0, fail=frozenset()) -> list[Trial]:
    """A sequential study: ask only while can_ask(), tell at once."""
    out: list[Trial] = []
    while s.can_ask() and len(out) < limit:
        out.append(finish(s.ask(1)[0], start + len(out), fail))
        s.tell(out[-1])
    return out


def make(seed: int = 0, **kw) -> MenasStrategy:
    return get_strategy("menas", SPACE, seed=seed, **{**SMALL, **kw})


def counts(trials) -> dict:
    out: dict = {}
    for t in trials:
        key = (t.generation, t.info["kind"])
        out[key] = out.get(key, 0) + 1
    return out


def test_schedule_per_generation_matches_the_nominal_budget():
    assert get_strategy("menas", SPACE, seed=0).budget == nominal_budget() == 540  # menas.txt Table 4: N=540
    s = make()
    trials = drive(s)
    assert s.finished and not s.can_ask()
    assert s.budget == nominal_budget(6, 4, 3, 2) == 6 * 3 + 2 * 4 * 3 == len(trials)
    assert counts(trials) == {(0, "init"): 6, (0, "ticket"): 12, (1, "child"): 4, (1, "ticket"): 8,
                              (2, "child"): 4, (2, "ticket"): 8}
    assert len({t.arch.key() for t in trials}) == len(trials)
    assert [t.generation for t in trials] == sorted(t.generation for t in trials)  # the barrier holds


def test_tickets_come_from_result_info_deduplicated_and_exempt_from_constraints():
    flops = {a.key(): float(SPACE.flops(a)) for a in SPACE.all()}
    lo, hi = np.percentile(list(flops.values()), [30, 70])
    s = make(constraints=[Constraint("flops", float(lo), float(hi))], cost_fn=lambda a: {"flops": flops[a.key()]},
             generations=1)
    trials = drive(s)
    nets = {t.id: t for t in trials if t.info["kind"] == "init"}
    tickets = [t for t in trials if t.info["kind"] == "ticket"]
    assert all(lo <= flops[t.arch.key()] <= hi for t in nets.values())
    seen = set()
    for t in trials:  # every ticket: one of its net's first never-asked proposals, in rank order
        if t.info["kind"] == "ticket":
            net = nets[t.parents[0]]
            ranked = proposals(net.arch)
            assert t.generation == net.generation and t.info["inherit_from"] == net.id
            assert ranked[t.info["ticket_rank"]] == t.arch and t.arch.key() not in seen
            assert t.info["proxy_accuracy"] == pytest.approx(toy_accuracy(t.arch))
            skipped = ranked[:t.info["ticket_rank"]]
            assert all(p.key() in seen or any(q.parents == t.parents and q.arch == p for q in tickets)
                       for p in skipped)
        seen.add(t.arch.key())
    assert len(tickets) == 2 * len(nets)
    assert any(not lo <= flops[t.arch.key()] <= hi for t in tickets)  # tickets are not held to the constraint


def test_real_pruning_tickets_below_the_flops_window_are_still_asked():
    """The exemption with real lottery tickets: MENAS prunes a net (pruning_proposals on menas-mt), so its tickets
    have strictly fewer FLOPs than the net and fall below a FLOPs window the net sits in; they are asked all the
    same (fine-tuned, then parents), in the evaluator's rank order, while every net, children included, stays
    inside the window."""
    from nasforge import get_space
    from nasforge.prune import pruning_proposals

    space = get_space("menas-mt", base_channels=(16, 24), depths=(1, 2), kernels=(3, 5), expands=(3, 6),
                      widths=(0.5, 1.0))
    flops = {}

    def cost(arch):
        if arch.key() not in flops:
            flops[arch.key()] = float(space.flops(arch, (1, 28, 28), 10))
        return {"flops": flops[arch.key()], "params": float(space.params(arch, (1, 28, 28), 10))}

    rng = np.random.default_rng(0)
    lo, hi = np.percentile([cost(space.sample(rng))["flops"] for _ in range(200)], [40, 55])
    ranked = {}  # net key -> its proposals, best first (here: the cheapest first, as a real ranking might)

    def evaluate(c: Candidate, tid: int) -> Trial:
        info = {}
        if c.info["kind"] != "ticket":
            props = pruning_proposals(space, c.arch, 4, np.random.default_rng(tid))
            ranked[c.arch.key()] = sorted(props, key=lambda a: cost(a)["flops"])
            info["lottery_tickets"] = [{"arch": space.format(a), "accuracy": 50.0 - i}
                                       for i, a in enumerate(ranked[c.arch.key()])]
        res = Result(metrics={"accuracy": 40.0 + tid % 7}, costs=cost(c.arch), info=info)
        return Trial(tid, c.arch, TrialState.COMPLETE, res, c.parents, c.generation, info=dict(c.info))

    s = get_strategy("menas", space, seed=0, population_size=4, parent_size=2, num_children=3, generations=2,
                     lottery_tickets=2, constraints=[Constraint("flops", float(lo), float(hi))], cost_fn=cost)
    trials: list[Trial] = []
    while s.can_ask():
        trials.append(evaluate(s.ask(1)[0], len(trials)))
        s.tell(trials[-1])
    by_id = {t.id: t for t in trials}
    nets = [t for t in trials if t.info["kind"] != "ticket"]
    tickets = [t for t in trials if t.info["kind"] == "ticket"]
    assert len(nets) == 4 + 3 and len(tickets) == 2 * len(nets)
    assert all(lo <= flops[t.arch.key()] <= hi for t in nets)
    for t in tickets:
        net = by_id[t.parents[0]]
        assert t.arch == ranked[net.arch.key()][t.info["ticket_rank"]] and t.info["ticket_rank"] < 2
        assert flops[t.arch.key()] < flops[net.arch.key()]  # a pruning of its net
        assert space.prunable_layers(t.arch) == space.prunable_layers(net.arch)
    below = [t for t in tickets if flops[t.arch.key()] < lo]
    assert len(below) >= 3 and len(below) < len(tickets), sorted(flops[t.arch.key()] / lo for t in tickets)  # the exemption is exercised


def test_proposals_already_asked_or_queued_are_skipped():
    s = make(generations=1)
    a, b = s.ask(2)  # two nets in flight
    x, y, z, w = [p for p in SPACE.all() if p not in (a.arch, b.arch)][:4]

    def told(c, tid, ranked):
        res = Result(metrics={"accuracy": 50.0}, costs={"params": 1.0},
                     info={"lottery_tickets": [{"arch": SPACE.format(p)} for p in ranked]})
        return Trial(tid, c.arch, TrialState.COMPLETE, res, c.parents, c.generation, info=dict(c.info))

    s.tell(told(a, 0, [a.arch, x, y]))  # the net itself is not a new ticket
    s.tell(told(b, 1, [y, b.arch, a.arch, z, w]))  # y is queued for net 0, a was asked: b's tickets are z, w
    tickets = s.ask(4)
    assert [(c.arch, c.parents, c.info["ticket_rank"]) for c in tickets] == [(x, (0,), 1), (y, (0,), 2),
                                                                             (z, (1,), 3), (w, (1,), 4)]
    assert all(c.info["parents_role"] == ["pruned"] and c.info["inherit_from"] == c.parents[0] for c in tickets)


def gen0(s: MenasStrategy, accs: dict, sizes: dict) -> list[Trial]:
    """Generation 0 with chosen accuracies and sizes (index in ask order -> value)."""
    trials, i = [], 0
    while s.can_ask() and s.generation == 0:
        c = s.ask(1)[0]
        res = Result(metrics={"accuracy": accs.get(i, 10.0)}, costs={"params": sizes.get(i, 1.0), "flops": 1.0},
                     info={"lottery_tickets": [{"arch": SPACE.format(p)} for p in proposals(c.arch)]}
                     if c.info["kind"] == "init" else {})
        trials.append(Trial(i, c.arch, TrialState.COMPLETE, res, c.parents, c.generation, info=dict(c.info)))
        s.tell(trials[-1])
        i += 1
    return trials


@pytest.mark.parametrize("ratio, tickets, best_kind, n_large", [(0.2, 2, "ticket", 1), (0.0, 2, "ticket", 0),
                                                              (0.2, 0, "init", 1)])
def test_parents_are_best_tickets_plus_largest_models(ratio, tickets, best_kind, n_large):
    s = make(parent_size=5, large_model_ratio=ratio, lottery_tickets=tickets)
    n = 6 * (1 + tickets)
    accs = {i: float(i) for i in range(n)}  # later trials score higher
    sizes = {i: 100.0 + i for i in range(n)}
    sizes[0] = 1e6  # the first net is the largest model, and the worst
    trials = gen0(s, accs, sizes)
    assert len(trials) == n and s.generation == 1
    by_id = {t.id: t for t in trials}
    pool = [t for t in trials if t.info["kind"] == best_kind]
    best = sorted(pool, key=lambda t: -accs[t.id])[:5 - n_large]
    sel = s.selections[0]
    assert sel["best"] == [t.id for t in best]  # round((1 - ratio) * 5) best, by the metric
    assert sel["large"] == ([0] if n_large else [])  # the rest: the largest model not already chosen
    assert [t.id for t in s.parents] == sel["best"] + sel["large"]
    if tickets == 0:
        assert all(t.info["kind"] == "init" for t in trials)
    children = s.ask(3)
    for c in children:  # children carry their parents, the generation and which parent they inherit from
        assert c.info["kind"] == "child" and c.generation == 1 and set(c.parents) <= {t.id for t in s.parents}
        assert c.info["inherit_from"] == c.parents[0] and len(c.parents) == len(c.info["parents_role"])
        role = "ticket" if best_kind == "ticket" else "net"
        assert c.info["selected_as"] == [("large" if p in sel["large"] else role) for p in c.parents]
        assert c.arch.key() not in {t.arch.key() for t in by_id.values()}


def test_crossover_children_have_two_parents():
    s = make(crossover_prob=1.0)
    drive(s, limit=18)
    kids = s.ask(4)
    assert all(len(c.parents) == 2 and c.info["op"] == "crossover+mutation" for c in kids)
    s2 = make(crossover_prob=0.0)
    drive(s2, limit=18)
    assert all(len(c.parents) == 1 and c.info["op"] == "mutation" for c in s2.ask(4))


def test_can_ask_is_a_barrier_for_in_flight_trials():
    s = make(generations=2)
    nets = s.ask(6)  # the whole initial population in flight (a parallel executor)
    assert not s.can_ask()  # nothing left to ask until results come back
    s.tell(finish(nets[0], 0))
    assert s.can_ask()  # its two tickets are queued ...
    tickets = s.ask(2)
    assert [c.info["kind"] for c in tickets] == ["ticket", "ticket"] and not s.can_ask()
    for i, c in enumerate(nets[1:] + tickets, 1):
        s.tell(finish(c, i))
    assert s.generation == 0 and s.can_ask()  # ... and the other nets' tickets; generation 1 waits for them
    rest = drive(s, start=8)
    assert counts(rest) == {(0, "ticket"): 10, (1, "child"): 4, (1, "ticket"): 8}
    assert s.finished and not s.can_ask()


def test_asking_past_the_barrier_starts_the_next_generation_early():
    s = make()
    trials = [finish(c, i) for i, c in enumerate(s.ask(6))]
    for t in trials[:5]:
        s.tell(t)
    drive(s, start=6)  # the five told nets' tickets
    assert not s.can_ask() and s.generation == 0
    forced = s.ask(1)[0]  # a driver that ignores can_ask()
    assert forced.generation == 1 and forced.info["kind"] == "child"
    s.tell(trials[5])  # the late net is recorded but queues no tickets
    assert s.generation == 1 and s.kind(5) == "init"


def test_failed_trials_count_as_done_and_never_become_parents():
    fail = {a.key() for a in SPACE.all()[::3]}
    s = make()
    trials = drive(s, fail=fail)
    failed = {t.id for t in trials if t.state is TrialState.FAILED}
    assert failed and s.finished
    assert not any(set(t.parents) & failed for t in trials)
    assert not any(t.info["kind"] == "ticket" and t.parents[0] in failed for t in trials)


@pytest.mark.parametrize("with_trials", [True, False])
def test_state_dict_round_trip_mid_generation_resumes_exactly(with_trials):
    s1 = make(seed=3)
    done = drive(s1, limit=25)  # generation 1, with tickets queued
    in_flight = s1.ask(1)
    assert s1.generation == 1 and in_flight[0].info["kind"] == "ticket" and s1.can_ask()  # one more queued
    state = json.loads(json.dumps(s1.state_dict(include_trials=with_trials)))
    s2 = make(seed=3)
    s2.load_state_dict(state, trials=None if with_trials else done)
    assert s2.state_dict() == json.loads(json.dumps(s1.state_dict()))
    for s in (s1, s2):
        s.tell(finish(in_flight[0], 25))
    a, b = drive(s1, start=26), drive(s2, start=26)
    assert [(t.arch, t.parents, t.generation, t.info) for t in a] == [(t.arch, t.parents, t.generation, t.info)
                                                                      for t in b]
    assert s1.finished and s2.finished and len(done) + 1 + len(a) == s1.budget


def test_rebuild_from_stored_trials_restores_the_schedule():
    s1 = make(seed=4)
    done = drive(s1, limit=22)  # mid generation 1
    running = s1.ask(1)[0]
    stored = done + [Trial(22, running.arch, TrialState.RUNNING, None, running.parents, running.generation,
                           info=dict(running.info))]
    s2 = make(seed=4)
    s2.rebuild(stored)
    assert s2.generation == s1.generation == 1
    assert [t.id for t in s2.parents] == [t.id for t in s1.parents]
    assert s2.selections == s1.selections
    for s in (s1, s2):
        s.tell(finish(running, 22))
    queued = [s.ask(1)[0] for s in (s1, s2)]  # the running ticket's sibling, queued again by the rebuild
    assert queued[0].arch == queued[1].arch and queued[0].info == queued[1].info
    for s, c in zip((s1, s2), queued):
        s.tell(finish(c, 23))
    rest1, rest2 = drive(s1, start=24), drive(s2, start=24)
    assert counts(rest1) == counts(rest2)  # the same schedule (children differ: a rebuild re-seeds the RNG)
    assert not {t.arch.key() for t in stored} & {t.arch.key() for t in rest2}


def test_rebuild_requeues_tickets_that_were_never_asked():
    s1 = make(seed=5)
    first = s1.ask(1)[0]
    told = finish(first, 0)
    s1.tell(told)  # crash here: its tickets were queued but not asked
    s2 = make(seed=5)
    s2.rebuild([told])
    assert [c.arch for c in s2.ask(2)] == [c.arch for c in s1.ask(2)] == proposals(first.arch)[:2]


def test_bad_options_and_results_raise_naming_the_field():
    with pytest.raises(InvalidValue, match="large_model_ratio"):
        make(large_model_ratio=1.5)
    with pytest.raises(InvalidValue, match="size_metric"):
        make(size_metric="")
    s = make(size_metric="latency_ms")
    c = s.ask(1)[0]
    with pytest.raises(InvalidValue, match="size_metric.*latency_ms"):
        s.tell(finish(c, 0))
    s = make()
    c = s.ask(1)[0]
    bad = Result(metrics={"accuracy": 1.0}, costs={"params": 1.0}, info={"lottery_tickets": [{"arch": "nope"}]})
    with pytest.raises(InvalidValue, match=r"lottery_tickets'\]\[0\]"):
        s.tell(Trial(0, c.arch, TrialState.COMPLETE, bad))


def test_too_few_tickets_are_filled_by_best_nets_not_by_size():
    """Regression: with fewer complete tickets than the best share, the next best nets fill in; the large-model
    share stays round(ratio * parent_size), so ratio 0 (the Table 6 ablation) never selects by size."""
    s = make(population_size=2, parent_size=6, lottery_tickets=1, large_model_ratio=0.0)
    accs = {i: float(i) for i in range(4)}
    sizes = {i: 100.0 + i for i in range(4)}
    sizes[0] = 1e6  # the largest model is the worst
    trials = gen0(s, accs, sizes)
    sel = s.selections[0]
    assert sel["large"] == []
    assert sel["best"][:2] == [t.id for t in sorted((t for t in trials if t.info["kind"] == "ticket"),
                                                    key=lambda t: -accs[t.id])]
    assert sorted(sel["best"]) == sorted(t.id for t in trials)  # every network, ranked by the metric
