"""Executors (local, process pool, Ray) and the failure classification of evaluate_trial."""
from __future__ import annotations

import concurrent.futures as cf
import os
import sys
from pathlib import Path

import pytest
import torch

from nasforge import get_space
from nasforge.errors import InvalidValue, UnknownName
from nasforge.execute import (LocalExecutor, ProcessPoolExecutor, check_result, classify_failure,
                              evaluate_trial, make_executor)
from nasforge.strategies import get_strategy
from nasforge.study import Study
from nasforge.train import DivergedError
from nasforge.trial import Result, TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))  # toy_eval must be importable by spawned workers
from toy_eval import KeyEvaluator  # noqa: E402

SPACE = get_space("nb201")
ARCH = SPACE.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")


class Raises:
    name = "raises"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def evaluate(self, arch, *, seed=None, context=None):
        raise self.exc


class Returns:
    name = "returns"

    def __init__(self, value) -> None:
        self.value = value

    def evaluate(self, arch, *, seed=None, context=None):
        return self.value


@pytest.mark.parametrize("exc, kind, prefix", [
    (ValueError("bad\nthing"), "error", "error: ValueError: bad thing"),
    (DivergedError(step=7, epoch=1, value=float("nan")), "diverged", "diverged: DivergedError"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "oom", "out of memory:"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried... out of memory"), "oom", "out of memory:"),
    (MemoryError(), "oom", "out of memory: MemoryError"),
])
def test_failures_are_classified_in_one_line(exc, kind, prefix):
    out = evaluate_trial(Raises(exc), ARCH, 0, {}, ("accuracy",))
    assert not out.ok and out.kind == kind and out.reason.startswith(prefix) and "\n" not in out.reason
    assert classify_failure(exc)[0] == kind


def test_keyboard_interrupt_is_not_swallowed():
    with pytest.raises(KeyboardInterrupt):
        evaluate_trial(Raises(KeyboardInterrupt()), ARCH, 0, {}, ())


@pytest.mark.parametrize("value, kind, needle", [
    (Result({"accuracy": float("nan")}), "diverged", "nan"),
    (Result({"accuracy": float("inf")}), "diverged", "inf"),
    (Result({"loss": 1.0}), "error", "no metric 'accuracy'"),
    (Result({"accuracy": "high"}), "error", "not a number"),
    ({"accuracy": 90.0}, "error", "expected a Result"),
])
def test_bad_results_fail_the_trial(value, kind, needle):
    out = evaluate_trial(Returns(value), ARCH, 0, None, ("accuracy",))
    assert out.kind == kind and needle in out.reason


def test_good_result_and_cost_metric():
    out = check_result(Result({"accuracy": 91.0}, costs={"flops": 3.0}), ("accuracy", "flops"))
    assert out.ok and out.result.metrics == {"accuracy": 91.0}


def test_local_executor_runs_in_process():
    ex = make_executor("local")
    assert isinstance(ex, LocalExecutor) and ex.max_workers == 1
    fut = ex.submit(os.getpid)
    assert fut.done() and fut.result() == os.getpid()
    bad = ex.submit(int, "x")
    done, pending = ex.wait_first([bad])
    assert done == {bad} and not pending and isinstance(bad.exception(), ValueError)
    with pytest.raises(KeyboardInterrupt):
        ex.submit(Raises(KeyboardInterrupt()).evaluate, ARCH)


def test_make_executor_rejects_unknown_kinds():
    with pytest.raises(UnknownName, match="executor: got 'gpu'; allowed: 'local', 'pool', 'ray'"):
        make_executor("gpu")
    with pytest.raises(InvalidValue, match="executor.workers"):
        ProcessPoolExecutor(0)


def test_pool_runs_in_spawned_workers_and_survives_a_dead_worker():
    with ProcessPoolExecutor(2) as ex:
        futures = {ex.submit(os.getpid) for _ in range(4)}
        pids = set()
        while futures:
            done, futures = ex.wait_first(futures)
            pids |= {f.result() for f in done}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        dead = ex.submit(os._exit, 3)  # the worker process dies
        with pytest.raises(cf.process.BrokenProcessPool):
            dead.result(timeout=60)
        assert ex.submit(pow, 2, 10).result(timeout=60) == 1024  # a fresh pool took over
        with pytest.raises(InvalidValue, match="pool executor argument 1 .*unpicklable"):
            ex.submit(evaluate_trial, Returns(lambda: 0), ARCH, 0, {}, ())


def test_study_on_a_process_pool(tmp_path):
    evaluator = KeyEvaluator()
    with ProcessPoolExecutor(2) as ex:
        study = Study(SPACE, get_strategy("regularized-evolution", SPACE, seed=1), evaluator, executor=ex,
                      budget=10, seed=1, run_dir=tmp_path, report=False).run()
    trials = study.trials()
    assert len(trials) == 10 and all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.arch.key() for t in trials}) == 10
    for t in trials:  # computed in the spawned workers, equal to an in-process evaluation
        assert t.result.metrics == evaluator.evaluate(t.arch).metrics and t.result.info["pid"] != os.getpid()
    study.close()


