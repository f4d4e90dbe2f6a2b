"""DARTS (Liu et al. 2019) as a pipeline, the baseline of LNAS (lnas.txt Sec. 2, Eqs. 4-6 and Sec. 5.1): one
differentiable search of a mixed-operation supernet (:mod:`nasforge.supernet.mixed`,
:mod:`nasforge.supernet.differentiable`), the derived architecture, its NAS-Bench-201 accuracy (space ``nb201``)
and optionally the derived network retrained from scratch (``retrain_epochs`` > 0; lnas.txt trains it 20 epochs
with the ``lnas`` recipe: SGD 0.9, weight decay 3e-4, lr 0.025 cosine, batch 64).

``nasforge supernet train configs/darts-nb201-cpu.yaml --out D`` writes into ``D``: ``config.yaml``;
``search.pt`` (search checkpoint at every epoch end; ``--resume`` continues from it); ``alpha_history.json`` and
``alpha_history.png`` (softmaxed alphas per edge over the epochs); ``retrain/`` (when retraining: epoch
checkpoints, ``ticket.json``); ``model/`` (the retrained network: plain PyTorch state dict + ONNX when available)
and ``result.json`` (``arch`` (the genotype), ``nb201`` (the NB201 table's accuracies of the derived cell),
``retrain`` (accuracy timeline), ``costs``, ``search_seconds``, ``history``).

Where the paper is silent (chosen here): the derived NB201 cell is looked up at the table's 200-epoch CIFAR-10
test accuracy (``nb201_dataset``: cifar10 | cifar100); the retrained network is scored on the data's test split
(else its val split).
"""
from __future__ import annotations

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
from ..registry import get_space
from ..report import plot_alpha_history
from ..schema import RunName, read_yaml, validated
from ..supernet.differentiable import ALPHA_HISTORY, DartsSearchConfig, run_differentiable_search
from ..train import TrainConfig
from .base import Method, RunConfig, open_run_folder, register_method

__all__ = ["DartsConfig", "load_darts_config", "darts_config_from_dict", "run_darts", "darts_summary"]

RESULT = "result.json"


class DartsConfig(RunConfig):
    """One DARTS run (module docstring): ``search`` the DARTS hyper-parameters, ``retrain_epochs`` / ``retrain``
    (train overrides on the ``lnas`` recipe) for the derived network."""

    name: RunName = "darts"
    method: Literal["darts"] = "darts"
    space: SpaceConfig = Field(default_factory=lambda: SpaceConfig(name="nb201"))
    data: dict[str, Any] = Field(default_factory=lambda: {"source": "embedded"})
    search: DartsSearchConfig = Field(default_factory=DartsSearchConfig)
    retrain_epochs: float = Field(20.0, ge=0)
    retrain: dict[str, Any] = Field(default_factory=dict)
    nb201_dataset: Literal["cifar10", "cifar100"] = "cifar10"
    seed: int = Field(0, ge=0)
    device: str = "auto"
    threads: int | None = Field(None, ge=1)
    progress: bool = True
    out: str | None = None

    @model_validator(mode="after")
    def _cross(self) -> "DartsConfig":
        if self.space.name not in ("nb201", "darts"):
            raise InvalidValue("space", self.space.name, "nb201 or darts (the spaces with a mixed-op supernet)")
        self.built_space()
        TrainConfig.from_recipe("lnas", **self.retrain)
        return self


def darts_config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> DartsConfig:
    return validated(DartsConfig, raw, overrides, {"space": "name"})


def load_darts_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> DartsConfig:
    """Read ``configs/darts-*.yaml`` and apply ``--set`` overrides."""
    return darts_config_from_dict(read_yaml(path), overrides)


def run_darts(config: DartsConfig, out: str | os.PathLike[str], *, resume: bool = False) -> dict[str, Any]:
    """Run DARTS into ``out`` (module docstring); returns ``result.json``'s content."""
    run_dir, lock = open_run_folder(config, out, resume)
    try:
        splits = load_data(config.data)
        space = get_space(config.space.name, **config.space.kwargs)
        device = resolve_device(config.device)
        with torch_threads(config.threads):
            t0 = time.perf_counter()
            net, outcome = run_differentiable_search(space, splits, config.search, seed=config.seed, device=device,
                                                     folder=run_dir, run_config={"method": "darts"},
                                                     progress=config.progress)
            plot_alpha_history(outcome.history, net.ops, net.edge_names, run_dir / "alpha_history.png",
                               title=f"DARTS (order {config.search.order}) softmax(alpha)")
            arch = net.derive()
            result: dict[str, Any] = {"method": "darts", "order": config.search.order, "arch": space.format(arch),
                                      "search_seconds": round(time.perf_counter() - t0, 3),
                                      "alpha_history": ALPHA_HISTORY, "history": outcome.history}
            result["nb201"] = nb201_accuracy(arch, config.nb201_dataset) if space.name == "nb201" else None
            if config.retrain_epochs > 0:
                result.update(retrain_derived(space, arch, splits, TrainConfig.from_recipe("lnas", **config.retrain),
                                              run_dir, seed=config.seed, device=device,
                                              final_epochs=config.retrain_epochs, space_kwargs=config.space.kwargs,
                                              progress=config.progress))
            write_json(run_dir / RESULT, result)
            return result
    finally:
        lock.close()


def darts_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The row ``nasforge supernet train`` prints."""
    timeline = (result.get("retrain") or {}).get("timeline") or [None]
    return {"arch": result["arch"], "nb201_test_accuracy": (result.get("nb201") or {}).get("test_accuracy"),
            "retrain_accuracy": timeline[-1], "search_seconds": result["search_seconds"]}


register_method(Method(name="darts", kind="supernet", paper="Liu et al., DARTS: Differentiable Architecture Search",
                       config_model=DartsConfig, load_config=load_darts_config, run=run_darts, summary=darts_summary))
