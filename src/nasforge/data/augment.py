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
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..errors import InvalidValue

__all__ = ["BatchTransform", "INTERPOLATIONS", "random_crop_flip", "resize", "ImageAugment", "AUTO_AUGMENTS"]

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
    statistics in ``[0, 1]`` units (``None``: only scale to ``[0, 1]``); ``sample``: the per-image stage run first
    (:class:`ImageAugment`: random-resized crop / AutoAugment / RandAugment in training, resize-shorter-side +
    centre crop in evaluation; a streaming loader runs it in its workers). Evaluation (``train=False``) skips
    the random ops, so it is deterministic.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    pad: int = 0
    flip: bool = False
    resolution: int | None = None
    interpolation: str = "bilinear"
    sample: "ImageAugment | None" = None

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
        return self.pad > 0 or self.flip or (self.sample is not None and self.sample.random)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, H, W)`` of the transformed images for stored images of ``input_shape``."""
        c, h, w = input_shape
        if self.sample is not None:
            h = w = self.sample.size
        return (c, self.resolution, self.resolution) if self.resolution else (c, h, w)

    def __call__(self, images: torch.Tensor, *, train: bool, generator: torch.Generator | None = None,
                 per_image: bool = True) -> torch.Tensor:
        """Transform an NCHW ``uint8`` batch (on any device); ``generator`` is required when ``train`` is random.

        ``per_image=False``: the :attr:`sample` stage already ran (in a streaming loader's workers)."""
        if images.dim() != 4:
            raise InvalidValue("images", f"shape {tuple(images.shape)}", "an NCHW batch (4 dimensions)")
        if self.mean is not None and images.shape[1] != len(self.mean):
            raise InvalidValue("mean/std channels", len(self.mean), [int(images.shape[1])])
        if train and self.random and generator is None:
            raise InvalidValue("generator", None, "a torch.Generator (training augmentation is random)")
        if self.sample is not None and per_image:
            if train and self.sample.random and generator is not None:
                seeds = torch.randint(0, 2 ** 62, (images.shape[0],), generator=generator, device=generator.device)
                if self.sample.auto_augment == "none":  # crops only: one batched call, seeded per batch
                    images = self.sample.crop_batch(images, int(seeds[0]))
                else:  # the policies pick their ops per call: one call per image, seeded per image
                    images = self.sample.train_batch(images, seeds.tolist())
            else:
                images = self.sample.eval_batch(images)
        if train and (self.pad > 0 or self.flip) and generator is not None:
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


# ================================================================================================= per-image (kornia)
#: names of the automatic augmentation policies :class:`ImageAugment` accepts
AUTO_AUGMENTS: tuple[str, ...] = ("none", "autoaugment", "randaugment")


def _seed_of(seed: int) -> int:
    return int(seed) & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class ImageAugment:
    """The per-image stage of the ImageNet pipelines, done with kornia: ``uint8`` images of any size in,
    ``uint8`` ``C x size x size`` out.

    Training (:meth:`train_batch`): Inception-style random-resized crop (Szegedy et al. 2015; the crop covers a
    fraction ``scale`` of the image area with aspect ratio in ``ratio``, log-uniform; ``rrc=False``: resize the
    shorter side and crop the centre instead), then ``auto_augment``: ``"autoaugment"`` (the ImageNet policy of
    Cubuk et al. 2019, which BigNAS trains with) or ``"randaugment"`` (``randaugment_n`` ops at magnitude
    ``randaugment_m``; MENAS retraining). Evaluation (:meth:`eval_batch`): resize the shorter side to
    ``round(size / crop_fraction)`` and crop the centre ``size`` x ``size`` (0.875: 256 -> 224), deterministic.

    Each image is augmented on its own (kornia's AutoAugment / RandAugment pick one sub-policy per *call*, so a
    batched call would give every image of a batch the same ops) with kornia's random draws taken from a forked
    torch RNG seeded with that image's seed: the result depends only on (image, seed), not on the worker, the
    process or the global RNG, which stays untouched. In-memory batches without a policy take the crops in one
    batched call (:meth:`crop_batch`, seeded per batch; per-image calls cost ~2 ms each in kornia's overhead).
    Horizontal flip stays a batch op (:class:`BatchTransform`).
    """

    size: int
    rrc: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    auto_augment: str = "none"
    randaugment_n: int = 2
    randaugment_m: int = 9
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise InvalidValue("resolution", self.size, "a positive int")
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise InvalidValue("data.rrc_scale", self.scale, "(low, high) with 0 < low <= high <= 1")
        lo, hi = self.ratio
        if not 0.0 < lo <= hi:
            raise InvalidValue("data.rrc_ratio", self.ratio, "(low, high) with 0 < low <= high")
        if self.auto_augment not in AUTO_AUGMENTS:
            raise InvalidValue("data.auto_augment", self.auto_augment, AUTO_AUGMENTS)
        if not 0.0 < self.crop_fraction <= 1.0:
            raise InvalidValue("data.eval_crop_fraction", self.crop_fraction, "a float in (0, 1]")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise InvalidValue("data.interpolation", self.interpolation, "'bilinear', 'bicubic' or 'nearest' with "
                               "random_resized_crop / streaming")

    @property
    def random(self) -> bool:
        return self.rrc or self.auto_augment != "none"

    def _modules(self) -> tuple[Any, Any]:
        cached = self.__dict__.get("_cache")
        if cached is None:
            import kornia.augmentation as K
            from kornia.augmentation import auto

            crop = (K.RandomResizedCrop((self.size, self.size), scale=self.scale, ratio=self.ratio,
                                        resample=self.interpolation, align_corners=False) if self.rrc else None)
            policy = None
            if self.auto_augment == "autoaugment":
                policy = auto.AutoAugment("imagenet")
            elif self.auto_augment == "randaugment":
                policy = auto.RandAugment(n=self.randaugment_n, m=self.randaugment_m)
            cached = (crop, policy)
            object.__setattr__(self, "_cache", cached)
        return cached

    def prepare(self) -> None:
        """Build the kornia modules now (forked DataLoader workers then inherit them instead of each importing
        kornia, which takes seconds)."""
        self._modules()

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers rebuild the kornia modules themselves
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        """Resize the shorter side to ``size / crop_fraction`` (aspect kept; kornia, antialiased), crop the centre
        ``size`` x ``size``."""
        from kornia.geometry.transform import resize as kresize

        short = max(self.size, int(round(self.size / self.crop_fraction)))
        if min(x.shape[-2:]) != short:
            x = kresize(x, short, interpolation=self.interpolation, side="short",
                        antialias=self.interpolation != "nearest",
                        align_corners=False if self.interpolation != "nearest" else None)
        h, w = x.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return x[..., top:top + self.size, left:left + self.size]

    @staticmethod
    def _to_uint8(x: torch.Tensor) -> torch.Tensor:
        return x.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic resize-shorter-side + centre crop of an NCHW ``uint8`` batch (all images the same size)."""
        return self._to_uint8(self._centre(images.float().div_(255.0)))

    def train_one(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        """One ``uint8`` CHW image -> its training crop (``uint8`` C x size x size), random draws from ``seed``."""
        crop, policy = self._modules()
        x = image.unsqueeze(0).float().div_(255.0)
        with torch.random.fork_rng(devices=[]):  # kornia draws from the CPU default generator: seed a fork of it
            torch.default_generator.manual_seed(_seed_of(seed))
            x = crop(x) if crop is not None else self._centre(x)
            if policy is not None:
                c = x.shape[1]
                x = policy(x.expand(-1, 3, -1, -1) if c == 1 else x)  # the policies' colour ops need RGB
                if c == 1:
                    x = x.mean(1, keepdim=True)
        return self._to_uint8(x)[0]

    def crop_batch(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """Random-resized crops of a same-size NCHW ``uint8`` batch in one batched kornia call on the batch's
        device (every image its own crop; the draws come from ``seed``): the fast path of in-memory data without
        an auto-augment policy."""
        crop, _ = self._modules()
        if crop is None:
            return self.eval_batch(images)
        x = images.float().div_(255.0)
        cuda = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.default_generator.manual_seed(_seed_of(seed))
            if cuda:
                torch.cuda.manual_seed(_seed_of(seed))
            x = crop.to(images.device)(x)
        return self._to_uint8(x)

    def train_batch(self, images: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """:meth:`train_one` of every image of an NCHW ``uint8`` batch (on the CPU), one seed each."""
        if len(seeds) != images.shape[0]:
            raise InvalidValue("seeds", len(seeds), [int(images.shape[0])])
        return torch.stack([self.train_one(img, s) for img, s in zip(images.cpu(), seeds)]).to(images.device)
