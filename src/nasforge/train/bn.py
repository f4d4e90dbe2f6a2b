"""BatchNorm re-calibration: recompute running statistics of a network whose weights were changed or sliced.

Used after channel pruning (MENAS Sec. 3 "Exploring Lottery Tickets", step (c) BN re-calibration), on child models
taken from a supernet (BigNAS Sec. 4 "batch normalization with post-calibration"; DCNAS Sec. 4.1 "the batch
statistics for each subnetwork is recomputed based on 200 batches of training data") and on supernet slices in
SPOS-style searches.

Scoring policy (issue 12). A network trained for only a few epochs is scored with running statistics that lag its
weights (momentum 0.1: after 10 steps a third of each running average is still the initial mean 0 / variance 1),
and a deep network can then score at chance although its weights are fine. Every place that scores a trained
network (the ``train`` and ``menas`` evaluators, ``nasforge train``, ``nasforge export``) therefore re-estimates the
statistics first according to a ``calibrate_bn`` option (:func:`check_calibrate_mode`): ``true`` always,
``false`` never, ``auto`` (the default) when the network trained for fewer than :data:`AUTO_CALIB_EPOCHS` epochs
or its weights were pruned, inherited or sliced (:func:`wants_calibration`). :func:`calibrate_for_scoring` runs
:func:`calibrate_bn` and returns what a trial records (``bn_calibrated``, ``bn_calib_batches``,
``bn_calib_images``).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import DataError, InvalidValue

__all__ = ["calibrate_bn", "bn_layers", "AUTO_CALIB_EPOCHS", "CALIB_BATCHES", "CALIBRATE_MODES",
           "check_calibrate_mode", "wants_calibration", "calibrate_for_scoring"]

#: ``calibrate_bn: auto`` re-calibrates a network trained for fewer epochs than this (at momentum 0.1 the running
#: statistics follow the weights within a fraction of an epoch once the weights settle; the MENAS benchmark's
#: chance-level scores all came from 0.25-3 epoch trainings, so 5 leaves a margin)
AUTO_CALIB_EPOCHS = 5.0
#: default number of training batches the statistics are re-estimated on before scoring (MENAS's "a few
#: iterations"; the same default as the lottery-ticket re-calibration, ``nasforge.prune.CALIB_STEPS``)
CALIB_BATCHES = 20
#: the values of a ``calibrate_bn`` option
CALIBRATE_MODES = ("auto", True, False)
#: how a network's weights can have been changed after (or instead of) training, for :func:`wants_calibration`
MODIFIED_WEIGHTS = ("pruned", "inherited", "sliced")


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def _inputs(batch: Any) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DataError(f"calibrate_bn batches: got {type(x).__name__}; expected float tensors or (x, y) pairs")
    return x


def check_calibrate_mode(value: Any, field: str = "calibrate_bn") -> str | bool:
    """``value`` when it is ``"auto"``, ``True`` or ``False``; else a one-line :class:`InvalidValue` naming
    ``field``. Strings ``"true"`` / ``"false"`` (command lines) become booleans."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "auto"):
        value = {"true": True, "false": False}.get(value.strip().lower(), "auto")
    if value is True or value is False or value == "auto":
        return value
    raise InvalidValue(field, value, "'auto', true or false")


def wants_calibration(mode: str | bool, *, epochs: float | None, modified: str | None = None) -> tuple[bool, str]:
    """Whether a trained network is re-calibrated before it is scored, and why (a short reason for the record).

    ``mode``: ``True`` / ``False`` decide; ``"auto"``: yes when ``modified`` names how its weights were changed
    (:data:`MODIFIED_WEIGHTS`: pruned, inherited or sliced) or when it trained for fewer than
    :data:`AUTO_CALIB_EPOCHS` epochs (``epochs`` ``None``: unknown, so yes).
    """
    mode = check_calibrate_mode(mode)
    if mode != "auto":
        return bool(mode), f"calibrate_bn: {str(mode).lower()}"
    if modified is not None:
        if modified not in MODIFIED_WEIGHTS:
            raise InvalidValue("modified", modified, MODIFIED_WEIGHTS)
        return True, f"auto: weights {modified}"
    if epochs is None:
        return True, "auto: epochs trained unknown"
    if epochs < AUTO_CALIB_EPOCHS:
        return True, f"auto: trained {epochs:.3g} < {AUTO_CALIB_EPOCHS:g} epochs"
    return False, f"auto: trained {epochs:.3g} >= {AUTO_CALIB_EPOCHS:g} epochs"


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
    return _calibrate(model, batches, num_batches, device)[0]


@torch.no_grad()
def _calibrate(model: nn.Module, batches: Iterable[Any], num_batches: int,
               device: str | torch.device | None) -> tuple[int, int]:
    """:func:`calibrate_bn`; returns ``(batches used, images in them)``."""
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise InvalidValue("num_batches", num_batches, "a positive int")
    bns = bn_layers(model)
    if not bns:
        return 0, 0
    if device is None:
        device = next(iter(model.parameters()), bns[0].running_mean).device
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in bns]
    used = images = 0
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for batch in batches:
            if used >= num_batches:
                break
            x = _inputs(batch)
            model(x.to(device, non_blocking=True))
            used, images = used + 1, images + int(x.shape[0])
    finally:
        for m, momentum in momenta:
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    if used == 0:
        raise DataError("calibrate_bn batches: got no batches; expected at least 1")
    return used, images


def calibrate_for_scoring(model: nn.Module, batches: Iterable[Any], num_batches: int,
                          device: str | torch.device | None = None, *, reason: str | None = None) -> dict[str, Any]:
    """:func:`calibrate_bn` on ``num_batches`` of ``batches`` (training data) before a network is scored; returns
    the record a trial keeps: ``{"bn_calibrated": True, "bn_calib_batches": n, "bn_calib_images": images}``
    (plus ``bn_calib_reason`` when given; ``bn_calibrated`` is ``False`` for a network without BatchNorm)."""
    used, images = _calibrate(model, batches, num_batches, device)
    out: dict[str, Any] = {"bn_calibrated": used > 0, "bn_calib_batches": used, "bn_calib_images": images}
    if reason is not None:
        out["bn_calib_reason"] = reason
    return out
