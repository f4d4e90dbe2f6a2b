"""Executors: where a study's evaluations run — in-process, a local process pool, or a Ray cluster.

>>> from nasforge.execute import make_executor
>>> executor = make_executor("pool", workers=2)
"""
from __future__ import annotations

from typing import Any

from ..errors import UnknownName
from .base import Executor, TrialOutcome, check_result, classify_failure, evaluate_trial
from .local import LocalExecutor
from .pool import PoolExecutor, ProcessPoolExecutor

__all__ = ["Executor", "TrialOutcome", "evaluate_trial", "classify_failure", "check_result", "LocalExecutor",
           "ProcessPoolExecutor", "PoolExecutor", "RayExecutor", "make_executor", "EXECUTORS"]

#: executor kinds accepted by :func:`make_executor` (and the ``executor.kind`` config field)
EXECUTORS = ("local", "pool", "ray")


def make_executor(kind: str = "local", *, workers: int | None = None, address: str = "local",
                  **options: Any) -> Executor:
    """An executor by name: ``local`` (in-process), ``pool`` (``workers`` spawned processes; option
    ``fresh_process``) or ``ray`` (``address`` local / auto / URL; options ``num_cpus``, ``num_gpus``)."""
    if kind == "local":
        return LocalExecutor()
    if kind == "pool":
        return ProcessPoolExecutor(workers, **options)
    if kind == "ray":
        from .ray import RayExecutor

        return RayExecutor(address, workers=workers, **options)
    raise UnknownName("executor", kind, EXECUTORS)


def __getattr__(name: str) -> Any:  # RayExecutor without importing ray at package import
    if name == "RayExecutor":
        from .ray import RayExecutor

        return RayExecutor
    raise AttributeError(name)
