"""LNAS: Lottery Ticket Neural Architecture Search (Charles, Chi & Kornberg, lnas.txt) as one pipeline over the
shared DARTS parts (:mod:`nasforge.supernet.mixed`, :mod:`nasforge.supernet.differentiable`), the pruning
routines (:mod:`nasforge.prune.magnitude`, :mod:`nasforge.prune.ticket`) and the derived-network judges
(:mod:`nasforge.eval.derived`).

``variant`` (lnas.txt Sec. 3):

* ``1`` (Algorithm 1): a DARTS search, then the derived network is retrained with iterative magnitude pruning:
  ``n_weights`` rounds of {``k`` epochs of SGD; prune ``1 - (1-p)^(1/n)`` of the surviving weights (smallest
  magnitude, global); rewind the survivors to ``theta_0``}, then the ticket trains for the rest of
  ``retrain_epochs``. The paper's experiment (Sec. 5.1): one round at epoch 10 of 20 (``n_weights`` 1, ``k`` 10,
  ``retrain_epochs`` 20).
* ``2`` (Algorithm 2): the DARTS search prunes architecture parameters: after the epochs of ``n_alpha`` rounds
  spread evenly over the search (default: every epoch, "after each epoch of our neural architecture search"), the
  candidate paths of smallest softmax weight are masked (path-level masks, Eq. 7) until a fraction ``p`` of them is
  masked (an edge keeps at least one operation; on ``darts`` a node needs two edges with a non-``none`` one
  left, or the derivation stops with an error naming the node); then the derived network is retrained densely
  for ``retrain_epochs``.
* ``generalized`` (Algorithm 3): both.

``sparsity`` ``p``: one of the paper's levels 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 0.95 (Table 1; the
text's "0.675" is read as Table 1's 0.625). The per-round rule: see :mod:`nasforge.prune.magnitude` (each round keeps
``(1-p)^(1/n)`` of the survivors, so ``n`` rounds reach ``p``; the literal "prune p^(1/n) per round" would
overshoot it).

Run folder (``nasforge supernet train configs/lnas-nb201-cpu.yaml --out D``): as DARTS' (:mod:`nasforge.methods.
darts`): ``config.yaml``, ``search.pt``, ``alpha_history.json`` / ``.png`` (masked paths drop to 0), ``retrain/``
(``theta0.pt``, epoch checkpoints, ``masks_round<r>.pt``, ``ticket.json``), ``model/`` (the trained network with
its masks baked in: ``model.pt`` plain state dict, ONNX when available, ``masks.pt``; ``nasforge cost D/model``
prints its non-zero parameters and FLOPs) and ``result.json`` (genotype, NB201 table accuracy, alpha-pruning
schedule, accuracy timeline of the retraining, sparse costs, search time). ``--resume`` continues a killed run from
the last epoch boundary of the phase it was in.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field, model_validator

from ..config import SpaceConfig
from ..data import load_data
from ..device import resolve_device, torch_threads
from ..errors import InvalidValue
from ..eval.derived import nb201_accuracy, retrain_derived
from ..io import write_json
from ..prune.magnitude import alpha_prune_counts, prune_alphas
from ..registry import get_space
from ..report import plot_alpha_history
from ..schema import RunName, read_yaml, validated
from ..supernet.differentiable import ALPHA_HISTORY, DartsSearchConfig, run_differentiable_search
from ..train import TrainConfig
from .base import Method, RunConfig, open_run_folder, register_method

__all__ = ["LnasConfig", "SPARSITIES", "load_lnas_config", "lnas_config_from_dict", "run_lnas", "lnas_summary",
           "alpha_round_epochs"]

RESULT = "result.json"
#: the sparsity levels of lnas.txt Sec. 5.1 / Table 1
SPARSITIES = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 0.95)


class LnasConfig(RunConfig):
    """One LNAS run (module docstring): ``variant``, ``sparsity``, ``n_alpha`` / ``n_weights`` (rounds of
    architecture / weight pruning), ``k`` (epochs per weight-pruning round), ``retrain_epochs`` (all training of the
    derived network, pruning rounds included), ``search`` (DARTS hyper-parameters), ``retrain`` (overrides of the
    ``lnas`` recipe)."""

    name: RunName = "lnas"
    method: Literal["lnas"] = "lnas"
    space: SpaceConfig = Field(default_factory=lambda: SpaceConfig(name="nb201"))
    data: dict[str, Any] = Field(default_factory=lambda: {"source": "embedded"})
    variant: Literal[1, 2, "generalized"] = 2
    sparsity: float = 0.5
    n_alpha: int | None = Field(None, ge=1)
    n_weights: int = Field(1, ge=1)
    k: float = Field(10.0, gt=0)
    search: DartsSearchConfig = Field(default_factory=DartsSearchConfig)
    retrain_epochs: float = Field(20.0, gt=0)
    retrain: dict[str, Any] = Field(default_factory=dict)
    nb201_dataset: Literal["cifar10", "cifar100"] = "cifar10"
    seed: int = Field(0, ge=0)
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    progress: bool = True
    out: str | None = None

    @model_validator(mode="after")
    def _cross(self) -> "LnasConfig":
        if self.space.name not in ("nb201", "darts"):
            raise InvalidValue("space", self.space.name, "nb201 or darts (the spaces with a mixed-op supernet)")
        self.built_space()
        if self.sparsity not in SPARSITIES:
            raise InvalidValue("sparsity", self.sparsity, ", ".join(map(str, SPARSITIES)) + " (lnas.txt Table 1)")
        if self.n_alpha is not None and self.n_alpha > self.search.epochs:
            raise InvalidValue("n_alpha", self.n_alpha, f"at most search.epochs ({self.search.epochs}): one round "
                                                        "per epoch at most")
        if self.prunes_weights and self.final_epochs <= 0:
            raise InvalidValue("retrain_epochs", self.retrain_epochs, f"more than n_weights * k = "
                               f"{self.n_weights * self.k} (the pruning rounds are part of the retraining)")
        TrainConfig.from_recipe("lnas", **self.retrain)
        return self

    @property
    def prunes_weights(self) -> bool:
        return self.variant in (1, "generalized")

    @property
    def prunes_alpha(self) -> bool:
        return self.variant in (2, "generalized")

    @property
    def final_epochs(self) -> float:
        """Epochs of the last (ticket) training phase: ``retrain_epochs`` minus the pruning rounds' epochs."""
        return self.retrain_epochs - (self.n_weights * self.k if self.prunes_weights else 0.0)


