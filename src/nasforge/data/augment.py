"""Batched augmentation as whole-batch tensor ops: pad + random crop, horizontal flip, resize, normalise.

The standard CIFAR training augmentation (zero-pad + random crop, random horizontal flip; the DARTS and
NAS-Bench-201 training pipelines that LNAS Sec. 5 and DCNAS Sec. 4 build on) and BigNAS's multi-resolution inputs
(Sec. 3.1, inplace distillation: crop one patch, then bicubic-resize the *same patch* to every target resolution;
Sec. 4.1: resolutions {192, 224, 288, 320}), applied to a whole batch at once with no Python loop over samples:

* crop + flip are one ``gather`` on the zero-padded ``uint8`` batch: per-sample row/column offsets (and a per-sample
  reversed column order for flipped samples) become flat indices into each padded image;
* resize is :func:`torch.nn.functional.interpolate` (bilinear / bicubic / nearest / area);
* normalisation is ``(x / 255 - mean) / std`` per channel, fused into one subtract and one multiply.

Random numbers come only from the ``torch.Generator`` passed in (drawn on the generator's device, then moved to the
batch's device), so a fixed seed gives the same batches on CPU and GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InvalidValue

__all__ = ["BatchTransform", "INTERPOLATIONS", "random_crop_flip", "resize"]

#: ``mode`` names accepted by :func:`resize` (all of :func:`torch.nn.functional.interpolate`'s 2-D modes we support)
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area")


def _draw(generator: torch.Generator, device: torch.device, kind: str, high: int, n: int) -> torch.Tensor:
    """``n`` draws from ``generator`` (on its own device), moved to ``device``."""
    if kind == "int":
        out = torch.randint(0, high, (n,), generator=generator, device=generator.device)
    else:
        out = torch.rand(n, generator=generator, device=generator.device) < 0.5
    return out.to(device)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, *, pad: int = 0,
                     flip: bool = False) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch and per-sample horizontal flip (probability 1/2).

    ``images`` is an NCHW batch of any dtype (usually ``uint8``); the output has the same shape and dtype. Each
    sample's window ``(dy, dx)`` is uniform in ``0..2*pad`` of the image padded by ``pad`` zeros on every side, so the
    crop always lies inside the padded image. Offsets are drawn before flips, both from ``generator``.
    """
    if images.dim() != 4:
        raise InvalidValue("images", f"shape {tuple(images.shape)}", "an NCHW batch (4 dimensions)")
    if pad < 0:
        raise InvalidValue("pad", pad, "an int >= 0")
    b, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    oy = _draw(generator, dev, "int", 2 * pad + 1, b)
    ox = _draw(generator, dev, "int", 2 * pad + 1, b)
    rows = oy[:, None] + torch.arange(h, device=dev)
    cols = ox[:, None] + torch.arange(w, device=dev)
    if flip:
        flipped = _draw(generator, dev, "bool", 2, b)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)


def resize(x: torch.Tensor, resolution: int | Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize a float NCHW batch to ``resolution`` (int: square, or ``(H, W)``) with ``interpolate``.

    Linear, so resizing normalised images equals normalising resized ones: BigNAS's inplace distillation (Sec. 3.1)
    resizes the teacher's batch with ``mode="bicubic"`` to get each student's input. A no-op at the same size.
    """
    if mode not in INTERPOLATIONS:
        raise InvalidValue("interpolation", mode, INTERPOLATIONS)
    size = (resolution, resolution) if isinstance(resolution, int) else tuple(int(r) for r in resolution)
    if len(size) != 2 or min(size) < 1:
        raise InvalidValue("resolution", resolution, "a positive int or (height, width)")
    if tuple(x.shape[-2:]) == size:
        return x
    if not x.is_floating_point():
        x = x.float()
    corners = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(x, size=size, mode=mode, align_corners=corners)


def _check_channels(name: str, values: Sequence[float] | None, positive: bool) -> tuple[float, ...] | None:
    if values is None:
        return None
    vals = tuple(float(v) for v in values)
    if not vals or (positive and min(vals) <= 0):
        raise InvalidValue(name, values, "one positive float per channel" if positive else "one float per channel")
    return vals


@dataclass(frozen=True)
class BatchTransform:
    """``uint8`` NCHW batch -> ``float32`` NCHW batch: [crop + flip (train only)] -> resize -> normalise.

    ``pad``: random-crop padding in pixels (0: no crop); ``flip``: random horizontal flip; ``resolution``: output
    side (``None``: keep); ``interpolation``: one of :data:`INTERPOLATIONS`; ``mean`` / ``std``: per-channel
    statistics in ``[0, 1]`` units (``None``: only scale to ``[0, 1]``). Evaluation (``train=False``) skips the
    random ops, so it is deterministic.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    pad: int = 0
    flip: bool = False
    resolution: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _check_channels("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _check_channels("std", self.std, positive=True))
        if (self.mean is None) != (self.std is None) or (self.mean and len(self.mean) != len(self.std or ())):
            raise InvalidValue("mean/std", (self.mean, self.std), "both None, or one value per channel each")
        if not isinstance(self.pad, int) or self.pad < 0:
            raise InvalidValue("pad", self.pad, "an int >= 0")
        if self.resolution is not None and (not isinstance(self.resolution, int) or self.resolution < 1):
            raise InvalidValue("resolution", self.resolution, "a positive int or None")
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidValue("interpolation", self.interpolation, INTERPOLATIONS)

    @property
    def random(self) -> bool:
        """Whether training mode draws random numbers (crop or flip enabled)."""
        return self.pad > 0 or self.flip

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, H, W)`` of the transformed images for stored images of ``input_shape``."""
        c, h, w = input_shape
        return (c, self.resolution, self.resolution) if self.resolution else (c, h, w)

    def __call__(self, images: torch.Tensor, *, train: bool,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform an NCHW ``uint8`` batch (on any device); ``generator`` is required when ``train`` is random."""
        if images.dim() != 4:
            raise InvalidValue("images", f"shape {tuple(images.shape)}", "an NCHW batch (4 dimensions)")
        if self.mean is not None and images.shape[1] != len(self.mean):
            raise InvalidValue("mean/std channels", len(self.mean), [int(images.shape[1])])
        if train and self.random:
            if generator is None:
                raise InvalidValue("generator", None, "a torch.Generator (training augmentation is random)")
            images = random_crop_flip(images, generator, pad=self.pad, flip=self.flip)
        x = images.to(torch.float32, copy=images.dtype == torch.float32)  # never modify the caller's tensor
        if self.resolution is not None:
            x = resize(x, self.resolution, self.interpolation)
            if self.interpolation == "bicubic":  # bicubic overshoots; keep the pixel range as Pillow does
                x = x.clamp_(0.0, 255.0)
        if self.mean is None:
            return x.mul_(1.0 / 255.0)
        shape = (1, len(self.mean), 1, 1)
        shift = torch.tensor([255.0 * m for m in self.mean], device=x.device).view(shape)
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std or ()], device=x.device).view(shape)
        return x.sub_(shift).mul_(scale)
