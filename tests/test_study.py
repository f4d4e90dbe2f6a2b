"""The Study loop: ask -> evaluate -> tell -> store, failures, Ctrl-C, resume (incl. SIGKILLs), outputs."""
from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nasforge import get_space
from nasforge.config import config_from_dict
from nasforge.errors import InvalidValue
from nasforge.eval.tabular import TabularEvaluator
from nasforge.execute import Executor
from nasforge.io import CheckpointError, load_checkpoint, save_checkpoint
from nasforge.store import INTERRUPTED, MemoryStore, SQLiteStore
from nasforge.strategies import get_strategy, list_strategies
from nasforge.study import STORE_NAME, Study, build_study, trial_seed
from nasforge.train import DivergedError
from nasforge.trial import TrialState

SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def table() -> TabularEvaluator:
    return TabularEvaluator.nb201("cifar10", "hp200-test")


class Flaky:
    """Deterministic evaluator: the table, except some architectures raise, diverge or run out of memory."""

    name = "flaky"

    def __init__(self, table: TabularEvaluator, interrupt_at: int | None = None, sleep: float = 0.0,
                 checkpoints: bool = False) -> None:
        self.table, self.interrupt_at, self.sleep, self.checkpoints = table, interrupt_at, sleep, checkpoints
        self.calls = 0

    def evaluate(self, arch, *, seed=None, context=None):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if self.sleep:
            time.sleep(self.sleep)
        idx = SPACE.index(arch)
        if idx % 17 == 0:
            raise ValueError(f"cannot evaluate {idx}")
        if idx % 17 == 1:
            raise DivergedError(step=3, epoch=0, value=float("nan"))
        if idx % 17 == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        res = self.table.evaluate(arch)
        if idx % 17 == 3:
            res.metrics["accuracy"] = float("nan")
        if self.checkpoints and context and context.get("trial_dir"):
            path = Path(context["trial_dir"]) / "w.pt"
            sha = save_checkpoint(path, {"w": torch.full((3,), float(idx)), "seed": int(seed)})
            res.artifacts["checkpoint"], res.info["checkpoint_sha256"] = str(path), sha
        return res


def make_study(tmp: Path | None, evaluator, *, strategy: str = "regularized-evolution", budget: int = 40,
               seed: int = 0, store=None, **params) -> Study:
    strat = get_strategy(strategy, SPACE, seed=seed, **params)
    return Study(SPACE, strat, evaluator, store, budget=budget, seed=seed, run_dir=tmp, report=False)


def completed(store) -> list[tuple[str, float]]:
    """(arch key, accuracy) of the complete trials in id order: the decisions a search made."""
    return [(t.arch.key(), t.result.metrics["accuracy"]) for t in store.trials(TrialState.COMPLETE)]


def test_search_records_every_trial(tmp_path, table):
    study = make_study(tmp_path, table, budget=30).run()
    trials = study.trials()
    assert len(trials) == 30 and all(t.state is TrialState.COMPLETE for t in trials)
    assert [t.id for t in trials] == list(range(30))
    assert len({t.arch.key() for t in trials}) == 30  # the strategy never repeats
    assert [t.seed for t in trials] == [trial_seed(0, k) for k in range(30)]
    best = max(trials, key=lambda t: t.result.metrics["accuracy"])
    summary = json.loads((tmp_path / "best.json").read_text())
    assert summary["best"]["trial_id"] == best.id and summary["best"]["arch"] == str(best.arch)
    assert SPACE.parse(summary["best"]["arch"]) == best.arch
    assert summary["best"]["value"] == pytest.approx(best.result.metrics["accuracy"])
    assert study.store.get_meta("strategy_state")["n_asked"] == 30
    study.close()


