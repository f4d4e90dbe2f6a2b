"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is one ``torch.save`` payload written atomically by :func:`nasforge.io.save_checkpoint` and read back
with ``weights_only=True`` by :func:`nasforge.io.load_checkpoint`. It holds plain data only: the model, optimizer,
scheduler (and fp16 gradient-scaler) state dicts, the position (global step, next epoch, batches of that epoch
already consumed), the epoch history, the config it was trained with, the state of torch's default generators
(CPU and CUDA; dropout draws from them) and the batch source's own state: its ``state_dict()`` when it has one,
else the state of its ``generator`` attribute when that is a :class:`torch.Generator` (:class:`nasforge.data.Batches`).

Resuming restores all of it; the default generators are the one global state nasforge ever writes, and only to put
back what the checkpoint recorded. Exact continuation needs a deterministic batch source: a callable
``source(epoch)`` that returns the same batches for the same epoch, or a source whose generator is checkpointed
(exact at epoch boundaries; a run stopped mid-epoch skips the consumed number of batches of a freshly drawn order).

Where nothing resumes, a checkpoint needs none of that: :func:`save_weights` writes the weights and BatchNorm
statistics only (the per-trial checkpoints of the ``train`` / ``menas`` evaluators, which weight inheritance and
export read; an interrupted trial is evaluated again from the start).
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..errors import InvalidValue
from ..io import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig

__all__ = ["FORMAT", "WEIGHTS_FORMAT", "save_training_state", "load_training_state", "restore_training_state",
           "save_weights"]

FORMAT = "nasforge.train/1"
#: format of :func:`save_weights` checkpoints (weights and BN statistics only)
WEIGHTS_FORMAT = "nasforge.weights/1"


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _source_state(source: Any) -> Any:
    """``source.state_dict()`` if it has one, else the state of its ``generator`` (a :class:`torch.Generator`,
    as :class:`nasforge.data.Batches` keeps), else ``None``."""
    if callable(getattr(source, "state_dict", None)):
        return {"state_dict": source.state_dict()}
    gen = getattr(source, "generator", None)
    if isinstance(gen, torch.Generator):
        return {"generator": gen.get_state()}
    return None


def _restore_source(source: Any, state: Any) -> None:
    if not isinstance(state, dict):
        return
    if "state_dict" in state and callable(getattr(source, "load_state_dict", None)):
        source.load_state_dict(state["state_dict"])
    elif "generator" in state and isinstance(getattr(source, "generator", None), torch.Generator):
        source.generator.set_state(state["generator"])


def save_training_state(path: str | os.PathLike[str], *, model: nn.Module, optimizer: Optimizer,
                        scheduler: LRScheduler, scaler: Any, config: TrainConfig, device: torch.device,
                        position: dict[str, int], history: list[dict[str, Any]], source: Any,
                        ema: dict[str, Any] | None = None) -> str:
    """Write a training checkpoint atomically; returns its SHA-256.

    ``position`` holds ``step`` (global optimizer steps done), ``next_epoch``, ``skip_batches`` (batches of
    ``next_epoch`` already consumed), ``steps_per_epoch`` and ``total_steps``.
    """
    payload = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "config": config.model_dump(),
        "position": dict(position),
        "history": list(history),
        "rng": _rng_state(device),
        "source": _source_state(source),
        "ema": ema,
    }
    return save_checkpoint(path, payload)


def load_training_state(path: str | os.PathLike[str], config: TrainConfig, steps_per_epoch: int,
                        total_steps: int | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_training_state` and check that it belongs to this run.

    The config, the number of steps per epoch and (for the cosine and linear schedules, whose shape depends on
    it) the total number of steps must equal the ones the checkpoint was trained with; a mismatch raises
    :class:`InvalidValue` naming the field.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r}: not a nasforge training checkpoint (format {FORMAT!r})")
    saved = ckpt["config"]
    defaults = TrainConfig.model_fields
    for name, value in config.model_dump().items():
        if name not in saved and name in defaults and value == defaults[name].default:
            continue  # a field added after the checkpoint was written, at its default
        if name == "precision" and "amp" in saved and name not in saved:
            saved = {**saved, "precision": {"none": "fp32"}.get(saved["amp"], saved["amp"])}
        if saved.get(name) != value:
            raise InvalidValue(f"config.{name}", value, [saved.get(name)],
                               where=f"resume from {os.fspath(path)!r} (must match the checkpoint)")
    saved_spe = ckpt["position"]["steps_per_epoch"]
    if saved_spe != steps_per_epoch:
        raise InvalidValue("steps_per_epoch", steps_per_epoch, [saved_spe],
                           where=f"resume from {os.fspath(path)!r} (must match the checkpoint)")
    saved_total = ckpt["position"].get("total_steps")
    if total_steps is not None and config.schedule in ("cosine", "linear") and saved_total != total_steps:
        raise InvalidValue("epochs (total steps)", total_steps, [saved_total],
                           where=f"resume from {os.fspath(path)!r} (the {config.schedule} schedule depends on it)")
    return ckpt


def restore_training_state(ckpt: dict[str, Any], *, model: nn.Module, optimizer: Optimizer,
                           scheduler: LRScheduler, scaler: Any, device: torch.device, source: Any) -> None:
    """Load the state dicts, the default generators and the source state of ``ckpt`` into a fresh run."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])
    _restore_source(source, ckpt.get("source"))



def save_weights(path: str | os.PathLike[str], model: nn.Module, **extra: Any) -> str:
    """Write a weights-only checkpoint atomically; returns its SHA-256.

    ``{"format": WEIGHTS_FORMAT, "model": state dict (parameters and buffers, BatchNorm statistics included, on
    the CPU), **extra}`` (``extra``: small plain records such as the training config and history). No optimizer,
    scheduler or generator state: what weight inheritance, export and scoring read, a third of a full training
    checkpoint with RMSProp (issue 12). :func:`load_training_state` refuses it (it cannot resume a run).
    """
    payload = {"format": WEIGHTS_FORMAT, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               **extra}
    return save_checkpoint(path, payload)
