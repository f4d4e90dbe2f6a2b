"""Executors: where a study's evaluations run — in-process, a local process pool, or a Ray cluster.

>>> from nasforge.execute import make_executor
>>> executor = make_executor("pool", workers=2)

Each kind is registered in :data:`nasforge.registry.EXECUTORS` (``executor.kind`` of a search config); a factory
takes ``workers``, ``address`` and the kind's own options, and ignores the options of other kinds.
"""
from __future__ import annotations

from typing import Any

from ..registry import EXECUTORS
from .base import Executor, TrialOutcome, check_result, classify_failure, evaluate_trial
from .local import LocalExecutor
from .pool import PoolExecutor, ProcessPoolExecutor

__all__ = ["Executor", "TrialOutcome", "evaluate_trial", "classify_failure", "check_result", "LocalExecutor",
           "ProcessPoolExecutor", "PoolExecutor", "RayExecutor", "make_executor", "EXECUTORS"]


@EXECUTORS.register("local")
def _local(workers: int | None = None, address: str = "local", **_other_kinds: Any) -> Executor:
    """In-process, one trial at a time."""
    return LocalExecutor()


@EXECUTORS.register("pool")
def _pool(workers: int | None = None, address: str = "local", fresh_process: bool = False,
          **_other_kinds: Any) -> Executor:
    """``workers`` spawned processes (``fresh_process``: a new process per trial)."""
    return ProcessPoolExecutor(workers, fresh_process=fresh_process)


@EXECUTORS.register("ray")
def _ray(workers: int | None = None, address: str = "local", num_cpus: float = 1.0, num_gpus: float | None = None,
         fresh_process: bool = False, **_other_kinds: Any) -> Executor:
    """A Ray cluster (``address`` local / auto / URL) with ``num_cpus`` / ``num_gpus`` per trial; workers are
    reused across trials unless ``fresh_process``."""
    from .ray import RayExecutor  # here: ray is an optional extra, imported only when asked for

    return RayExecutor(address, workers=workers, num_cpus=num_cpus, num_gpus=num_gpus, fresh_process=fresh_process)


def make_executor(kind: str = "local", *, workers: int | None = None, address: str = "local",
                  **options: Any) -> Executor:
    """An executor by name: ``local`` (in-process), ``pool`` (``workers`` spawned processes; option
    ``fresh_process``) or ``ray`` (``address`` local / auto / URL; options ``num_cpus``, ``num_gpus``)."""
    return EXECUTORS.create(kind, workers=workers, address=address, **options)


def __getattr__(name: str) -> Any:  # RayExecutor without importing ray at package import
    if name == "RayExecutor":
        from .ray import RayExecutor

        return RayExecutor
    raise AttributeError(name)