def test_failures_are_recorded_and_the_search_goes_on(table):
    study = make_study(None, Flaky(table), strategy="random", budget=120, seed=3).run()
    trials = study.trials()
    assert len(trials) == 120 and study.n_finished == 120
    by_kind = {"error:": 0, "diverged:": 0, "out of memory:": 0}
    for t in trials:
        idx = SPACE.index(t.arch)
        if idx % 17 < 4:
            assert t.state is TrialState.FAILED, (idx, t)
            kind = ["error:", "diverged:", "out of memory:", "diverged:"][idx % 17]
            assert t.error.startswith(kind) and "\n" not in t.error
            by_kind[kind] += 1
        else:
            assert t.state is TrialState.COMPLETE
    assert all(by_kind.values()), by_kind  # every kind of failure happened (seeded)
    assert study.n_failed == sum(by_kind.values())
    best = study.best_trial()
    assert best.state is TrialState.COMPLETE and np.isfinite(best.result.metrics["accuracy"])


def test_ctrl_c_leaves_the_trial_running_and_resume_equals_uninterrupted(tmp_path, table):
    reference = make_study(None, Flaky(table), budget=40).run()
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        make_study(run, Flaky(table, interrupt_at=17), budget=40).run()
    with SQLiteStore(run / STORE_NAME) as store:
        states = [t.state for t in store.trials()]
    assert states.count(TrialState.RUNNING) == 1 and states[-1] is TrialState.RUNNING and len(states) == 17
    resumed = make_study(run, Flaky(table), budget=40).run()
    assert completed(resumed.store) == completed(reference.store)
    assert resumed.n_finished == 40
    interrupted = [t for t in resumed.trials() if t.error == INTERRUPTED]
    assert len(interrupted) == 1 and interrupted[0].id == 16
    assert resumed.best_trial().arch == reference.best_trial().arch


@pytest.mark.parametrize("name", list_strategies())
def test_resume_equals_uninterrupted_for_every_strategy(tmp_path, table, name):
    params = {"nsga2": dict(population_size=6, cost="flops"), "spos-evolution": dict(
        population_size=6, top_k=3, mutation_num=3, crossover_num=3)}.get(name, {})
    reference = make_study(None, Flaky(table), strategy=name, budget=26, seed=5, **params).run()
    with pytest.raises(KeyboardInterrupt):
        make_study(tmp_path, Flaky(table, interrupt_at=11), strategy=name, budget=26, seed=5, **params).run()
    resumed = make_study(tmp_path, Flaky(table), strategy=name, budget=26, seed=5, **params).run()
    assert completed(resumed.store) == completed(reference.store)
    assert [t.error for t in resumed.trials() if t.state is TrialState.FAILED and t.error != INTERRUPTED] == \
        [t.error for t in reference.trials() if t.state is TrialState.FAILED]


class Deferred(Executor):
    """A deterministic 'parallel' executor: up to 3 evaluations in flight, run oldest-first when waited on."""

    name = "deferred"

    def __init__(self) -> None:
        self.max_workers, self.queue = 3, []

    def submit(self, fn, *args):
        fut = cf.Future()
        self.queue.append((fut, fn, args))
        return fut

    def wait_first(self, futures, timeout=None):
        fut, fn, args = self.queue.pop(0)
        fut.set_result(fn(*args))
        return {fut}, set(futures) - {fut}

    def shutdown(self, *, cancel=False):
        self.queue.clear()


@pytest.mark.parametrize("name", ["regularized-evolution", "spos-evolution"])
def test_trials_in_flight_at_ctrl_c_are_evaluated_again(tmp_path, table, name):
    params = {"spos-evolution": dict(population_size=6, top_k=3, mutation_num=3, crossover_num=3)}.get(name, {})

    def study(run, evaluator):
        strat = get_strategy(name, SPACE, seed=9, **params)
        return Study(SPACE, strat, evaluator, None, executor=Deferred(), budget=30, seed=9, run_dir=run,
                     report=False)

    reference = study(None, Flaky(table)).run()
    with pytest.raises(KeyboardInterrupt):
        study(tmp_path, Flaky(table, interrupt_at=14)).run()
    with SQLiteStore(tmp_path / STORE_NAME) as store:
        running = store.trials(TrialState.RUNNING)
        in_flight = store.get_meta("study_state")["in_flight"]
    assert len(running) == 3 and set(in_flight) < {t.id for t in running} and in_flight  # asked before the save
    resumed = study(tmp_path, Flaky(table)).run()
    assert completed(resumed.store) == completed(reference.store)
    redone = [t for t in resumed.trials() if t.id > max(t.id for t in running)]
    for t in running:  # every interrupted trial was evaluated again, with its seed
        assert any(r.arch == t.arch and r.seed == t.seed for r in redone)
    resumed.close()


