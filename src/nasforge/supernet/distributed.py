"""``torch.distributed`` helpers for supernet training launched with ``torchrun`` (DESIGN.md, "Executor": supernet
training scales with torch.distributed).

Data-parallel supernet training (BigNAS Sec. 4.2 trains at batch 4096 across many accelerators) works like this:

* every rank builds the same supernet from the same seed and then takes rank 0's weights (:func:`broadcast_module`);
* every rank draws the same children per step from the same seeded ``numpy`` generator, and reads the same global
  batch from the same seeded loader, of which it keeps its own contiguous slice (:func:`shard`);
* each rank runs the forward/backward passes of every child of the step on its slice; the accumulated gradients are
  then averaged across ranks (:func:`all_reduce_gradients`) and every rank takes the same optimizer step, so the
  replicas stay bit-identical.

Why an explicit all-reduce instead of :class:`~torch.nn.parallel.DistributedDataParallel`: one BigNAS step is
2 + N forward/backward passes through *different* sub-networks of the same parameters. DDP would need
``find_unused_parameters=True`` (a graph traversal after every forward), ``no_sync()`` around all but the last
child, and relies on its reducer to carry the "used" bookkeeping of the earlier children into the synchronised
pass; a parameter used only by an early child is exactly the case that bookkeeping has to get right. Averaging the
summed gradients once, after the last child, is the textbook definition of the step, needs no assumption about
which child used which weight, and costs the same bytes on the wire (one reduction of every gradient per step; DDP
would only overlap it with the last child's backward). Parameters that no child of the step used keep
``grad=None`` on every rank (a tiny all-reduce of a "has gradient" mask makes that decision identical on all
ranks), so optimizers skip them exactly as they do in a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

import torch
import torch.distributed as dist
from torch import nn

from ..device import resolve_device
from ..errors import InvalidValue

__all__ = ["DistContext", "env_ranks", "init_distributed", "shutdown_distributed", "shard", "broadcast_module",
           "all_reduce_gradients", "all_reduce_mean", "barrier", "BACKENDS"]

BACKENDS = ("auto", "gloo", "nccl")
_BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket size


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (0 of 1 without torchrun), its ``device`` and the
    process-group ``backend`` (``None`` when not distributed). ``owns_group``: this context created the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes checkpoints, logs and the run folder."""
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str, low: int) -> int:
    text = env[name]
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise InvalidValue(f"environment variable {name}", text, f"an int >= {low} (set by torchrun)")
    return value


def env_ranks(env: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, or ``None``
    when they are not set (a plain single-process run)."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    rank, world = _env_int(env, "RANK", 0), _env_int(env, "WORLD_SIZE", 1)
    local = _env_int(env, "LOCAL_RANK", 0) if "LOCAL_RANK" in env else rank
    if rank >= world:
        raise InvalidValue("environment variable RANK", rank, f"0..{world - 1} (WORLD_SIZE is {world})")
    return rank, world, local


def _pick_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise InvalidValue("backend", backend, BACKENDS)
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise InvalidValue("backend", backend, "'gloo' or 'auto' on a CPU device (nccl needs CUDA)")
    return backend


def init_distributed(backend: Literal["auto", "gloo", "nccl"] | str = "auto",
                     device: str | torch.device = "auto") -> DistContext:
    """Join the process group torchrun describes (``env://``), or return a single-process context.

    ``backend="auto"``: nccl on CUDA, gloo on CPU. On CUDA each rank uses ``cuda:LOCAL_RANK`` (``device`` "auto" or
    "cuda"); an explicit ``cuda:N`` is kept. An already initialised group is reused (and not destroyed by
    :func:`shutdown_distributed`).
    """
    ranks = env_ranks()
    dev = resolve_device(device)
    if ranks is None or ranks[1] == 1:
        if backend not in BACKENDS:
            raise InvalidValue("backend", backend, BACKENDS)
        return DistContext(device=dev)
    rank, world, local = ranks
    if dev.type == "cuda" and dev.index is None:
        dev = resolve_device(f"cuda:{local % max(torch.cuda.device_count(), 1)}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    name = _pick_backend(backend, dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(name, init_method="env://", rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev, backend=name, owns_group=owns)


def shutdown_distributed(ctx: DistContext) -> None:
    """Destroy the process group if ``ctx`` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (``len(batch)`` must divide by the world size, so that the
    mean of the per-rank mean losses is the global mean loss)."""
    if not ctx.distributed:
        return batch
    n = batch.shape[0]
    if n % ctx.world_size:
        raise InvalidValue("train.batch_size", n, f"a multiple of the world size {ctx.world_size} (each rank takes "
                                                  "an equal share of every global batch)")
    per = n // ctx.world_size
    return batch[ctx.rank * per:(ctx.rank + 1) * per]


def broadcast_module(module: nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (no-op in a single process)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def _buckets(params: list[nn.Parameter], limit: int) -> Iterable[list[nn.Parameter]]:
    bucket: list[nn.Parameter] = []
    size = 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        if bucket and (size + nbytes > limit or p.dtype != bucket[0].dtype or p.device != bucket[0].device):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += nbytes
    if bucket:
        yield bucket


@torch.no_grad()
def all_reduce_gradients(params: Iterable[nn.Parameter], ctx: DistContext, bucket_bytes: int = _BUCKET_BYTES) -> None:
    """Average ``.grad`` across ranks in place, in flat buckets of at most ``bucket_bytes``.

    A parameter gets a gradient on every rank when some rank has one (missing ones count as zeros); a parameter
    without a gradient on any rank keeps ``grad=None`` everywhere (the optimizer skips it, as in one process).
    """
    if not ctx.distributed:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=params[0].device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    used = [p for p, h in zip(params, has.tolist()) if h]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for bucket in _buckets(used, bucket_bytes):
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(ctx.world_size)
        offset = 0
        for p in bucket:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


def all_reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of ``values`` over ranks (a new tensor; ``values`` itself in a single process)."""
    if not ctx.distributed:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.div_(ctx.world_size)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()
