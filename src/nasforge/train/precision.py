"""Training that fits the device: precision (autocast + fp16 gradient scaler) and the weight EMA.

* :func:`check_precision` — whether ``precision`` runs on a device, as a one-line error when it does not (fp16 needs
  CUDA: CPU fp16 autocast covers few ops and ``GradScaler`` is a CUDA feature in practice; bf16 needs a GPU with
  bf16 support, or the CPU).
* :func:`autocast` — the autocast context of a precision (``fp32``: none).
* :class:`WeightEMA` — exponential moving average of a model's weights, as TensorFlow's
  ``ExponentialMovingAverage(decay, num_updates=step)`` that EfficientNet / MENAS retraining use (0.9999): after every
  optimizer step ``ema = d * ema + (1 - d) * w`` with ``d = min(decay, (1 + n) / (10 + n))`` (so early averages
  are not dominated by the initial weights); buffers (BatchNorm statistics) are copied, not averaged.
* :func:`measure_step_memory` + :func:`check_batch_fits` — on CUDA, one forward/backward at 1 and 2 images gives
  the memory per image; a batch that cannot fit is a one-line error before training starts, instead of an
  out-of-memory failure (or a search of them).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from ..errors import InvalidValue

__all__ = ["check_precision", "autocast", "WeightEMA", "PRECISIONS", "check_batch_fits", "measure_step_memory",
           "device_capacity"]

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device: torch.device, where: str = "train.precision") -> None:
    """A one-line :class:`InvalidValue` when ``precision`` cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise InvalidValue(where, precision, PRECISIONS)
    if precision == "fp16" and device.type != "cuda":
        raise InvalidValue(where, "fp16", f"'fp32' or 'bf16' on device {device.type!r} (fp16 with a gradient "
                                          "scaler needs CUDA)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InvalidValue(where, "bf16", f"'fp32' or 'fp16' on {torch.cuda.get_device_name(device)} (no bf16 "
                                          "support)")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise InvalidValue(where, "bf16", f"'fp32' on device {device.type!r}")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in ``precision`` on ``device``'s type (a null context for ``fp32``)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


class WeightEMA:
    """Averaged copy (``.model``) of a model's weights, updated after each optimizer step by :meth:`update`."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise InvalidValue("ema_decay", decay, "a float in (0, 1), e.g. 0.9999")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        ema = dict(self.model.named_parameters())
        for name, p in model.named_parameters():
            e = ema[name]
            if e.is_floating_point():
                e.lerp_(p.detach().to(e.dtype), 1.0 - d)
        ema_buffers = dict(self.model.named_buffers())
        for name, b in model.named_buffers():
            ema_buffers[name].copy_(b)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.model.load_state_dict(state["model"])


# ------------------------------------------------------------------------------------------------ does it fit
def check_batch_fits(batch_size: int, fixed_bytes: float, per_image_bytes: float, capacity_bytes: float, *,
                     where: str = "train.batch_size", headroom: float = 0.9) -> None:
    """A one-line :class:`InvalidValue` when ``fixed + per_image * batch_size`` exceeds ``headroom`` of the device
    memory ``capacity`` (the figures of :func:`measure_step_memory`), naming the largest batch that fits."""
    need = fixed_bytes + per_image_bytes * batch_size
    budget = headroom * capacity_bytes
    if need <= budget:
        return
    fits = int((budget - fixed_bytes) / per_image_bytes + 1e-9) if per_image_bytes > 0 else 0
    raise InvalidValue(where, batch_size, f"at most ~{max(fits, 0)} per device here (one forward/backward: "
                       f"{per_image_bytes / 2 ** 20:.0f} MiB per image + {fixed_bytes / 2 ** 30:.2f} GiB, "
                       f"{capacity_bytes / 2 ** 30:.1f} GiB on the device); lower it and raise "
                       "train.accumulate_steps to keep the step's batch, or use precision bf16")


def measure_step_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any, precision: str,
                        device: torch.device) -> tuple[float, float] | None:
    """``(fixed, per_image)`` bytes of one training forward/backward on CUDA, from the peak memory at 1 and 2
    images of ``x``; ``None`` off CUDA (nothing to measure). Gradients and buffers (BatchNorm statistics) are
    restored, so the model is as before."""
    if device.type != "cuda" or len(x) < 2:
        return None
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    was = model.training
    model.train()
    peaks = []
    try:
        for n in (1, 2):
            model.zero_grad(set_to_none=True)
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            with autocast(precision, device):
                loss = loss_fn(model(x[:n].to(device)), y[:n].to(device))
            loss.backward()
            torch.cuda.synchronize(device)
            peaks.append(torch.cuda.max_memory_allocated(device) - base)
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        model.train(was)
    per_image = max(peaks[1] - peaks[0], 0)
    return float(torch.cuda.memory_allocated(device) + peaks[0] - per_image), float(per_image)


def device_capacity(device: torch.device) -> float | None:
    """Total memory of a CUDA device in bytes (``None`` elsewhere)."""
    if device.type != "cuda":
        return None
    return float(torch.cuda.get_device_properties(device).total_memory)
