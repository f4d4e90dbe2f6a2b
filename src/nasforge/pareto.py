"""Pareto fronts: NSGA-II's fast non-dominated sort and crowding distance (Deb et al. 2002), and the
non-dominated trade-off of a metric against a cost. Plain numpy over objective arrays; shared by the ``nsga2``
strategy, the study's ``pareto.json`` and the report plots.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import InvalidValue

__all__ = ["fast_non_dominated_sort", "crowding_distance", "pareto_indices"]


def fast_non_dominated_sort(objectives: np.ndarray) -> list[np.ndarray]:
    """Fronts of the rows of ``objectives`` (shape ``(n, m)``, every objective *minimised*).

    Deb et al. 2002, Sec. III-A: front 0 holds the points no other point dominates, front ``k`` those dominated
    only by points of earlier fronts. ``a`` dominates ``b`` iff ``a <= b`` in every objective and ``a < b`` in one.
    Returns index arrays (ascending), best front first; equal points share a front.
    """
    f = np.asarray(objectives, dtype=float)
    if f.ndim != 2:
        raise InvalidValue("objectives shape", f.shape, "(n, m)")
    n = f.shape[0]
    if n == 0:
        return []
    le = np.ones((n, n), dtype=bool)
    lt = np.zeros((n, n), dtype=bool)
    for k in range(f.shape[1]):
        col = f[:, k]
        le &= col[:, None] <= col[None, :]
        lt |= col[:, None] < col[None, :]
    dominates = le & lt  # dominates[i, j]: i dominates j
    count = dominates.sum(axis=0)  # how many points dominate j
    fronts = []
    current = np.flatnonzero(count == 0)
    while current.size:
        fronts.append(current)
        count = count - dominates[current].sum(axis=0)
        count[current] = -1
        current = np.flatnonzero(count == 0)
    return fronts


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
    """Crowding distance of each point of one front (Deb et al. 2002, Sec. III-B).

    Per objective the points are sorted; the two boundary points get ``inf``, an interior point adds the
    normalised gap ``(f[next] - f[prev]) / (f_max - f_min)`` between its neighbours. Objectives with
    ``f_max == f_min`` add nothing.
    """
    f = np.asarray(objectives, dtype=float)
    n = f.shape[0]
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for k in range(f.shape[1]):
        order = np.argsort(f[:, k], kind="stable")
        col = f[order, k]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = math.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def pareto_indices(values: np.ndarray, costs: np.ndarray, mode: str = "max") -> np.ndarray:
    """Indices of the non-dominated points (better metric, lower cost), sorted by cost.

    Uses NSGA-II's fast non-dominated sort (Deb et al. 2002).
    """
    if len(values) == 0:
        return np.array([], dtype=int)
    objectives = np.stack([-values if mode == "max" else values, costs], axis=1)
    front = fast_non_dominated_sort(objectives)[0]
    return front[np.argsort(costs[front], kind="stable")]