def lnas_config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> LnasConfig:
    return validated(LnasConfig, raw, overrides, {"space": "name"})


def load_lnas_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> LnasConfig:
    """Read ``configs/lnas-*.yaml`` and apply ``--set`` overrides."""
    return lnas_config_from_dict(read_yaml(path), overrides)


def alpha_round_epochs(epochs: int, rounds: int) -> list[int]:
    """The search epochs (0-based) after which the ``rounds`` alpha-pruning rounds happen, spread evenly (the last
    after the last epoch): ``ceil(r * epochs / rounds) - 1``."""
    return [math.ceil(r * epochs / rounds) - 1 for r in range(1, rounds + 1)]


def _alpha_pruner(config: LnasConfig) -> Any:
    """The ``after_epoch`` hook of variant 2: mask paths up to the round's cumulative count."""
    rounds = config.n_alpha or config.search.epochs
    at = alpha_round_epochs(config.search.epochs, rounds)

    def after_epoch(epoch: int, net: Any) -> dict[str, Any]:
        if epoch not in at:
            return {}
        mask = net.alpha_mask
        counts = alpha_prune_counts(mask.numel(), mask.shape[0], config.sparsity, rounds)
        target = counts[at.index(epoch)]
        new = prune_alphas(net.probabilities(), mask, target - int((~mask).sum()))
        mask.copy_(new)
        return {"alpha_round": at.index(epoch) + 1, "alpha_masked": int((~new).sum()),
                "alpha_sparsity": round(float((~new).sum()) / new.numel(), 6)}

    return after_epoch


def run_lnas(config: LnasConfig, out: str | os.PathLike[str], *, resume: bool = False) -> dict[str, Any]:
    """Run LNAS into ``out`` (module docstring); returns ``result.json``'s content."""
    run_dir, lock = open_run_folder(config, out, resume)
    try:
        splits = load_data(config.data)
        space = get_space(config.space.name, **config.space.kwargs)
        device = resolve_device(config.device)
        with torch_threads(config.threads):
            t0 = time.perf_counter()
            hook = _alpha_pruner(config) if config.prunes_alpha else None
            net, outcome = run_differentiable_search(space, splits, config.search, seed=config.seed, device=device,
                                                     folder=run_dir, after_epoch=hook,
                                                     run_config={"method": "lnas", "variant": config.variant,
                                                                 "sparsity": config.sparsity,
                                                                 "n_alpha": config.n_alpha},
                                                     progress=config.progress)
            plot_alpha_history(outcome.history, net.ops, net.edge_names, run_dir / "alpha_history.png",
                               title=f"LNAS variant {config.variant}, p = {config.sparsity}: softmax(alpha)")
            arch = net.derive()
            result: dict[str, Any] = {
                "method": "lnas", "variant": config.variant, "sparsity": config.sparsity,
                "order": config.search.order, "arch": space.format(arch),
                "alpha_sparsity": round(float((~net.alpha_mask).sum()) / net.alpha_mask.numel(), 6),
                "search_seconds": round(time.perf_counter() - t0, 3), "alpha_history": ALPHA_HISTORY,
                "history": outcome.history,
                "nb201": nb201_accuracy(arch, config.nb201_dataset) if space.name == "nb201" else None}
            t1 = time.perf_counter()
            result.update(retrain_derived(
                space, arch, splits, TrainConfig.from_recipe("lnas", **config.retrain), run_dir, seed=config.seed,
                device=device, final_epochs=config.final_epochs,
                sparsity=config.sparsity if config.prunes_weights else None,
                rounds=config.n_weights if config.prunes_weights else 0, k=config.k,
                space_kwargs=config.space.kwargs, progress=config.progress))
            result["retrain_seconds"] = round(time.perf_counter() - t1, 3)
            write_json(run_dir / RESULT, result)
            return result
    finally:
        lock.close()


def lnas_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The row ``nasforge supernet train`` prints."""
    timeline = (result.get("retrain") or {}).get("timeline") or [None]
    costs = result.get("costs") or {}
    return {"variant": result["variant"], "sparsity": result["sparsity"], "arch": result["arch"],
            "nb201_test_accuracy": (result.get("nb201") or {}).get("test_accuracy"),
            "retrain_accuracy": timeline[-1], "weight_sparsity": costs.get("weight_sparsity"),
            "nonzero_flops": costs.get("nonzero_flops"), "search_seconds": result["search_seconds"]}


register_method(Method(name="lnas", kind="supernet",
                       paper="Charles, Chi & Kornberg, LNAS: Lottery Ticket Neural Architecture Search",
                       config_model=LnasConfig, load_config=load_lnas_config, run=run_lnas, summary=lnas_summary))
