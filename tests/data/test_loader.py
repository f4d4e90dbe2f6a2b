"""Batches: epoch coverage, drop_last, seeding, eval order, device placement and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge.data import ArrayDataset, Batches, BatchTransform
from nasforge.errors import InvalidValue


@pytest.fixture(scope="module")
def ds() -> ArrayDataset:
    # image i is filled with the value i, so a batch row identifies its example
    n = 103
    x = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 6, 6)).copy()
    return ArrayDataset(x, np.arange(n) % 7, layout="NCHW")


def _ids(x: torch.Tensor) -> list[int]:
    return torch.round(x[:, 0, 3, 3] * 255).long().tolist()


def test_training_epoch_covers_each_example_once(ds: ArrayDataset) -> None:
    batches = Batches(ds, 10, train=True, seed=0)
    seen, labels = [], []
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (2, 6, 6)
        seen += _ids(x)
        labels += y.tolist()
    assert len(batches) == 11 and sorted(seen) == list(range(103)) and seen != list(range(103))
    assert labels == [i % 7 for i in seen]  # labels travel with their images


def test_drop_last(ds: ArrayDataset) -> None:
    batches = Batches(ds, 10, train=True, seed=0, drop_last=True)
    sizes = [len(y) for _, y in batches]
    assert len(batches) == 10 and sizes == [10] * 10


def test_seeded_epochs(ds: ArrayDataset) -> None:
    t = BatchTransform(pad=2, flip=True)
    run = lambda b: [torch.cat([x for x, _ in b]) for _ in range(2)]  # noqa: E731 (two epochs)
    a, b = run(Batches(ds, 16, train=True, transform=t, seed=3)), run(Batches(ds, 16, train=True, transform=t, seed=3))
    c = run(Batches(ds, 16, train=True, transform=t, seed=4))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])  # seeds and epochs differ
    g = torch.Generator().manual_seed(3)
    d = run(Batches(ds, 16, train=True, transform=t, generator=g))
    assert all(torch.equal(p, q) for p, q in zip(a, d))


def test_eval_is_ordered_and_unaugmented(ds: ArrayDataset) -> None:
    t = BatchTransform(pad=2, flip=True, resolution=12)
    batches = Batches(ds, 25, train=False, transform=t)
    xs = [x for x, _ in batches]
    assert batches.input_shape == (2, 12, 12) and xs[0].shape == (25, 2, 12, 12)
    full = torch.cat(xs)
    assert torch.allclose(full, (torch.arange(103).float() / 255).view(-1, 1, 1, 1).expand_as(full), atol=1e-6)


def test_device_argument(ds: ArrayDataset) -> None:
    batches = Batches(ds, 50, device=torch.device("cpu"))
    x, y = next(iter(batches))
    assert x.device.type == "cpu" and y.device.type == "cpu" and batches.num_classes == 7


@pytest.mark.parametrize("kwargs, field", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 4, "train": True}, "seed"),
    ({"batch_size": 4, "shuffle": True}, "seed"), ({"batch_size": 4, "seed": -1}, "seed"),
    ({"batch_size": 4, "generator": 3}, "generator"),
])
def test_errors_name_the_field(ds: ArrayDataset, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidValue) as err:
        Batches(ds, **kwargs)
    assert str(err.value).startswith(field)


def test_not_a_dataset() -> None:
    with pytest.raises(InvalidValue, match="dataset"):
        Batches(np.zeros((2, 2)), 1)  # type: ignore[arg-type]
