"""Mini-batches of an :class:`~nasforge.data.dataset.ArrayDataset` on a device, with batched augmentation.

In-memory data needs no ``DataLoader`` workers: the dataset is moved to the device once as ``uint8`` and every
batch is an ``index_select`` plus the whole-batch ops of :class:`~nasforge.data.augment.BatchTransform`. Streamed
data (:class:`~nasforge.data.stream.FileDataset`) goes through a ``DataLoader`` with workers
(:mod:`nasforge.data.stream`). Shuffling and
augmentation draw from one seeded ``torch.Generator``, so a seed fixes every epoch's order and every crop.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..device import resolve_device
from ..errors import InvalidValue
from .augment import BatchTransform
from .dataset import ArrayDataset
from .stream import FileDataset, LoaderOptions, StreamLoader

__all__ = ["Batches", "make_generator"]


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator | None:
    """``generator`` if given, else a new CPU ``torch.Generator`` seeded with ``seed`` (``None`` if neither)."""
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise InvalidValue("generator", type(generator).__name__, "a torch.Generator")
        return generator
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidValue("seed", seed, "an int >= 0")
    return torch.Generator().manual_seed(seed)


class Batches:
    """Iterable of ``(x, y)`` batches: ``x`` float32 NCHW, ``y`` int64, both on ``device``.

    ``train=True`` shuffles (unless ``shuffle=False``) and applies the transform's random crop / flip; evaluation
    (``train=False``) keeps the dataset order and only resizes / normalises. Iterating again starts a new epoch
    drawn from the same generator, so epochs differ but the whole run is reproducible from ``seed``.

    A :class:`~nasforge.data.stream.FileDataset` (streaming mode) is read through a
    :class:`~nasforge.data.stream.StreamLoader` (``DataLoader`` workers, lazy decode) with the same semantics;
    ``rank`` / ``world_size`` then make this process read only its shard of every epoch (``batch_size`` is per
    rank). In-memory datasets are not sharded here (the supernet trainer shards their global batch).

    >>> batches = Batches(ds, 128, train=True, transform=BatchTransform(pad=4, flip=True), seed=0)
    >>> for x, y in batches: ...
    """

    def __init__(self, dataset: ArrayDataset | FileDataset, batch_size: int, *, train: bool = False,
                 transform: BatchTransform | None = None, shuffle: bool | None = None, drop_last: bool = False,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1,
                 options: LoaderOptions | None = None) -> None:
        if not isinstance(dataset, (ArrayDataset, FileDataset)):
            raise InvalidValue("dataset", type(dataset).__name__, "an ArrayDataset or a FileDataset")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidValue("batch_size", batch_size, "a positive int")
        self.dataset = dataset
        self.batch_size = batch_size
        self.train = bool(train)
        self.transform = transform if transform is not None else BatchTransform()
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = bool(drop_last)
        self.device = resolve_device(device)
        self.generator = make_generator(seed, generator)
        if self.generator is None and (self.shuffle or (self.train and self.transform.random)):
            raise InvalidValue("seed", None, "an int seed or a torch.Generator (shuffling / augmentation is random)")
        self.sharded = world_size > 1
        self._stream: StreamLoader | None = None
        if isinstance(dataset, FileDataset):
            self._stream = StreamLoader(dataset, batch_size, train=self.train, transform=self.transform,
                                        shuffle=self.shuffle, drop_last=self.drop_last, device=self.device,
                                        generator=self.generator, options=options, rank=rank,
                                        world_size=world_size)
            return
        if world_size != 1:
            raise InvalidValue("world_size", world_size, "1 for in-memory data (shard the global batch instead)")
        self._images = dataset.images.to(self.device)
        self._labels = dataset.labels.to(self.device)

    @property
    def decoded(self) -> int:
        """Images this process decoded so far (streaming; 0 for in-memory data)."""
        return self._stream.decoded if self._stream is not None else 0

    def __len__(self) -> int:
        if self._stream is not None:
            return len(self._stream)
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the batches' images (after resizing)."""
        return self.transform.output_shape(self.dataset.input_shape)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def _order(self) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle and self.generator is not None:  # __init__ guarantees a generator when shuffling
            return torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.device)
        return torch.arange(n, device=self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._stream is not None:
            yield from self._stream
            return
        order = self._order()
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            images = self._images.index_select(0, idx)
            x = self.transform(images, train=self.train, generator=self.generator)
            yield x, self._labels.index_select(0, idx)

    def __repr__(self) -> str:
        return (f"Batches({self.dataset!r}, batch_size={self.batch_size}, train={self.train}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={str(self.device)!r})")
