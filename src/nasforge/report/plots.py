"""Matplotlib (Agg) figures of a search, each written to a PNG file.

* :func:`plot_best_so_far` — every finished trial's metric in evaluation order and the best-so-far curve (the
  anytime-performance plot of NAS benchmarks, e.g. NAS-Bench-201 Fig. 7).
* :func:`plot_cost_tradeoff` — metric against a cost (FLOPs, parameters, latency) with the Pareto front of
  non-dominated trials (PAD-NAS Fig. 1 / MENAS Fig. 4 style accuracy-vs-cost plots).
* :func:`plot_generations` — the population over generations: each trial's metric by its generation, with the
  per-generation median and best.
* :func:`plot_op_heatmap` — the probability of every operation at every layer of a choice space (PAD-NAS Fig. 3:
  layers on the x-axis, operations on the y-axis), e.g. from :func:`nasforge.supernet.opsets.op_frequencies`.

Inputs are plain :class:`~nasforge.trial.Trial` lists (the heatmap: a mapping), so the plots work on any store.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..pareto import pareto_indices
from ..trial import Trial, TrialState

__all__ = ["plot_best_so_far", "plot_cost_tradeoff", "plot_generations", "plot_op_heatmap", "pareto_indices",
           "metric_series", "best_so_far", "plot_alpha_history"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def metric_series(trials: Sequence[Trial], metric: str) -> tuple[list[Trial], np.ndarray]:
    """Complete trials with a finite ``metric``, in finishing order, and their values."""
    done = [t for t in trials if t.state is TrialState.COMPLETE and t.metric(metric) is not None]
    done = [t for t in done if math.isfinite(float(t.metric(metric)))]
    done.sort(key=lambda t: (t.finished_at if t.finished_at is not None else math.inf, t.id))
    return done, np.array([float(t.metric(metric)) for t in done], dtype=float)


def best_so_far(values: np.ndarray, mode: str = "max") -> np.ndarray:
    """Running best of ``values`` (maximum for ``mode="max"``, minimum for ``"min"``)."""
    values = np.asarray(values, dtype=float)
    return np.maximum.accumulate(values) if mode == "max" else np.minimum.accumulate(values)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_best_so_far(trials: Sequence[Trial], metric: str, mode: str, path: str | Path) -> Path:
    """Scatter of each finished trial's ``metric`` and the best-so-far step curve, against trial count."""
    plt = _pyplot()
    done, values = metric_series(trials, metric)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if len(values):
        x = np.arange(1, len(values) + 1)
        best = best_so_far(values, mode)
        ax.scatter(x, values, s=10, alpha=0.45, color="tab:blue", label="trial")
        ax.step(x, best, where="post", color="tab:red", linewidth=2, label="best so far")
        ax.legend(loc="lower right" if mode == "max" else "upper right")
    else:
        ax.text(0.5, 0.5, "no complete trials", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trials finished")
    ax.set_ylabel(metric)
    ax.set_title(f"best {metric} so far ({mode})")
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_cost_tradeoff(trials: Sequence[Trial], metric: str, mode: str, cost: str, path: str | Path) -> Path:
    """``metric`` against ``cost`` for every complete trial, with the Pareto front highlighted."""
    plt = _pyplot()
    done, values = metric_series(trials, metric)
    keep = [i for i, t in enumerate(done) if t.metric(cost) is not None]
    values = values[keep]
    costs = np.array([float(done[i].metric(cost)) for i in keep], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if len(values):
        ax.scatter(costs, values, s=12, alpha=0.5, color="tab:blue", label="trial")
        front = pareto_indices(values, costs, mode)
        ax.plot(costs[front], values[front], "o-", color="tab:red", markersize=4, label="Pareto front")
        ax.legend(loc="lower right" if mode == "max" else "upper right")
        if costs.min() > 0 and costs.max() / costs.min() > 50:
            ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, f"no trials with {cost!r}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(cost)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {cost}")
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_generations(trials: Sequence[Trial], metric: str, mode: str, path: str | Path) -> Path:
    """Each complete trial's ``metric`` by generation (evenly spread within a column), median and best."""
    plt = _pyplot()
    done, values = metric_series(trials, metric)
    gens = np.array([t.generation for t in done], dtype=int)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if len(values):
        for g in np.unique(gens):
            idx = np.flatnonzero(gens == g)
            offsets = np.linspace(-0.25, 0.25, len(idx)) if len(idx) > 1 else np.zeros(1)
            ax.scatter(g + offsets, values[idx], s=10, alpha=0.5, color="tab:blue")
        uniq = np.unique(gens)
        med = [np.median(values[gens == g]) for g in uniq]
        best = [(np.max if mode == "max" else np.min)(values[gens == g]) for g in uniq]
        ax.plot(uniq, med, "-", color="tab:green", label="median")
        ax.plot(uniq, best, "-", color="tab:red", label="best")
        ax.legend(loc="lower right" if mode == "max" else "upper right")
    else:
        ax.text(0.5, 0.5, "no complete trials", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.set_title("population over generations")
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_op_heatmap(frequencies: Mapping[str, Mapping[str, float]], path: str | Path, *, title: str | None = None,
                    pruned: Mapping[str, Sequence[str]] | None = None, ops: Sequence[str] | None = None) -> Path:
    """Heatmap of ``frequencies`` (``{layer: {op: probability}}``): one column per layer, one row per operation
    (``ops``, then any other in order of first appearance), each cell annotated with its probability; cells of
    operations that are not in a layer's set are left grey, those of ``pruned`` (``{layer: [op, ...]}``) are
    marked ``x``."""
    plt = _pyplot()
    layers = list(frequencies)
    ops = list(dict.fromkeys([*(ops or ()), *(op for row in frequencies.values() for op in row)]))
    grid = np.full((len(ops), len(layers)), np.nan)
    for j, layer in enumerate(layers):
        for op, p in frequencies[layer].items():
            grid[ops.index(op), j] = float(p)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(layers) + 2.0), max(2.5, 0.4 * len(ops) + 1.5)))
    cmap = plt.get_cmap("Blues").with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, j in zip(*np.nonzero(~np.isnan(grid))):
        v = grid[i, j]
        mark = "x" if ops[i] in (pruned or {}).get(layers[j], ()) else f"{v:.2f}"
        ax.text(j, i, mark, ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(layers)), [str(x).split(".")[0] for x in layers], rotation=90, fontsize=8)
    ax.set_yticks(range(len(ops)), ops, fontsize=8)
    ax.set_xlabel("layer")
    ax.set_ylabel("operation")
    ax.set_title(title or "operation probability per layer")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    return _save(fig, Path(path))


