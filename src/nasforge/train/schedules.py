"""Per-step learning-rate schedules as pure functions of the step, and the optimizer they drive.

Every schedule is a multiplicative factor of the initial rate, ``lr(step) = lr0 * factor(step)``, evaluated once per
optimizer step (``epoch_float = step / steps_per_epoch``), and wrapped in :class:`torch.optim.lr_scheduler.LambdaLR`.
Warm-up follows the TensorFlow EfficientNet convention that MENAS and BigNAS inherit: during the first
``W`` steps the rate rises linearly from 0 (``factor = step / W``), afterwards the decay is evaluated at the
*absolute* step, so the decay clock is not shifted by the warm-up.

* ``exponential`` — ``0.97 ** floor(epoch_float / 2.4)`` (EfficientNet; MENAS "Experimental Details"; BigNAS Sec. 4),
  floored at ``min_lr_ratio`` ("exponentially decaying with constant ending", BigNAS Sec. 3.1, Fig. 2b: 0.05).
* ``cosine`` — ``m + (1 - m) * (1 + cos(pi * step / total)) / 2`` (SGDR without restarts; LNAS Sec. 4, NB201,
  DCNAS retrain).
* ``linear`` — ``m + (1 - m) * (1 - step / total)`` (DCNAS Sec. 4.1 supernet, PAD-NAS Sec. 4).
* ``constant`` — 1.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..errors import InvalidValue
from .config import TrainConfig

__all__ = ["warmup_factor", "exponential_factor", "cosine_factor", "linear_factor", "lr_lambda",
           "build_scheduler", "build_optimizer", "param_groups"]

_EPS = 1e-9  # guards floor() against float round-off at exact decay boundaries (e.g. 7.2 / 2.4)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up from 0: ``step / warmup_steps`` while ``step < warmup_steps``, else 1."""
    return step / warmup_steps if step < warmup_steps else 1.0


def exponential_factor(step: int, steps_per_epoch: int, rate: float = 0.97, every_epochs: float = 2.4,
                       floor: float = 0.0) -> float:
    """``max(rate ** floor(step / steps_per_epoch / every_epochs), floor)`` (staircase decay, BigNAS Sec. 3.1)."""
    k = math.floor(step / (steps_per_epoch * every_epochs) + _EPS)
    return max(rate ** k, floor)


def cosine_factor(step: int, total_steps: int, floor: float = 0.0) -> float:
    """Cosine annealing from 1 to ``floor`` over ``total_steps`` (held at ``floor`` afterwards)."""
    t = min(step, total_steps) / max(total_steps, 1)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def linear_factor(step: int, total_steps: int, floor: float = 0.0) -> float:
    """Linear annealing from 1 to ``floor`` over ``total_steps`` (DCNAS supernet, PAD-NAS)."""
    t = min(step, total_steps) / max(total_steps, 1)
    return floor + (1.0 - floor) * (1.0 - t)


def lr_lambda(config: TrainConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """The factor ``step -> lr(step) / lr0`` of ``config``'s schedule (warm-up, then the decay shape)."""
    if steps_per_epoch < 1:
        raise InvalidValue("steps_per_epoch", steps_per_epoch, "a positive int")
    if total_steps < 1:
        raise InvalidValue("total_steps", total_steps, "a positive int")
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    m = config.min_lr_ratio
    shapes: dict[str, Callable[[int], float]] = {
        "exponential": lambda s: exponential_factor(s, steps_per_epoch, config.decay_rate, config.decay_epochs, m),
        "cosine": lambda s: cosine_factor(s, total_steps, m),
        "linear": lambda s: linear_factor(s, total_steps, m),
        "constant": lambda s: 1.0,
    }
    shape = shapes[config.schedule]

    def factor(step: int) -> float:
        return warmup_factor(step, warmup) if step < warmup else shape(step)

    return factor


def build_scheduler(optimizer: Optimizer, config: TrainConfig, steps_per_epoch: int,
                    total_steps: int) -> LambdaLR:
    """A :class:`LambdaLR` stepping once per optimizer step with :func:`lr_lambda` (resumable via state_dict)."""
    return LambdaLR(optimizer, lr_lambda(config, steps_per_epoch, total_steps))


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Trainable parameters split into a decayed group and, unless ``decay_norm_and_bias``, a group of 1-D
    parameters (BatchNorm affine, biases) without weight decay (the EfficientNet recipe)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidValue("model", type(model).__name__, "a module with trainable parameters")
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> Optimizer:
    """SGD (momentum, optional Nesterov) or RMSProp (TF-style epsilon mapped to torch) at ``effective_lr``."""
    groups = param_groups(model, config.weight_decay, config.decay_norm_and_bias)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.effective_lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0)
    return torch.optim.RMSprop(groups, lr=config.effective_lr, alpha=config.rmsprop_decay,
                               eps=config.torch_rmsprop_eps, momentum=config.momentum)