def test_ray_missing_names_the_extra(monkeypatch):
    from nasforge.execute.ray import MissingExtra, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtra, match=r"pip install 'nasforge\[ray\]'"):
        import_ray()
    with pytest.raises(MissingExtra, match="ray"):
        make_executor("ray")


@pytest.mark.slow
def test_study_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray")
    import toy_eval
    from nasforge.execute import RayExecutor

    ray.cloudpickle.register_pickle_by_value(toy_eval)  # Ray workers cannot import the tests folder
    evaluator = KeyEvaluator()
    if not os.environ.get("RAY_ADDRESS"):  # no cluster to join here: one line naming the address
        with pytest.raises(InvalidValue, match="executor.address: got 'auto'; allowed: a reachable Ray cluster"):
            RayExecutor("auto")
    ex = RayExecutor("local", init_kwargs={"num_cpus": 2})
    try:
        assert ex.max_workers == 2 and ex.num_gpus == (1.0 if torch.cuda.is_available() else 0.0)
        study = Study(SPACE, get_strategy("random", SPACE, seed=2), evaluator, executor=ex, budget=6, seed=2,
                      run_dir=tmp_path, report=False).run()
        trials = study.trials()
        assert len(trials) == 6 and all(t.state is TrialState.COMPLETE for t in trials)
        assert all(t.result.metrics == evaluator.evaluate(t.arch).metrics for t in trials)
        assert all(t.result.info["pid"] != os.getpid() for t in trials)
        study.close()
        assert not ray.is_initialized()  # the executor stopped the instance it started
    finally:
        ex.shutdown(cancel=True)


def test_pool_workers_are_pinned_to_one_gpu_each_round_robin(monkeypatch):
    """The worker initializer gives worker k the GPU gpus[k % len(gpus)] via CUDA_VISIBLE_DEVICES (checked in
    process: no GPU here); without GPUs it leaves the environment alone."""
    import multiprocessing

    from nasforge.execute.pool import _worker_init, visible_gpus

    counter = multiprocessing.get_context("spawn").Value("i", 0)
    seen = []
    for _ in range(3):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        _worker_init(counter, ["2", "5"])
        seen.append(__import__("os").environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["2", "5", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert visible_gpus() == ["1", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    _worker_init(counter, [])
    assert "CUDA_VISIBLE_DEVICES" not in __import__("os").environ


def _pid(_: int) -> int:
    return os.getpid()


@pytest.mark.slow
def test_ray_reuses_worker_processes_for_gpu_tasks_and_checks_paths_on_every_node(tmp_path):
    """Ray gives a GPU task a fresh process per call by default (each trial would re-decode its data); the executor
    reuses workers unless fresh_process. A path missing on a node is a one-line error naming the field."""
    ray = pytest.importorskip("ray")
    from nasforge.execute import RayExecutor
    from nasforge.execute.ray import missing_paths

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)  # a logical GPU: no device used
    try:
        reused = RayExecutor("local")
        assert reused.num_gpus == 1.0 and reused.max_workers == 1
        pids = [reused.submit(_pid, i).result(timeout=120) for i in range(3)]
        assert len(set(pids)) == 1 and pids[0] != os.getpid()
        fresh = RayExecutor("local", fresh_process=True)
        pids = [fresh.submit(_pid, i).result(timeout=120) for i in range(2)]  # a worker start costs ~25 s
        assert len(set(pids)) == 2

        absent = str(tmp_path / "not-here")
        lost = missing_paths(ray, [str(tmp_path), absent])
        assert len(lost) == 1 and list(lost.values()) == [[absent]]
        reused.check_paths({"out": str(tmp_path)})  # present on the one node
        with pytest.raises(InvalidValue, match=r"data\.source: got '.*not-here'; allowed: a path every Ray node "
                                               r"sees \(missing on 1 of 1 nodes"):
            reused.check_paths({"out": str(tmp_path), "data.source": absent})
        reused.shutdown()
        fresh.shutdown()
        assert ray.is_initialized()  # the executors did not start this instance, so they leave it running
    finally:
        ray.shutdown()


class _Elsewhere(LocalExecutor):
    """Runs in-process (fast) but reports itself as out-of-process, like a pool or Ray executor."""

    in_process = False


def test_the_driver_of_an_out_of_process_search_keeps_no_data(tmp_path):
    from nasforge.config import SearchConfig
    from nasforge.study import build_study

    raw = {"space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}}, "strategy": "random", "budget": 1,
           "progress": False, "report": False, "data": {"source": "digits", "limit": 200, "val_fraction": 0.2},
           "evaluator": {"kind": "train", "epochs": 0.2, "train": {"batch_size": 32}}}
    local = build_study(SearchConfig(**raw), tmp_path / "a")
    assert local.evaluator._splits is not None  # in-process trials use the driver's copy
    remote = build_study(SearchConfig(**raw), tmp_path / "b", executor=_Elsewhere())
    assert remote.evaluator._splits is None and remote.evaluator.input_spec == local.evaluator.input_spec
    assert remote.evaluator._splits is None  # the checked spec answers without reloading
    remote.run()
    (trial,) = remote.trials()
    assert trial.state is TrialState.COMPLETE  # the trial loaded the data itself
