"""Device selection and scoped torch RNG, shared by training, evaluation and the cost models."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .errors import InvalidValue

__all__ = ["resolve_device", "seeded_torch", "torch_threads"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device, which must exist here.

    Unknown names, unavailable accelerators and out-of-range CUDA indices are rejected up front with a one-line
    error naming ``device``.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidValue("device", device, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidValue("device", str(device), "'cpu' or 'auto' (CUDA is not available here)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InvalidValue("device", str(device), [f"cuda:{i}" for i in range(count)] + ["cpu", "auto"])
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InvalidValue("device", str(device), "'cpu' or 'auto' (MPS is not available here)")
    return dev


@contextmanager
def seeded_torch(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with torch's default generators (CPU, and ``device``'s CUDA one) started from ``seed``.

    Layers that draw from torch's default generator (dropout masks, PyTorch's default initialisation) then
    reproduce for a given seed, whatever ran before in the process; the caller's generator states are restored on
    exit (``torch.random.fork_rng``), so nothing global changes outside the block.
    """
    dev = torch.device(device)
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(int(seed))
        for i in cuda:
            torch.cuda.default_generators[i].manual_seed(int(seed))
        yield


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` and restore the previous count afterwards, even on error
    (``None``: leave the count as it is)."""
    if n is None:
        yield
        return
    prior = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prior)
