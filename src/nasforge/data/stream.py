"""Streaming image datasets: file lists decoded lazily, one image at a time, in ``DataLoader`` workers.

A :class:`FileDataset` is what an :class:`~nasforge.data.dataset.ArrayDataset` is for data that does not fit in
memory (ImageNet: 1.28M JPEGs): the class-sorted list of files (as one compact ``numpy`` byte-string array, so
forked workers do not copy a million Python objects) and their labels, with the same ``labels`` / ``subset`` /
``classes`` / ``num_classes`` / ``input_shape`` interface, so splitting, limits and stratification work unchanged.

:class:`StreamLoader` is the training/evaluation side: a ``torch.utils.data.DataLoader`` over a map-style reader
whose items are ``(index, seed)`` pairs drawn by an epoch sampler in the main process:

* order: a permutation of the dataset from the caller's seeded ``torch.Generator`` (one per epoch), or the dataset
  order for evaluation; with ``world_size > 1`` rank ``r`` reads only ``order[r::world_size]`` of the first
  ``len // world_size * world_size`` entries (``DistributedSampler`` semantics with ``drop_last``), so the ranks'
  shards are disjoint, equal in size, and together are the epoch; nobody builds the global batch;
* augmentation: every sample gets its own seed from the same generator, and the per-image stage
  (:class:`~nasforge.data.augment.ImageAugment`) draws only from that seed, so batches do not depend on the
  number of workers or which worker decoded what; workers are additionally seeded from the run seed
  (``numpy`` / ``random`` / torch, for user transforms).

Each worker decodes with Pillow (JPEG draft mode shrinks large JPEGs while decoding), converts to the configured
channels (``L`` or ``RGB``), runs the per-image stage and returns ``uint8`` ``C x S x S``; the batch is
converted to float, flipped and normalised on the device (:class:`~nasforge.data.augment.BatchTransform`).
"""
from __future__ import annotations

import gc
import os
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, InvalidValue
from .augment import BatchTransform, ImageAugment

__all__ = ["FileDataset", "StreamLoader", "LoaderOptions", "list_image_files", "decode_image", "epoch_order"]

_MODES = {1: "L", 3: "RGB"}


def list_image_files(root: Path, classes: Sequence[str], suffixes: frozenset[str]) -> tuple[list[str], list[int]]:
    """Relative paths ``<class>/<file>`` (sorted) and labels of the images under ``root/<class>/``."""
    rel: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if os.path.splitext(e.name)[1].lower() in suffixes and e.is_file())
        rel.extend(f"{cls}/{n}" for n in names)
        labels.extend([label] * len(names))
    return rel, labels


def decode_image(path: str | Path, channels: int, image_size: int | None = None,
                 min_side: int | None = None) -> np.ndarray:
    """``H x W`` (1 channel) or ``H x W x 3`` ``uint8`` array of the image at ``path`` in ``channels`` channels.

    ``image_size``: resize (bilinear) to a square; ``min_side``: let JPEG decoding shrink the image by a power of
    two as long as its shorter side stays at least ``min_side`` (Pillow's draft mode; what the resize-shorter-side
    + crop pipelines need, for a fraction of the decode time).
    """
    try:
        with Image.open(path) as im:
            if min_side is not None and im.format == "JPEG":
                w, h = im.size
                scale = max(1.0, min(w, h) / min_side)
                im.draft(_MODES[channels], (max(1, int(w / scale)), max(1, int(h / scale))))
            if im.mode != _MODES[channels]:
                im = im.convert("RGBA").convert(_MODES[channels]) if im.mode == "P" else im.convert(_MODES[channels])
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image {str(path)!r}: cannot be read ({type(exc).__name__})") from None