def plot_alpha_history(history: Sequence[Mapping[str, Any]], ops: Sequence[str], edges: Sequence[str],
                       path: str | Path, *, title: str | None = None) -> Path:
    """Softmaxed architecture parameters over the search epochs (DARTS / LNAS): one panel per edge, one line per
    operation (``history[e]["probabilities"][edge][op]``); a path masked by LNAS variant 2 drops to 0."""
    plt = _pyplot()
    probs = np.array([row["probabilities"] for row in history], dtype=float)  # epochs x edges x ops
    epochs = [int(row["epoch"]) + 1 for row in history]
    cols = min(3, len(edges))
    rows = -(-len(edges) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False, sharex=True, sharey=True)
    for e, name in enumerate(edges):
        ax = axes[e // cols][e % cols]
        for k, op in enumerate(ops):
            ax.plot(epochs, probs[:, e, k], marker="o" if len(epochs) < 30 else None, markersize=3, label=op)
        ax.set_title(str(name), fontsize=9)
        ax.set_ylim(0.0, 1.0)
        ax.set_yticks([0.0, 0.5, 1.0])
        ax.xaxis.get_major_locator().set_params(integer=True, nbins=5)
        if e // cols == rows - 1 or e + cols >= len(edges):
            ax.set_xlabel("epoch", fontsize=8)
    for e in range(len(edges), rows * cols):
        axes[e // cols][e % cols].axis("off")
    axes[0][0].set_ylabel("softmax(alpha)")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    height = 2.6 * rows  # inches; margins below in inches (tight_layout takes seconds at 28 panels)
    fig.suptitle(title or "architecture weights per edge", y=1.0 - 0.12 / height)
    fig.subplots_adjust(hspace=0.45, wspace=0.12, top=1.0 - 0.75 / height, bottom=0.55 / height, left=0.07,
                        right=0.98)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80 if len(edges) > 12 else 110)
    plt.close(fig)
    return path
