"""Search strategies (ask / tell) and their registry.

>>> from nasforge.strategies import get_strategy, list_strategies
>>> s = get_strategy("regularized-evolution", "nb201", seed=0)
>>> cands = s.ask(4)

Built-ins: ``random``, ``regularized-evolution`` (Real et al. 2019), ``spos-evolution`` (SPOS / DCNAS),
``nsga2`` (PAD-NAS constrained evolutionary search), ``menas`` (MENAS generations with lottery tickets and
large-model regularisation) and ``local-search`` (White et al. 2021), the default
(:data:`DEFAULT_STRATEGY`) because it beat regularized evolution on the NAS-Bench-201 benchmark
(``benchmarks/bench_nb201_strategies.py``).
"""
from __future__ import annotations

from typing import Any

from ..registry import STRATEGIES, get_space
from ..spaces.base import SearchSpace
from .base import Constraint, CostFn, Hyper, Strategy, register_strategy

__all__ = ["STRATEGIES", "DEFAULT_STRATEGY", "register_strategy", "get_strategy", "list_strategies",
           "Strategy", "Constraint", "CostFn", "Hyper"]

#: the strategy used when none is named (see ``.notes/bench_strategies.md`` for the evidence)
DEFAULT_STRATEGY = "local-search"


def get_strategy(name: str, space: SearchSpace | str, *, seed: int, **kwargs: Any) -> Strategy:
    """A new strategy ``name`` over ``space`` (a :class:`SearchSpace` or a registered space name).

    ``kwargs`` are :class:`Strategy` options (``metric``, ``mode``, ``constraints``, ``cost_fn``) and the
    strategy's hyper-parameters; unknown names raise :class:`~nasforge.errors.UnknownName` /
    :class:`~nasforge.errors.InvalidValue`.
    """
    if isinstance(space, str):
        space = get_space(space)
    return STRATEGIES.create(name, space=space, seed=seed, **kwargs)


def list_strategies() -> list[str]:
    """Names of all registered strategies."""
    return STRATEGIES.names()


# Built-in strategies register themselves on import.
from . import (
    evolution,  # noqa: E402,F401
    local_search,  # noqa: E402,F401
    menas,  # noqa: E402,F401
    nsga2,  # noqa: E402,F401
    random_search,  # noqa: E402,F401
)