class FileDataset:
    """Image files (``root`` + relative paths) with labels, decoded on demand to ``channels`` channels.

    ``image_size``: every image is resized to that square when decoded (as the in-memory path does);
    ``None``: images keep their size and the loader's per-image stage (resize shorter side + crop, or the
    random-resized crop) makes them square. ``input_shape`` is ``(channels, image_size, image_size)`` (``0`` for
    unknown sides when ``image_size`` is ``None``).
    """

    def __init__(self, root: str | Path, files: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray, *,
                 classes: Sequence[str], channels: int = 3, image_size: int | None = None, name: str = "",
                 source_index: np.ndarray | None = None) -> None:
        if channels not in _MODES:
            raise InvalidValue("data.channels", channels, list(_MODES))
        self.root = str(root)
        self.files = files if isinstance(files, np.ndarray) else np.array(list(files), dtype=np.bytes_)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if len(self.files) != len(self.labels):
            raise DataError(f"dataset {name or 'unnamed'}: {len(self.files)} files, {len(self.labels)} labels")
        self.classes = tuple(str(c) for c in classes)
        self.num_classes = len(self.classes)
        self.channels, self.image_size, self.name = channels, image_size, name
        n = len(self.labels)
        self.source_index = torch.arange(n) if source_index is None else torch.as_tensor(source_index)
        #: DataLoader settings the loaders of this dataset use (set from the data config by ``load_data``)
        self.options = LoaderOptions()

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.files[i].decode())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        s = self.image_size or 0
        return self.channels, s, s

    def __repr__(self) -> str:
        return (f"FileDataset({self.name or 'unnamed'!r}, n={len(self)}, root={self.root!r}, channels={self.channels},"
                f" image_size={self.image_size}, num_classes={self.num_classes})")

    def subset(self, indices: Any, name: str | None = None) -> "FileDataset":
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise InvalidValue("indices", f"range {idx.min()}..{idx.max()}", f"0..{len(self) - 1}",
                               where=self.name or None)
        out = FileDataset(self.root, self.files[idx], self.labels.numpy()[idx], classes=self.classes,
                          channels=self.channels, image_size=self.image_size,
                          name=self.name if name is None else name, source_index=self.source_index.numpy()[idx])
        out.options = self.options
        return out

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def decode(self, i: int, min_side: int | None = None) -> torch.Tensor:
        """Image ``i`` as a ``uint8`` CHW tensor."""
        a = decode_image(self.path(i), self.channels, self.image_size, min_side)
        t = torch.from_numpy(a.copy())
        return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()

    def channel_stats(self, sample: int = 256, seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean / std in ``[0, 1]`` units estimated from ``sample`` images drawn with ``seed`` (decoding
        the whole set for exact statistics is what streaming avoids)."""
        if not len(self):
            raise DataError(f"dataset {self.name or 'unnamed'}: empty; cannot compute channel statistics")
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(len(self), size=min(sample, len(self)), replace=False))
        counts = torch.zeros(self.channels, 256, dtype=torch.float64)
        for i in picks:
            img = self.decode(int(i))
            for c in range(self.channels):
                counts[c] += torch.bincount(img[c].reshape(-1), minlength=256).to(torch.float64)
        values = torch.arange(256, dtype=torch.float64) / 255.0
        means, stds = [], []
        for c in range(self.channels):
            n = counts[c].sum()
            mean = (counts[c] * values).sum() / n
            means.append(float(mean))
            stds.append(float(((counts[c] * (values - mean) ** 2).sum() / n).sqrt()))
        return tuple(means), tuple(stds)


class _Reader(torch.utils.data.Dataset):
    """Map-style dataset of ``(index, seed)`` keys -> ``(uint8 C x S x S, label)``; runs in the workers."""

    def __init__(self, dataset: FileDataset, sample: ImageAugment | None, train: bool) -> None:
        self.dataset, self.sample, self.train = dataset, sample, train
        self.min_side = None
        if sample is not None and not sample.rrc:  # the centre crop needs a shorter side of size / crop_fraction
            self.min_side = int(round(sample.size / sample.crop_fraction))
        self.labels = dataset.labels.numpy()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = key
        img = self.dataset.decode(i, self.min_side)
        if self.sample is not None:
            if self.train and self.sample.random:
                img = self.sample.train_one(img, seed)
            else:
                img = self.sample.eval_batch(img.unsqueeze(0))[0]
        return img, int(self.labels[i])


def epoch_order(n: int, generator: torch.Generator | None, rank: int = 0, world_size: int = 1
                ) -> tuple[list[int], list[int]]:
    """This rank's indices of one epoch and one augmentation seed per index (``DistributedSampler`` semantics with
    ``drop_last``: ``order[rank : n // world_size * world_size : world_size]``). Without a generator: dataset
    order, seeds 0. Every rank draws the whole permutation from the same generator state, then keeps its share."""
    if generator is not None:
        order = torch.randperm(n, generator=generator)
        seeds = torch.randint(0, 2 ** 62, (n,), generator=generator)
    else:
        order, seeds = torch.arange(n), torch.zeros(n, dtype=torch.int64)
    if world_size > 1:
        keep = n // world_size * world_size
        order = order[rank:keep:world_size]
    return order.tolist(), seeds[order].tolist()


class _EpochBatches:
    """Batch sampler: each ``iter`` is one epoch of ``[(index, seed), ...]`` batches of this rank."""

    def __init__(self, owner: "StreamLoader") -> None:
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        o = self.owner
        order, seeds = epoch_order(len(o.dataset), o.generator if o.shuffle or o.random else None, o.rank,
                                   o.world_size)
        if not o.shuffle:  # evaluation-style order with training augmentation (rare): keep dataset order
            pairs = sorted(zip(order, seeds))
            order, seeds = [p[0] for p in pairs], [p[1] for p in pairs]
        b = o.batch_size
        for k in range(len(o)):
            batch = list(zip(order[k * b:(k + 1) * b], seeds[k * b:(k + 1) * b]))
            o.decoded += len(batch)
            yield batch


class LoaderOptions:
    """``DataLoader`` settings of a streaming loader (see :class:`~nasforge.data.DataConfig`)."""

    def __init__(self, num_workers: int = 2, pin_memory: bool | None = None, persistent_workers: bool = True,
                 prefetch_factor: int | None = None, seed: int = 0) -> None:
        self.num_workers, self.pin_memory = int(num_workers), pin_memory
        self.persistent_workers, self.prefetch_factor, self.seed = bool(persistent_workers), prefetch_factor, seed


def _seed_worker(worker_id: int) -> None:
    """Seed ``random`` and ``numpy`` in a worker from torch's per-worker seed (the DataLoader derives it from its
    seeded generator, i.e. from the run seed). Also ``gc.freeze()`` the objects inherited from the parent: the
    worker's garbage collector then never walks (and so never writes to, copy-on-write) the parent's objects,
    which otherwise makes every worker's private memory creep towards the parent's over a long run."""
    gc.freeze()
    s = torch.initial_seed() % 2 ** 32
    random.seed(s)
    np.random.seed(s)


class StreamLoader:
    """Iterable of ``(x, y)`` batches of a :class:`FileDataset` (float32 NCHW and int64 on ``device``), decoded by a
    ``DataLoader``; the streaming counterpart of :class:`~nasforge.data.loader.Batches` (same arguments, plus
    ``rank`` / ``world_size`` sharding). Each iteration is one epoch; ``decoded`` counts the images this process
    asked its workers for (the evidence that a rank reads only its shard)."""

    def __init__(self, dataset: FileDataset, batch_size: int, *, train: bool, transform: BatchTransform,
                 shuffle: bool, drop_last: bool, device: torch.device, generator: torch.Generator | None,
                 options: LoaderOptions | None = None, rank: int = 0, world_size: int = 1) -> None:
        if dataset.image_size is None and transform.sample is None:
            raise InvalidValue("data.resolution", None, "an int (or data.image_size) when data.mode is 'stream' "
                                                        "(images differ in size)")
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise InvalidValue("rank/world_size", (rank, world_size), "0 <= rank < world_size")
        self.dataset, self.batch_size, self.train, self.transform = dataset, batch_size, train, transform
        self.shuffle, self.drop_last, self.device, self.generator = shuffle, drop_last, device, generator
        self.rank, self.world_size = rank, world_size
        self.random = train and transform.random
        self.options = options or dataset.options
        self.decoded = 0
        self._loader: torch.utils.data.DataLoader | None = None

    def __len__(self) -> int:
        n = len(self.dataset) // self.world_size if self.world_size > 1 else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _make(self) -> torch.utils.data.DataLoader:
        o = self.options
        workers = o.num_workers
        pin = self.device.type == "cuda" if o.pin_memory is None else o.pin_memory
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator)) if self.generator is not None else 0
        extra: dict[str, Any] = {}
        if self.transform.sample is not None and workers > 0:
            self.transform.sample.prepare()  # import kornia and build the modules once, before the workers fork
        if workers > 0:
            extra = dict(persistent_workers=o.persistent_workers, worker_init_fn=_seed_worker,
                         prefetch_factor=o.prefetch_factor or 2)
        return torch.utils.data.DataLoader(
            _Reader(self.dataset, self.transform.sample, self.train), batch_sampler=_EpochBatches(self),
            num_workers=workers, pin_memory=pin, generator=torch.Generator().manual_seed(seed ^ o.seed), **extra)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._loader is None:
            self._loader = self._make()
        for images, labels in self._loader:
            images = images.to(self.device, non_blocking=True)
            x = self.transform(images, train=self.train, generator=self.generator, per_image=False)
            yield x, labels.to(self.device, non_blocking=True)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.transform.output_shape(self.dataset.input_shape)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def __repr__(self) -> str:
        return (f"StreamLoader({self.dataset!r}, batch_size={self.batch_size}, train={self.train}, "
                f"rank={self.rank}/{self.world_size}, workers={self.options.num_workers})")
