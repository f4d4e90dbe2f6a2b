"""Device selection shared by training, evaluation and the cost models."""
from __future__ import annotations

import torch

from .errors import InvalidValue

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device, which must exist here.

    Unknown names and unavailable accelerators are rejected up front with a one-line error naming ``device``.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidValue("device", device, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidValue("device", str(device), "'cpu' or 'auto' (CUDA is not available here)")
    return dev
