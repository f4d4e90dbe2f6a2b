"""In-memory image classification datasets and seeded, stratified splits.

An :class:`ArrayDataset` holds its images as one compact ``uint8`` tensor in NCHW layout (1 byte per pixel, so
CIFAR-10's 50k training images take 150 MB) and its labels as ``int64``. Conversion to ``float32``, augmentation and
normalisation happen per batch, on the target device (:mod:`nasforge.data.augment`, :mod:`nasforge.data.loader`).

Splits (:func:`split_indices`) are drawn with a caller-supplied ``numpy.random.Generator``; stratified splits keep
each class's share in every part (largest-remainder allocation). That is how the papers build their search data:
DCNAS (Sec. 4.1, "Dataset") and PAD-NAS (Sec. 4.1) hold out exactly 50 images per class of ImageNet's training set
for validation, and MENAS ("Experimental Details") searches on a random 10% of each class.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import DataError, InvalidValue

__all__ = ["ArrayDataset", "LAYOUTS", "split_indices", "allocate"]

#: accepted image layouts and the permutation that turns each into NCHW (``None``: add a channel axis)
LAYOUTS: dict[str, tuple[int, ...] | None] = {"NCHW": (0, 1, 2, 3), "NHWC": (0, 3, 1, 2), "NHW": None}


def _as_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu()
    return torch.from_numpy(np.array(array, copy=True))


def _to_nchw(images: np.ndarray | torch.Tensor, layout: str, name: str) -> torch.Tensor:
    if layout not in LAYOUTS:
        raise InvalidValue("layout", layout, list(LAYOUTS), where=name or None)
    t = _as_tensor(images)
    if t.dtype != torch.uint8:
        raise DataError(f"images of {name or 'dataset'}: dtype {str(t.dtype).replace('torch.', '')}; allowed: uint8 "
                        "(scale floats to 0..255 first)")
    want = 3 if layout == "NHW" else 4
    if t.dim() != want:
        raise DataError(f"images of {name or 'dataset'}: shape {tuple(t.shape)} for layout {layout}; allowed: "
                        f"{want} dimensions ({layout})")
    perm = LAYOUTS[layout]
    t = t.unsqueeze(1) if perm is None else t.permute(*perm)
    return t.contiguous()


def _to_labels(labels: np.ndarray | torch.Tensor | Sequence[int], n: int, name: str) -> torch.Tensor:
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"labels of {name or 'dataset'}: shape {arr.shape}; allowed: ({n},), one per image")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"labels of {name or 'dataset'}: dtype {arr.dtype}; allowed: an integer dtype")
    return torch.from_numpy(arr.astype(np.int64, copy=True))


class ArrayDataset:
    """Images (``uint8``, stored NCHW) with integer labels, ``num_classes`` and optional class names.

    ``ArrayDataset(x, y, layout="NHWC")`` accepts numpy arrays or tensors in NCHW, NHWC or NHW (grayscale) layout.
    ``num_classes`` defaults to ``len(classes)`` or ``max(label) + 1``; labels outside ``0..num_classes-1`` raise
    :class:`~nasforge.errors.InvalidValue`. ``input_shape`` is ``(C, H, W)``, what a search space's ``build`` needs.
    ``source_index`` holds each example's position in the file it was read from (kept through :meth:`subset`), so
    splits can be audited: disjoint splits have disjoint source indices.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor | Sequence[int], *,
                 num_classes: int | None = None, classes: Sequence[str] | None = None, layout: str = "NCHW",
                 name: str = "", source_index: torch.Tensor | np.ndarray | None = None) -> None:
        self.name = name
        self.images = _to_nchw(images, layout, name)
        self.labels = _to_labels(labels, self.images.shape[0], name)
        n = len(self.labels)
        self.source_index = (torch.arange(n) if source_index is None
                             else _to_labels(source_index, n, f"{name or 'dataset'} source_index"))
        self.num_classes = self._resolve_classes(num_classes, classes)
        self.classes: tuple[str, ...] = (tuple(str(c) for c in classes) if classes is not None
                                         else tuple(str(i) for i in range(self.num_classes)))
        if len(self.labels):
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= self.num_classes:
                bad = lo if lo < 0 else hi
                raise InvalidValue("label", bad, f"0..{self.num_classes - 1} (num_classes={self.num_classes})",
                                   where=name or None)

    def _resolve_classes(self, num_classes: int | None, classes: Sequence[str] | None) -> int:
        if classes is not None:
            if num_classes is not None and num_classes != len(classes):
                raise InvalidValue("num_classes", num_classes, f"{len(classes)} (the number of class names)",
                                   where=self.name or None)
            num_classes = len(classes)
        if num_classes is None:
            if not len(self.labels):
                raise InvalidValue("num_classes", None, "a positive int (an empty dataset cannot infer it)",
                                   where=self.name or None)
            num_classes = int(self.labels.max()) + 1
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise InvalidValue("num_classes", num_classes, "a positive int", where=self.name or None)
        return int(num_classes)

    # ------------------------------------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one stored image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    def __repr__(self) -> str:
        return (f"ArrayDataset({self.name or 'unnamed'!r}, n={len(self)}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")

    def subset(self, indices: np.ndarray | torch.Tensor | Sequence[int], name: str | None = None) -> "ArrayDataset":
        """The examples at ``indices`` (a copy), keeping ``num_classes`` and the class names."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise InvalidValue("indices", f"range {int(idx.min())}..{int(idx.max())}", f"0..{len(self) - 1}",
                               where=self.name or None)
        return ArrayDataset(self.images.index_select(0, idx), self.labels.index_select(0, idx),
                            num_classes=self.num_classes, classes=self.classes,
                            name=self.name if name is None else name,
                            source_index=self.source_index.index_select(0, idx))

    def class_counts(self) -> np.ndarray:
        """Number of examples of each class (length ``num_classes``)."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (population) standard deviation of the pixels scaled to ``[0, 1]``.

        Exact and fast: computed from a 256-bin histogram of each channel in float64. These are the statistics the
        usual per-channel normalisation uses (e.g. CIFAR-10 0.4914/0.4822/0.4465, 0.2470/0.2435/0.2616).
        """
        if not len(self):
            raise DataError(f"dataset {self.name or 'unnamed'}: empty; cannot compute channel statistics")
        values = torch.arange(256, dtype=torch.float64) / 255.0
        means, stds = [], []
        for c in range(self.images.shape[1]):
            counts = torch.bincount(self.images[:, c].reshape(-1), minlength=256).to(torch.float64)
            n = counts.sum()
            mean = (counts * values).sum() / n
            var = (counts * (values - mean) ** 2).sum() / n
            means.append(float(mean))
            stds.append(float(var.sqrt()))
        return tuple(means), tuple(stds)

    def numpy(self, layout: str = "NHWC") -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` as numpy arrays, images in ``layout`` (NHWC, NCHW, or NHW for one channel)."""
        if layout == "NCHW":
            return self.images.numpy().copy(), self.labels.numpy().copy()
        if layout == "NHWC":
            return self.images.permute(0, 2, 3, 1).contiguous().numpy(), self.labels.numpy().copy()
        if layout == "NHW" and self.images.shape[1] == 1:
            return self.images[:, 0].contiguous().numpy(), self.labels.numpy().copy()
        allowed = list(LAYOUTS) if self.images.shape[1] == 1 else ["NCHW", "NHWC"]
        raise InvalidValue("layout", layout, allowed, where=self.name or None)

    def equal(self, other: "ArrayDataset") -> bool:
        """Same images, labels, ``num_classes`` and class names (names of the datasets may differ)."""
        return (self.images.shape == other.images.shape and bool(torch.equal(self.images, other.images))
                and bool(torch.equal(self.labels, other.labels)) and self.num_classes == other.num_classes
                and self.classes == other.classes)


