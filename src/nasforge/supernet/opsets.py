"""Operation statistics of choice spaces and operation pruning (PAD-NAS, padnas.txt Sec. 3.2 "Operation Pruning",
Algorithm 1 lines 4-7).

:func:`op_frequencies` estimates the probability ``p^{i,j}`` of operation ``i`` at position ``j`` from a set of
architectures: "count the frequency of operations ... and normalize it". :func:`prune_op_sets` removes the
operations with ``p^{i,j} <= P_th`` ("remove s^{i,j} from S if p^{i,j} <= P_th"). The paper does not say what
happens when every operation of a position falls under the threshold (only possible when ``P_th >= 1 / |ops|``);
here the most frequent one(s) stay, so no position is ever emptied.

Both work on plain ``{position label: ops}`` mappings (``space.op_sets()`` / ``net.op_sets()``), so they serve any
choice space (``nb201`` edges, ``proxyless-*`` layers). :func:`ranked_op_frequencies` restricts the count to
the architectures of a search whose non-domination rank is below a limit (PAD-NAS: rank < 10, the Pareto front
being rank 1, "to mitigate" the noise of one-shot accuracies).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from ..arch import Architecture
from ..errors import InvalidValue
from ..trial import Trial

__all__ = ["op_frequencies", "ranked_op_frequencies", "prune_op_sets"]


def op_frequencies(op_sets: Mapping[str, Sequence[str]], archs: Iterable[Architecture]) -> dict[str, dict[str, float]]:
    """Per position, the fraction of ``archs`` that choose each operation of its set (every op listed, 0.0 when
    never chosen; each position sums to 1). Architectures are counted as given: deduplicate them first when
    repeats should count once. No architecture: every frequency is 0.0."""
    counts = {label: dict.fromkeys(ops, 0) for label, ops in op_sets.items()}
    n = 0
    for arch in archs:
        n += 1
        for label, row in counts.items():
            op = str(arch[label])
            if op not in row:
                raise InvalidValue(f"operation of {label!r}", op, list(row), where="op_frequencies")
            row[op] += 1
    return {label: {op: (c / n if n else 0.0) for op, c in row.items()} for label, row in counts.items()}


def ranked_op_frequencies(op_sets: Mapping[str, Sequence[str]], trials: Iterable[Trial], ranks: Mapping[int, int],
                          rank_limit: int) -> tuple[dict[str, dict[str, float]], int]:
    """:func:`op_frequencies` over the distinct architectures of ``trials`` whose non-domination rank
    (``ranks[trial id]``, front = 1; trials without a rank are left out) is below ``rank_limit``, and how many
    architectures that is. An architecture evaluated more than once counts once."""
    archs: dict[str, Architecture] = {}
    for t in sorted(trials, key=lambda t: t.id):
        if ranks.get(t.id, math.inf) < rank_limit:
            archs.setdefault(t.arch.key(), t.arch)
    return op_frequencies(op_sets, archs.values()), len(archs)


def prune_op_sets(op_sets: Mapping[str, Sequence[str]], frequencies: Mapping[str, Mapping[str, float]],
                  p_th: float) -> tuple[dict[str, tuple[str, ...]], dict[str, list[str]]]:
    """``(kept, pruned)``: each position keeps the operations with frequency ``> p_th`` (an op missing from
    ``frequencies`` counts as 0); when that would leave none, the operations of highest frequency stay (all of
    them on a tie). ``pruned`` lists the removed operations of every position (empty lists included)."""
    if isinstance(p_th, bool) or not isinstance(p_th, (int, float)) or not 0 <= p_th < 1:
        raise InvalidValue("P_th", p_th, "a probability in [0, 1)")
    kept: dict[str, tuple[str, ...]] = {}
    pruned: dict[str, list[str]] = {}
    for label, ops in op_sets.items():
        p = {op: float(frequencies.get(label, {}).get(op, 0.0)) for op in ops}
        stay = tuple(op for op in ops if p[op] > p_th)
        if not stay:  # never empty a position: keep its most frequent operation(s)
            top = max(p.values())
            stay = tuple(op for op in ops if p[op] == top)
        kept[label] = stay
        pruned[label] = [op for op in ops if op not in stay]
    return kept, pruned
