"""A minimal in-memory search loop: ask -> evaluate -> tell (the real :class:`Study` adds the trial store,
executors and callbacks). Used by the tests and the benchmarks."""
from __future__ import annotations

from typing import Callable, Mapping, Union

from ..arch import Architecture
from ..errors import InvalidValue
from ..trial import Result, Trial, TrialState
from .base import Strategy

__all__ = ["run_loop", "EvaluateFn"]

EvaluateFn = Callable[[Architecture], Union[Result, Mapping[str, float]]]


def _evaluate(evaluate_fn: EvaluateFn, trial: Trial) -> Trial:
    try:
        out = evaluate_fn(trial.arch)
    except Exception as exc:  # an evaluation that raises is a failed trial, as in a real study
        trial.state, trial.error = TrialState.FAILED, f"{type(exc).__name__}: {exc}"
        return trial
    if isinstance(out, Mapping):
        out = Result(metrics={k: float(v) for k, v in out.items()})
    if not isinstance(out, Result):
        trial.state, trial.error = TrialState.FAILED, f"evaluate_fn returned {type(out).__name__}"
        return trial
    trial.state, trial.result = TrialState.COMPLETE, out
    return trial


def run_loop(strategy: Strategy, evaluate_fn: EvaluateFn, budget: int, *, batch_size: int = 1,
             start_id: int | None = None) -> list[Trial]:
    """Run ``strategy`` for ``budget`` trials; ids are dense from ``start_id`` (default: the strategy's asks so
    far, i.e. 0 for a fresh one, which also continues a resumed strategy).

    ``evaluate_fn(arch)`` returns a :class:`Result` or a ``{metric: value}`` mapping; an exception (or any other
    return value) makes the trial FAILED and the loop goes on. With ``batch_size > 1`` the loop asks a whole
    batch before telling any of it, as a parallel executor would (those asks are in flight together).
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise InvalidValue("budget", budget, "a non-negative int")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidValue("batch_size", batch_size, "a positive int")
    trials: list[Trial] = []
    next_id = strategy.n_asked if start_id is None else int(start_id)
    while len(trials) < budget:
        cands = strategy.ask(min(batch_size, budget - len(trials)))
        batch = []
        for c in cands:
            batch.append(Trial(id=next_id, arch=c.arch, parents=c.parents, generation=c.generation,
                               seed=strategy.seed))
            next_id += 1
        for t in batch:
            strategy.tell(_evaluate(evaluate_fn, t))
        trials.extend(batch)
    return trials