def allocate(counts: np.ndarray, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Split ``k`` draws across groups proportionally to ``counts`` (largest-remainder / Hamilton method).

    The result sums to exactly ``k`` and never exceeds ``counts``. Equal remainders are broken by a random order
    drawn from ``rng`` (so a 1-example validation set is not always class 0), or by group index without one.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not 0 <= k <= total:
        raise InvalidValue("split size", k, f"0..{total}")
    if total == 0:
        return np.zeros_like(counts)
    quota = counts * (k / total)
    base = np.minimum(np.floor(quota).astype(np.int64), counts)
    rest = k - int(base.sum())
    tie = rng.permutation(len(counts)) if rng is not None else np.arange(len(counts))
    order = np.lexsort((tie, -np.round(quota - base, 12)))  # largest remainder first
    for i in order:
        if rest == 0:
            break
        if base[i] < counts[i]:
            base[i] += 1
            rest -= 1
    return base


def split_indices(labels: np.ndarray | torch.Tensor, sizes: Sequence[int], rng: np.random.Generator, *,
                  stratify: bool = True) -> list[np.ndarray]:
    """Partition ``range(len(labels))`` into parts of the given ``sizes`` plus the remainder (returned last).

    Parts are disjoint and cover every index; each is sorted. With ``stratify`` every part keeps the class
    proportions (per-class counts by :func:`allocate`, examples drawn uniformly within each class); otherwise the
    parts are slices of one uniform permutation. Deterministic for a given generator state.
    """
    labels = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    n = len(labels)
    if any(int(s) < 0 for s in sizes) or sum(int(s) for s in sizes) > n:
        raise InvalidValue("split sizes", list(sizes), f"non-negative sizes summing to at most {n}")
    if not stratify:
        perm = rng.permutation(n)
        bounds = np.cumsum([0, *[int(s) for s in sizes]])
        parts = [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])] + [perm[bounds[-1]:]]
        return [np.sort(p) for p in parts]
    classes, inverse = np.unique(labels, return_inverse=True)
    pools = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    left = np.array([len(p) for p in pools], dtype=np.int64)
    taken = np.zeros_like(left)
    parts = []
    for size in sizes:
        per_class = allocate(left, int(size), rng)
        parts.append(np.concatenate([p[t:t + m] for p, t, m in zip(pools, taken, per_class)] or [np.zeros(0, int)]))
        taken += per_class
        left -= per_class
    parts.append(np.concatenate([p[t:] for p, t in zip(pools, taken)] or [np.zeros(0, int)]))
    return [np.sort(p).astype(np.int64) for p in parts]


def check_same_shape(splits: dict[str, "ArrayDataset"]) -> dict[str, "ArrayDataset"]:
    """``splits`` unchanged when every non-empty split has the images shape of ``train`` (else of the first split);
    otherwise a :class:`DataError` naming the split, its shape and the allowed one."""
    shapes = {s: d.input_shape for s, d in splits.items() if len(d)}
    ref = shapes.get("train", next(iter(shapes.values()), None))
    for s, shape in shapes.items():
        if shape != ref:
            raise DataError(f"split {s!r}: images {'x'.join(map(str, shape))}; allowed: "
                            f"{'x'.join(map(str, ref))} like the other splits (or set data.image_size to resize all)")
    return splits
