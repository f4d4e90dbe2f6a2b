"""Counted costs of a built network: FLOPs with :class:`torch.utils.flop_counter.FlopCounterMode`, parameters.

These are the ground truth that the analytic cost formulas of every search space are checked against
(DESIGN.md, "analytic FLOPs == counted FLOPs"). Conventions follow ``FlopCounterMode``: one multiply-add counts
as **2 FLOPs** (a ``Linear(i, o)`` costs ``2*i*o``; a ``Conv2d`` costs ``2 * Cout * Hout * Wout * Cin/groups *
k*k``), bias additions, BatchNorm, activations and pooling are not counted. The papers quote "FLOPs" as
multiply-adds (BigNAS Sec. 1 and 4.2, child models of "200 to 1000 MFLOPs"; PAD-NAS Table 3, at 224x224; MENAS
"Experimental Details", a 1-1.6 G FLOPs search budget), i.e. half of what is counted here.

Nothing here mutates the caller's model: the training flags of every sub-module are restored, and a model is
copied, not moved, when it has to run on another device.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..device import resolve_device
from ..errors import InvalidValue

__all__ = ["count_flops", "count_params", "resolve_device", "check_shape", "eval_mode", "on_device",
           "make_input", "run_checked"]


def check_shape(input_shape: Sequence[int], field: str = "input_shape") -> tuple[int, ...]:
    """A per-sample input shape without the batch dimension, e.g. ``(3, 32, 32)``: positive ints only."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise InvalidValue(field, input_shape, "a tuple of positive ints without the batch size, e.g. (3, 32, 32)")\
            from None
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise InvalidValue(field, input_shape, "a tuple of positive ints without the batch size, e.g. (3, 32, 32)")
    return shape


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every sub-module's own ``training`` flag after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself when all its tensors already live on ``device``; otherwise a copy moved there."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == device for t in tensors):
        return model
    return copy.deepcopy(model).to(device)


def make_input(model: nn.Module, shape: tuple[int, ...], batch_size: int, device: torch.device,
               seed: int | None = None) -> torch.Tensor:
    """An input batch for ``model``: zeros, or standard normal from a local generator seeded with ``seed``.

    Its dtype is that of the model's first floating-point parameter (float32 for a model without one).
    """
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if seed is None:
        return torch.zeros((batch_size, *shape), device=device, dtype=dtype)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return torch.randn((batch_size, *shape), device=device, dtype=dtype, generator=gen)


def run_checked(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``; a shape/dtype error raised by torch becomes an :class:`InvalidValue` naming the input shape."""
    try:
        return model(x)
    except (RuntimeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InvalidValue("input_shape", tuple(x.shape[1:]), f"a shape the model accepts (torch: {first})") from None


def count_flops(model: nn.Module, input_shape: Sequence[int], device: str | torch.device = "cpu") -> int:
    """FLOPs of one forward pass at batch size 1, counted by ``FlopCounterMode`` (eval mode, no grad).

    ``input_shape`` excludes the batch dimension, e.g. ``(3, 224, 224)``. One multiply-add = 2 FLOPs.
    """
    shape = check_shape(input_shape)
    dev = resolve_device(device)
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    net = on_device(model, dev)
    x = make_input(net, shape, 1, dev)
    counter = FlopCounterMode(display=False)
    with eval_mode(net), torch.no_grad(), counter:
        run_checked(net, x)
    return int(counter.get_total_flops())


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (shared parameters counted once; buffers such as BatchNorm
    running statistics are not parameters). With ``trainable_only`` only tensors with ``requires_grad``."""
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))
