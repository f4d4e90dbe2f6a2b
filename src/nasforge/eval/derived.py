"""Judging the architecture a differentiable search derived (DARTS, LNAS): its NAS-Bench-201 table accuracy
(:func:`nb201_accuracy`) and its network trained from scratch, densely or as a lottery ticket
(:func:`retrain_derived`, over :func:`nasforge.prune.ticket.train_ticket`), exported with its masks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..cost.sparse import sparse_costs
from ..prune.ticket import export_ticket, train_ticket
from ..supernet.train import derived_seed
from ..train import TrainConfig
from .tabular import TabularEvaluator
from .train_eval import init_weights

__all__ = ["nb201_accuracy", "retrain_derived"]


def nb201_accuracy(arch: Any, dataset: str = "cifar10") -> dict[str, Any]:
    """The NAS-Bench-201 table's 200-epoch test accuracy of a derived cell (and its 12-epoch val accuracy)."""
    res = TabularEvaluator.nb201(dataset, "hp200-test", costs=False).evaluate(arch)
    hp12 = TabularEvaluator.nb201(dataset, "hp12-valid", costs=False).evaluate(arch).metrics["accuracy"]
    return {"dataset": dataset, "test_accuracy": res.metrics["test_accuracy"], "hp12_valid_accuracy": hp12,
            "arch_index": res.info["arch_index"]}


def retrain_derived(space: Any, arch: Any, splits: Any, train_config: TrainConfig, folder: str | Path, *,
                    seed: int, device: torch.device, final_epochs: float, sparsity: float | None = None,
                    rounds: int = 0, k: float = 0.0, space_kwargs: Mapping[str, Any] | None = None,
                    progress: bool = False, onnx: bool | None = None) -> dict[str, Any]:
    """Train ``space.build(arch)`` from a seeded initialisation on the training split, scored every epoch on the
    test split (else val); as a lottery ticket (``sparsity``, ``rounds`` of ``k`` epochs) when ``sparsity`` is
    given. Exports the result (masks applied, ``masks.pt``) to ``folder/model`` and returns ``{"retrain":
    {timeline, rounds, final, weight_sparsity, scored_split}, "costs": {params, nonzero_params, weight_sparsity,
    nonzero_flops}, "model": folder}``."""
    folder = Path(folder)
    net = init_weights(space.build(arch, splits.input_shape, splits.num_classes),
                       torch.Generator().manual_seed(derived_seed(seed, 24)))
    scored = "test" if "test" in splits.available() else "val"
    val = splits.loader(scored, train_config.batch_size, device=device, train=False)
    ticket = train_ticket(net, lambda phase: splits.loader("train", train_config.batch_size, device=device,
                                                           seed=derived_seed(seed, 25, phase)),
                          config=train_config, folder=folder / "retrain", final_epochs=final_epochs,
                          sparsity=sparsity, rounds=rounds, k=k, device=device, val_batches=val, progress=progress)
    costs = sparse_costs(net.cpu(), splits.input_shape)
    export_ticket(net, arch, folder / "model", input_shape=splits.input_shape, onnx=onnx,
                  space_kwargs=dict(space_kwargs or {}), meta={"costs": costs})
    return {"retrain": {"scored_split": scored, **ticket}, "costs": costs, "model": "model"}
