"""Reports of a search: PNG plots (matplotlib, Agg) and a self-contained ``report.html``.

>>> from nasforge.report import write_report
>>> write_report("runs/nb201", store, metric="accuracy", mode="max")   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..io import atomic_write_text
from ..trial import TrialState
from .html import render_html
from .plots import (
    best_so_far,
    metric_series,
    pareto_indices,
    plot_best_so_far,
    plot_cost_tradeoff,
    plot_generations,
    plot_alpha_history,
    plot_op_heatmap,
)

__all__ = ["write_report", "render_html", "plot_best_so_far", "plot_cost_tradeoff", "plot_generations",
           "plot_op_heatmap", "plot_alpha_history", "pareto_indices", "metric_series", "best_so_far", "pick_cost"]

#: cost preferred for the trade-off plot when the run has no cost objective
COST_PREFERENCE = ("latency_ms", "flops", "params")


def pick_cost(trials: list, preferred: str | None = None) -> str | None:
    """The cost to plot: ``preferred`` when the trials have it, else the first of :data:`COST_PREFERENCE`."""
    have = {c for t in trials if t.result is not None for c in (*t.result.costs, *t.result.metrics)}
    for name in ((preferred,) if preferred else ()) + COST_PREFERENCE:
        if name in have:
            return name
    return None


def write_report(run_dir: str | Path, store: Any, *, metric: str = "accuracy", mode: str = "max",
                 pareto: Mapping[str, Any] | None = None, title: str = "nasforge search") -> dict[str, Path]:
    """Write ``best_so_far.png``, ``cost.png``, ``generations.png`` and ``report.html`` into ``run_dir``.

    ``store`` is any :class:`~nasforge.store.TrialStore`; ``pareto`` the study's Pareto summary (its ``cost``
    is the one plotted). Returns the written paths by name.
    """
    run_dir = Path(run_dir)
    trials = store.trials()
    paths = {"plot_best": plot_best_so_far(trials, metric, mode, run_dir / "best_so_far.png")}
    cost = pick_cost(trials, (pareto or {}).get("cost"))
    if cost is not None:
        paths["plot_cost"] = plot_cost_tradeoff(trials, metric, mode, cost, run_dir / "cost.png")
    if len({t.generation for t in trials}) > 1:
        paths["plot_generations"] = plot_generations(trials, metric, mode, run_dir / "generations.png")
    done, values = metric_series(trials, metric)
    best = (values.max() if mode == "max" else values.min()) if len(values) else None
    summary = {"metric": metric, "mode": mode, "trials": len(trials), "complete": len(done),
               "failed": sum(t.state is TrialState.FAILED for t in trials), f"best {metric}": best}
    page = render_html(trials, metric=metric, mode=mode, images=[p for k, p in paths.items()],
                       summary=summary, pareto=pareto, title=title)
    paths["report"] = run_dir / "report.html"
    atomic_write_text(paths["report"], page)
    return paths
