"""The :class:`Executor` contract: where a study's evaluations run (DESIGN.md, "Executor").

Every executor has the same three verbs, so the study loop never branches on where trials run:

* :meth:`Executor.submit` ``(fn, *args) -> concurrent.futures.Future`` — start one evaluation;
* :meth:`Executor.wait_first` ``(futures) -> (done, pending)`` — block until at least one has finished;
* :meth:`Executor.shutdown` ``(cancel=False)`` — release workers (``cancel`` abandons evaluations in flight).

``max_workers`` says how many evaluations the study may keep in flight.

The unit of work the study submits is :func:`evaluate_trial`. It runs *inside* the worker and never raises for a
failing evaluation: it returns a :class:`TrialOutcome` holding either the :class:`~nasforge.trial.Result` or a one-line
reason (``"diverged: ..."``, ``"out of memory: ..."``, ``"error: ValueError: ..."``). Classifying failures in the
worker keeps exceptions from crossing process boundaries (nasforge's exceptions take several constructor arguments
and do not unpickle, and a CUDA out-of-memory error must be handled where the CUDA context lives).
``KeyboardInterrupt`` is not caught: Ctrl-C stops the study.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..arch import Architecture
from ..trial import Result

__all__ = ["Executor", "TrialOutcome", "evaluate_trial", "classify_failure", "check_result"]


@dataclass
class TrialOutcome:
    """What one evaluation produced: a result, or ``reason`` (one line) and ``kind`` of failure."""

    result: Result | None = None
    reason: str | None = None
    kind: str | None = None  #: ``"error"``, ``"diverged"``, ``"oom"`` or ``"worker"`` (the worker process died)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is not None


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def classify_failure(exc: BaseException) -> tuple[str, str]:
    """``(kind, reason)`` of an evaluation error: divergence (nasforge.train's ``DivergedError``), out of memory
    (``torch.OutOfMemoryError``, ``MemoryError``, a ``RuntimeError`` saying 'out of memory') or a plain error."""
    name = type(exc).__name__
    text = _one_line(f"{name}: {exc}")
    if any(c.__name__ == "DivergedError" for c in type(exc).__mro__):
        return "diverged", f"diverged: {text}"
    oom_types: tuple[type, ...] = (MemoryError,)
    try:
        import torch

        oom_types += (torch.OutOfMemoryError,)
    except (ImportError, AttributeError):  # pragma: no cover - very old torch
        pass
    if isinstance(exc, oom_types) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()):
        _release_cuda_memory()
        return "oom", f"out of memory: {text}"
    return "error", f"error: {text}"


def _release_cuda_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort only
        pass


def check_result(result: Any, metrics: Iterable[str] = ()) -> TrialOutcome:
    """A :class:`TrialOutcome` for what an evaluator returned: not a :class:`Result`, a missing metric or a
    non-finite (NaN / inf) metric is a failure (a NaN accuracy means the training diverged)."""
    if not isinstance(result, Result):
        return TrialOutcome(reason=f"error: evaluator returned {type(result).__name__}, expected a Result",
                            kind="error")
    for name in metrics:
        value = result.metrics.get(name, result.costs.get(name))
        if value is None:
            return TrialOutcome(reason=f"error: result has no metric {name!r} (metrics: {sorted(result.metrics)})",
                                kind="error")
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            return TrialOutcome(reason=f"error: metric {name!r} is {value!r}, not a number", kind="error")
        if not finite:
            return TrialOutcome(reason=f"diverged: metric {name!r} is {value}", kind="diverged")
    return TrialOutcome(result=result)


def evaluate_trial(evaluator: Any, arch: Architecture, seed: int | None, context: Mapping[str, Any] | None,
                   metrics: tuple[str, ...] = ()) -> TrialOutcome:
    """Run ``evaluator.evaluate(arch, seed=seed, context=context)`` and never raise for a failing evaluation.

    Returns the result (checked by :func:`check_result` for the study's ``metrics``) or the classified failure
    (:func:`classify_failure`). Runs in the worker process of any executor.
    """
    start = time.perf_counter()
    try:
        outcome = check_result(evaluator.evaluate(arch, seed=seed, context=dict(context or {})), metrics)
    except Exception as exc:  # every evaluation error becomes a failed trial; KeyboardInterrupt propagates
        kind, reason = classify_failure(exc)
        outcome = TrialOutcome(reason=reason, kind=kind)
    outcome.seconds = time.perf_counter() - start
    return outcome


class Executor(ABC):
    """Runs evaluations: ``submit`` -> future, ``wait_first``, ``shutdown``. Use as a context manager."""

    name: str = "executor"
    #: how many evaluations may be in flight at once
    max_workers: int = 1
    #: evaluations run in this process (the evaluator's loaded data is the one they use)
    in_process: bool = False
    #: evaluations may run on other machines (paths they read or write must exist there too)
    remote_nodes: bool = False

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """Start ``fn(*args)``; the returned future holds its return value (or the exception it raised)."""

    def wait_first(self, futures: Iterable[cf.Future], timeout: float | None = None) -> tuple[set, set]:
        """Block until at least one of ``futures`` is done (or ``timeout`` s pass); ``(done, not_done)``."""
        done, pending = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return set(done), set(pending)

    @abstractmethod
    def shutdown(self, *, cancel: bool = False) -> None:
        """Release the workers. ``cancel=True`` abandons evaluations in flight instead of waiting for them."""

    def check_paths(self, paths: Mapping[str, str]) -> None:
        """Fail in one line when a path (``{config field: path}``) the evaluations use is not reachable where they
        run. Local processes see this machine's files: nothing to check."""

    def describe(self) -> dict[str, Any]:
        """A JSON summary for logs and the run's config (name, workers, ...)."""
        return {"name": self.name, "workers": self.max_workers}

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.shutdown(cancel=exc_type is not None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} workers={self.max_workers}>"
