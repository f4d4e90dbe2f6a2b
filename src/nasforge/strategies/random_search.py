"""Uniform random search: the baseline every NAS paper compares against (e.g. NAS-Bench-201, Dong & Yang 2020,
Sec. 5 "RS"; Li & Talwalkar 2019)."""
from __future__ import annotations

from ..trial import Candidate, Trial
from .base import Strategy, register_strategy

__all__ = ["RandomSearch"]


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniformly random, deduplicated, constraint-respecting samples of the space (no hyper-parameters)."""

    def _propose(self) -> Candidate:
        return self._random_candidate()

    def _observe(self, trial: Trial, score: float | None) -> None:
        """Random search learns nothing."""