def test_a_result_the_store_cannot_hold_fails_the_trial(table):
    class Odd:
        name = "odd"

        def evaluate(self, arch, *, seed=None, context=None):
            res = table.evaluate(arch)
            if SPACE.index(arch) % 2:
                res.info["model"] = object()
            return res

    study = make_study(None, Odd(), strategy="random", budget=12).run()
    failed = study.trials(TrialState.FAILED)
    assert failed and all(t.error.startswith("error: result info") for t in failed)
    assert all(SPACE.index(t.arch) % 2 for t in failed) and study.n_finished == 12


def test_resume_without_saved_state_rebuilds_from_trials(tmp_path, table):
    with pytest.raises(KeyboardInterrupt):
        make_study(tmp_path, Flaky(table, interrupt_at=15), budget=30).run()
    with SQLiteStore(tmp_path / STORE_NAME) as store:  # as if written by code that saved no strategy state
        store.set_meta("strategy_state", None)
    resumed = make_study(tmp_path, table, budget=30).run()
    trials = resumed.trials()
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    assert resumed.n_finished == 30 and len(trials) == 31  # 30 finished + the interrupted row
    assert len({t.arch.key() for t in done}) == len(done)  # nothing evaluated twice
    redone = [t for t in trials if t.error == INTERRUPTED]
    assert len(redone) == 1 and any(t.arch == redone[0].arch and t.seed == redone[0].seed for t in done)


def _child(run_dir: str) -> None:
    """Forked child: run (or resume) the study until done or SIGKILLed."""
    study = make_study(Path(run_dir), Flaky(_TABLE, sleep=0.03, checkpoints=True), budget=60, seed=7)
    study.run()


