"""BatchNorm re-calibration: recompute running statistics of a network whose weights were changed or sliced.

Used after channel pruning (MENAS Sec. 3 "Exploring Lottery Tickets", step (c) BN re-calibration), on child models
taken from a supernet (BigNAS Sec. 4 "batch normalization with post-calibration"; DCNAS Sec. 4.1 "the batch
statistics for each subnetwork is recomputed based on 200 batches of training data") and on supernet slices in
SPOS-style searches.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import DataError, InvalidValue

__all__ = ["calibrate_bn", "bn_layers"]


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def _inputs(batch: Any) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DataError(f"calibrate_bn batches: got {type(x).__name__}; expected float tensors or (x, y) pairs")
    return x


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Iterable[Any], num_batches: int,
                 device: str | torch.device | None = None) -> int:
    """Reset and recompute the running mean/variance of every BatchNorm layer from ``num_batches`` batches.

    The statistics are a cumulative (equal-weight) moving average over the batches (``momentum=None``), so the
    result does not depend on the layers' momentum. Only the BatchNorm layers are put in training mode; the rest
    of the model runs in eval mode (dropout off, so it does not perturb the statistics). Runs under
    ``torch.no_grad``; parameters, gradients, momentum settings and training modes are left as they were, and
    only the BN buffers (running mean, variance, ``num_batches_tracked``) change.

    ``batches`` yields ``x`` tensors or ``(x, y)`` pairs; ``device`` defaults to the model's. Returns the number of
    batches used (fewer than ``num_batches`` when ``batches`` runs out; 0 when the model has no BatchNorm).
    Custom BatchNorm subclasses must honour ``momentum=None`` as :class:`torch.nn.BatchNorm2d` does.
    """
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise InvalidValue("num_batches", num_batches, "a positive int")
    bns = bn_layers(model)
    if not bns:
        return 0
    if device is None:
        device = next(iter(model.parameters()), bns[0].running_mean).device
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in bns]
    used = 0
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for batch in batches:
            if used >= num_batches:
                break
            model(_inputs(batch).to(device, non_blocking=True))
            used += 1
    finally:
        for m, momentum in momenta:
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    if used == 0:
        raise DataError("calibrate_bn batches: got no batches; expected at least 1")
    return used
