"""Train a network as a lottery ticket (Frankle & Carbin 2019; LNAS variant 1, lnas.txt Algorithm 1, second loop),
checkpointed so that a killed run resumes.

:func:`train_ticket` saves the initial weights ``theta_0`` (``theta0.pt``), then for each of ``rounds`` rounds
trains ``k`` epochs with the shared train loop (:func:`nasforge.train.train`), prunes the smallest surviving
weights globally (:func:`~nasforge.prune.magnitude.magnitude_prune`, ``1 - (1-p)^(1/n)`` of them) and rewinds the
survivors to ``theta_0``; then it trains the ticket for ``final_epochs``. With ``sparsity=None`` (or ``rounds=0``)
it is a plain training run of ``final_epochs`` (LNAS variant 2 and the DARTS baseline retrain the derived
network that way). Every training phase writes its own epoch checkpoint (``round<r>.ckpt``, ``final.ckpt``) and
every finished round its masks (``masks_round<r>.pt``) and a line of ``ticket.json``, so a resumed call skips
what is done, re-installs the last masks and continues the phase it was in at its last epoch boundary.

Each phase is its own run of the train loop, so its learning-rate schedule (cosine for LNAS) starts afresh after
every rewind, as a rewound ticket is trained from its initialisation again. The per-epoch held-out accuracy of
every phase, in order, is the run's *timeline* (lnas.txt Table 1 reports the
best accuracy up to epochs 10 and 20 of that timeline).
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..errors import InvalidValue
from ..export import export_model
from ..io import atomic_write_text, load_checkpoint, save_checkpoint
from ..train import TrainConfig, train
from .magnitude import (
    apply_masks,
    finalize,
    magnitude_prune,
    refresh_masked,
    rewind,
    round_keep_fraction,
    weight_masks,
    weight_sparsity,
)

__all__ = ["train_ticket", "export_ticket", "TICKET_LOG", "MASKS"]

TICKET_LOG, MASKS = "ticket.json", "masks.pt"


def _phase(net: nn.Module, batches: Any, config: TrainConfig, epochs: float, device: torch.device,
           val: Iterable[Any] | None, path: Path, progress: bool) -> list[dict[str, Any]]:
    result = train(net, batches, config=config, epochs=epochs, device=device, val_batches=val, progress=progress,
                   checkpoint_path=path, resume=True)
    return [{"epoch": s.epoch, "train_loss": s.train_loss, "train_accuracy": s.train_accuracy,
             "val_accuracy": s.val_accuracy, "lr": s.lr, "seconds": s.seconds} for s in result.history]


def train_ticket(net: nn.Module, make_batches: Callable[[int], Any], *, config: TrainConfig,
                 folder: str | os.PathLike[str], final_epochs: float, sparsity: float | None = None, rounds: int = 0, k: float = 0.0,
                 device: torch.device | str = "cpu", val_batches: Iterable[Any] | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Train ``net`` (in place) as described in the module docstring; ``make_batches(phase)`` gives the training
    batches of phase ``phase`` (round ``r`` is phase ``r``, the final training phase ``rounds``). Returns
    ``{"rounds": [...], "final": [...], "timeline": [...], "weight_sparsity": float}``; the masks stay installed
    on ``net`` (:func:`~nasforge.prune.magnitude.finalize` bakes them in)."""
    rounds = 0 if sparsity is None else rounds
    if sparsity is not None:
        round_keep_fraction(sparsity, rounds)  # validates both
        if k <= 0:
            raise InvalidValue("k", k, "> 0 epochs of training per pruning round")
    if final_epochs <= 0:
        raise InvalidValue("final_epochs", final_epochs, "> 0")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    theta0_path, log_path = folder / "theta0.pt", folder / TICKET_LOG
    if theta0_path.is_file():
        theta0 = load_checkpoint(theta0_path, map_location="cpu")
        net.load_state_dict(theta0)
    else:
        theta0 = {k_: v.detach().cpu().clone() for k_, v in net.state_dict().items()}
        save_checkpoint(theta0_path, theta0)
    log: dict[str, Any] = json.loads(log_path.read_text()) if log_path.is_file() else {"rounds": []}
    done = log["rounds"]
    if done:  # resume: the masks of the last finished round on the rewound weights
        apply_masks(net, load_checkpoint(folder / f"masks_round{len(done) - 1}.pt", map_location="cpu"))
        rewind(net, theta0)
    keep = round_keep_fraction(sparsity, rounds) if rounds else 1.0
    for r in range(len(done), rounds):
        history = _phase(net, make_batches(r), config, k, dev, val_batches, folder / f"round{r}.ckpt", progress)
        magnitude_prune(net, 1.0 - keep)
        rewind(net, theta0)
        save_checkpoint(folder / f"masks_round{r}.pt", weight_masks(net))
        done.append({"round": r, "epochs": k, "history": history, "weight_sparsity": weight_sparsity(net)})
        atomic_write_text(log_path, json.dumps(log, indent=1))
    final = _phase(net, make_batches(rounds), config, final_epochs, dev, val_batches, folder / "final.ckpt",
                   progress)
    timeline = [h["val_accuracy"] for r in done for h in r["history"]] + [h["val_accuracy"] for h in final]
    return {"rounds": done, "final": final, "timeline": timeline, "weight_sparsity": weight_sparsity(net)}


def export_ticket(net: nn.Module, arch: Any, out_dir: str | os.PathLike[str], *, input_shape: tuple[int, int, int],
                  onnx: bool | None = None, meta: dict[str, Any] | None = None,
                  space_kwargs: dict[str, Any] | None = None) -> dict[str, str]:
    """Export a (pruned) network: a copy with the masks baked in (:func:`~nasforge.prune.magnitude.finalize`)
    through :func:`nasforge.export.export_model` (plain PyTorch state dict + ONNX), plus ``masks.pt`` (``{"<module>
    .weight": bool tensor}``, loadable with ``weights_only=True``). ``net`` itself is not modified."""
    refresh_masked(net)
    plain = finalize(copy.deepcopy(net)).cpu()
    masks = weight_masks(net)
    files = export_model(plain, arch, out_dir, input_shape=input_shape, onnx=onnx, space_kwargs=space_kwargs,
                         meta={**(meta or {}), "weight_sparsity": weight_sparsity(plain), "masks": MASKS})
    save_checkpoint(Path(out_dir) / MASKS, masks)
    return {**files, "masks": str(Path(out_dir) / MASKS)}
