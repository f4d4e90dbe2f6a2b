"""A local process pool: several evaluations in parallel on one machine.

Wraps :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method (safe with PyTorch and CUDA,
and the same on Linux, macOS and Windows). Each worker runs one trial at a time; with ``fresh_process=True`` every
trial gets a new process (``max_tasks_per_child=1``), which isolates leaks and fragmentation at the cost of a
process start (and a ``torch`` import) per trial.

What is submitted must be picklable: the evaluator and the architecture are checked when submitted, with a clear
error, instead of failing later inside the pool. A worker that dies (killed, segfault) breaks the Python pool; the
futures in flight then fail with ``BrokenProcessPool`` (the study records those trials as failed) and the next
``submit`` starts a new pool.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from ..errors import InvalidValue
from .base import Executor

__all__ = ["ProcessPoolExecutor", "PoolExecutor"]


def default_workers() -> int:
    """Number of usable CPU cores (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to kill this worker when the search process dies (e.g. kill -9),
    so no orphan keeps training, or holding a GPU, while a resumed search runs the same trial again."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # no libc.so.6 (e.g. musl): workers then outlive a killed parent
        pass


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # pragma: no cover - a broken CUDA install: run on CPU
        return []


def _worker_init(counter: Any, gpus: list[str]) -> None:
    """Worker initializer: die with the parent, and pin the worker to one GPU (round robin over ``gpus``) before
    anything initialises CUDA, so parallel trials with ``device: cuda`` / ``auto`` spread over the GPUs (one GPU
    per worker, as the Ray executor does) instead of all landing on GPU 0."""
    _die_with_parent()
    if gpus:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]


class ProcessPoolExecutor(Executor):
    """``workers`` spawned processes, one trial each at a time (default: one per CPU core); with CUDA, each worker
    sees one GPU (round robin over the visible ones)."""

    name = "pool"

    def __init__(self, workers: int | None = None, *, fresh_process: bool = False) -> None:
        if workers is None:
            workers = default_workers()
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise InvalidValue("executor.workers", workers, "a positive int")
        self.max_workers = workers
        self.fresh_process = bool(fresh_process)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._checked: dict[int, Any] = {}  # id -> object already shown to pickle (kept alive so ids stay unique)

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        return cf.ProcessPoolExecutor(max_workers=self.max_workers, mp_context=ctx,
                                      max_tasks_per_child=1 if self.fresh_process else None,
                                      initializer=_worker_init, initargs=(ctx.Value("i", 0), visible_gpus()))

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        for i, arg in enumerate((fn, *args)):
            if self._checked.get(id(arg)) is arg:  # the same evaluator every trial: check it once
                continue
            try:
                pickle.dumps(arg)
            except Exception as exc:
                what = "function" if i == 0 else f"argument {i} ({type(arg).__name__})"
                raise InvalidValue(f"pool executor {what}", f"unpicklable: {type(exc).__name__}: {exc}"[:160],
                                   "a picklable object (module-level class or function) or executor 'local'") from None
            if i < 2:
                self._checked[id(arg)] = arg
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(fn, *args)
        except BrokenProcessPool:  # a worker died earlier: start a fresh pool and go on
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, *args)

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop the pool; with ``cancel`` the queued work is dropped and running workers are terminated."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if cancel:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in processes:  # CPython keeps its workers here; terminating them is the only way to stop a trial
                if p.is_alive():
                    p.terminate()
            for p in processes:
                p.join(timeout=5)
        else:
            pool.shutdown(wait=True)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.max_workers, "fresh_process": self.fresh_process}


PoolExecutor = ProcessPoolExecutor
