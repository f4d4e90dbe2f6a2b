"""Rank consistency of a supernet: how well its one-shot scores order architectures, against ground truth.

:func:`rank_consistency` samples ``n`` distinct architectures of the truth table that lie in the supernet's space
(seeded, uniform), scores each with
the :class:`~nasforge.eval.oneshot.OneShotEvaluator` and compares with the truth: for ``nb201`` the packaged
NAS-Bench-201 table (column ``metric``, default ``cifar10_test_hp200``), otherwise a CSV of architectures with
trained accuracies the user gives (``truth``: columns ``arch`` and ``metric``). It reports Kendall's tau and
Spearman's rho (:mod:`scipy.stats`) of one-shot score vs truth, and the same tau for the parameter count and the
FLOPs, the free baselines: a supernet whose tau does not beat ``params_tau`` ranks no better than counting
parameters (on NB201 CIFAR-10, parameter count alone reaches about 0.63).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ..errors import InvalidValue
from ..io import write_json
from ..spaces.nb201 import TABLE_PATH
from .oneshot import OneShotEvaluator
from .tabular import TabularEvaluator

__all__ = ["rank_consistency", "sample_truth", "truth_evaluator", "RANK_FILE", "RANK_PLOT"]

RANK_FILE, RANK_PLOT = "rank.json", "rank.png"
DEFAULT_METRIC = "cifar10_test_hp200"


def sample_truth(space: Any, table: TabularEvaluator, n: int, seed: int, among: Any = None) -> list[Any]:
    """``n`` distinct architectures drawn uniformly (seeded) from those of the truth table that lie in ``space``
    (with its current op sets); for the full NB201 table that is uniform over the space. ``among``: only
    architectures of this collection (a supernet's architecture pool, DCNAS's A)."""
    keys = None if among is None else {a.key() for a in among}
    pool = [a for a in table.architectures() if space.contains(a) and (keys is None or a.key() in keys)]
    if len(pool) < n:
        raise InvalidValue("--n", n, f"at most {len(pool)} (the architectures of the truth table in space "
                                     f"{space.name!r})")
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def truth_evaluator(space: Any, metric: str, truth: str | Path | None) -> TabularEvaluator:
    """The ground-truth table: the packaged NB201 table for ``nb201`` (``metric`` a column of it), else the
    user's CSV ``truth`` (columns ``arch`` with the space's strings, and ``metric``)."""
    if truth is None:
        if space.name != "nb201":
            raise InvalidValue("--truth", None, f"a CSV of architectures and trained accuracies (space {space.name!r} "
                                                "has no packaged table)")
        return TabularEvaluator(TABLE_PATH, metric, space="nb201", costs=False)  # any C, N, op sets: same cells
    return TabularEvaluator(truth, metric, arch_column="arch", space=space, costs=False)


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.kendalltau(a, b).statistic)


def rank_consistency(evaluator: OneShotEvaluator, *, n: int = 200, seed: int = 0, metric: str = DEFAULT_METRIC,
                     truth: str | Path | None = None, out_dir: str | Path | None = None,
                     progress: bool = False, pool: Any = None) -> dict[str, Any]:
    """Kendall tau / Spearman rho of one-shot scores vs ``truth`` over ``n`` sampled architectures (module
    docstring), with ``params_tau`` and ``flops_tau``; with ``out_dir``, also ``rank.json`` (every architecture's
    scores) and the scatter plot ``rank.png``. ``pool``: sample only among these architectures; by default the
    supernet run's own pool when it has one (DCNAS ranks and searches inside its pool A), else the whole space."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise InvalidValue("--n", n, "an int >= 3")
    table = truth_evaluator(evaluator.space, metric, truth)
    if pool is None:
        pool = getattr(getattr(evaluator, "run", None), "pool", None)
    archs = sample_truth(evaluator.space, table, n, seed, among=pool)
    start = time.perf_counter()
    rows = []
    iterator = archs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(archs, desc="rank", unit="arch")
    for arch in iterator:
        r = evaluator.evaluate(arch)
        rows.append({"arch": evaluator.space.format(arch), "one_shot": r.metrics["accuracy"],
                     "truth": table.evaluate(arch).metrics["accuracy"], **r.costs})
    seconds = time.perf_counter() - start
    col = {k: np.array([row[k] for row in rows], dtype=float) for k in ("one_shot", "truth", "params", "flops")}
    summary = {"n": n, "kendall_tau": _tau(col["one_shot"], col["truth"]),
               "spearman_rho": float(stats.spearmanr(col["one_shot"], col["truth"]).statistic),
               "params_tau": _tau(col["params"], col["truth"]), "flops_tau": _tau(col["flops"], col["truth"]),
               "truth_metric": metric, "seconds": round(seconds, 2), "seed": seed,
               "pool": None if pool is None else len(pool),
               "archs_per_hour": round(3600 * n / seconds, 1) if seconds > 0 else None,
               "calib_images": evaluator.calib_images, "score_images": evaluator.score_images,
               "one_shot_mean": float(col["one_shot"].mean()), "one_shot_std": float(col["one_shot"].std())}
    if out_dir is not None:
        out = Path(out_dir)
        write_json(out / RANK_FILE, {**summary, "architectures": rows})
        _scatter(col["one_shot"], col["truth"], summary, out / RANK_PLOT)
    return summary


def _scatter(one_shot: np.ndarray, truth: np.ndarray, summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.scatter(one_shot, truth, s=10, alpha=0.7)
    ax.set_xlabel("one-shot accuracy (%)")
    ax.set_ylabel(summary["truth_metric"])
    ax.set_title(f"n={summary['n']}  tau={summary['kendall_tau']:.3f}  params tau={summary['params_tau']:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