_TABLE: TabularEvaluator | None = None


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL") or "fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs POSIX SIGKILL and fork")
def test_sigkill_several_times_then_resume_loses_and_duplicates_nothing(tmp_path, table):
    global _TABLE
    _TABLE = table
    reference = make_study(tmp_path / "ref", Flaky(table, checkpoints=True), budget=60, seed=7).run()
    run = tmp_path / "run"
    rng = np.random.default_rng(2024)
    targets = sorted(rng.choice(np.arange(4, 50), size=3, replace=False).tolist())
    ctx = multiprocessing.get_context("fork")
    for target in targets:  # kill when `target` trials are complete, plus a seeded random extra delay
        proc = ctx.Process(target=_child, args=(str(run),))
        proc.start()
        deadline = time.time() + 120
        while time.time() < deadline and proc.is_alive():
            if (run / STORE_NAME).exists():
                with sqlite3.connect(run / STORE_NAME, timeout=30) as conn:
                    n = conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'complete'").fetchone()[0]
                if n >= target:
                    break
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0, 0.02)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    proc = ctx.Process(target=_child, args=(str(run),))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0
    with SQLiteStore(run / STORE_NAME) as store:
        assert store.integrity_check() == "ok"
        assert completed(store) == completed(reference.store)  # none lost, none duplicated, same decisions
        done = store.trials(TrialState.COMPLETE)
        assert len({t.arch.key() for t in done}) == len(done)
        assert all(store.verify_checkpoint(t) for t in done)
        assert all(t.state is not TrialState.RUNNING for t in store.trials())
        interrupted = [t for t in store.trials() if t.error == INTERRUPTED]
        assert 1 <= len(interrupted) <= len(targets)  # the kills hit running trials, which were evaluated again
        redone = [d for d in store.trials() if d.error != INTERRUPTED]
        assert all(any(d.arch == t.arch and d.seed == t.seed for d in redone) for t in interrupted)
        victim = done[len(done) // 2]
    assert load_checkpoint(victim.checkpoint, sha256=victim.checkpoint_sha256)["seed"] == victim.seed
    Path(victim.checkpoint).write_bytes(Path(victim.checkpoint).read_bytes()[:-3] + b"xyz")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(victim.checkpoint, sha256=victim.checkpoint_sha256)
    study = make_study(run, Flaky(table), budget=60, seed=7)
    with pytest.raises(CheckpointError):
        study.load_checkpoint(victim.id)
    study.close()


def test_outputs_config_and_multi_objective_pareto(tmp_path):
    config = config_from_dict({"space": "nb201", "strategy": {"name": "nsga2", "params": {
        "population_size": 8, "cost": "flops"}}, "budget": 24, "progress": False,
        "constraints": [{"name": "flops", "max": 2.0e8}], "evaluator": {"protocol": "hp200-test"}})
    study = build_study(config, tmp_path / "mo").run()
    out = tmp_path / "mo"
    for name in ("trials.sqlite", "config.yaml", "best.json", "pareto.json", "report.html", "best_so_far.png"):
        assert (out / name).is_file(), name
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["budget"] == 24 and resolved["strategy"]["params"]["max_iterations"] == 40
    pareto = json.loads((out / "pareto.json").read_text())
    done = study.trials(TrialState.COMPLETE)
    assert all(t.result.costs["flops"] <= 2.0e8 for t in done)  # the constraint held for every trial
    front = {(p["accuracy"], p["flops"]) for p in pareto["front"]}
    for acc, flops in front:  # nothing evaluated dominates a front member
        assert not any(t.result.metrics["accuracy"] >= acc and t.result.costs["flops"] <= flops
                       and (t.result.metrics["accuracy"], t.result.costs["flops"]) != (acc, flops) for t in done)
    assert {r["trial_id"] for r in pareto["ranks"]} == {t.id for t in done}
    assert pareto["duplicates"] == study.strategy.duplicates and len({t.arch.key() for t in done}) == len(done)
    study.close()


def test_invalid_arguments_name_the_field(tmp_path, table):
    strat = get_strategy("random", SPACE, seed=0)
    with pytest.raises(InvalidValue, match="budget"):
        Study(SPACE, strat, table, budget=0)
    with pytest.raises(InvalidValue, match="mode"):
        Study(SPACE, strat, table, budget=3, mode="up")
    with pytest.raises(InvalidValue, match="evaluator"):
        Study(SPACE, strat, object(), budget=3)
    config = config_from_dict({"space": "nb201", "budget": 5, "progress": False})
    build_study(config, tmp_path).run().close()
    with pytest.raises(InvalidValue, match="resume"):
        build_study(config, tmp_path)


def test_resume_extends_the_budget(tmp_path):
    config = config_from_dict({"space": "nb201", "strategy": "local-search", "budget": 12, "progress": False})
    build_study(config, tmp_path).run().close()
    with Study.resume(tmp_path, overrides=["budget=20"]) as study:
        study.run()
        assert study.n_finished == 20 and len(study.trials()) == 20
        assert study.store.get_meta("study")["budget"] == 20
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["budget"] == 20


def test_memory_store_and_trial_context(table):
    seen = []

    class Spy:
        name = "spy"

        def evaluate(self, arch, *, seed=None, context=None):
            seen.append(dict(context))
            return table.evaluate(arch)

    study = make_study(None, Spy(), budget=15, store=MemoryStore()).run()
    assert isinstance(study.store, MemoryStore) and len(study.trials()) == 15
    assert [c["trial_id"] for c in seen] == list(range(15))
    children = [(c, t) for c, t in zip(seen, study.trials()) if t.parents]
    assert children and all(c["parent_arch"] == study.store.get(t.parents[0]).arch for c, t in children)
    assert all("trial_dir" not in c for c in seen)  # no run folder, no files
