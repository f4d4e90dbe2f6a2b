"""ArrayDataset validation, layouts, statistics and seeded stratified splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge.data import ArrayDataset, allocate, split_indices
from nasforge.errors import DataError, InvalidValue


def _toy(n: int = 60, c: int = 3, h: int = 5, w: int = 4, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8), np.arange(n) % k


def test_layouts_store_nchw() -> None:
    x, y = _toy()
    nhwc = ArrayDataset(x, y, layout="NHWC")
    nchw = ArrayDataset(x.transpose(0, 3, 1, 2), y, layout="NCHW")
    assert nhwc.input_shape == (3, 5, 4) and nhwc.images.is_contiguous()
    assert nhwc.equal(nchw)
    assert nhwc.images[7, 2, 1, 3] == x[7, 1, 3, 2]
    assert np.array_equal(nhwc.numpy("NHWC")[0], x)
    gray = ArrayDataset(x[..., 0], y, layout="NHW")
    assert gray.input_shape == (1, 5, 4) and np.array_equal(gray.numpy("NHW")[0], x[..., 0])
    assert gray.labels.dtype == torch.int64 and gray.num_classes == 3
    assert gray.classes == ("0", "1", "2")


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_images_are_copied_not_aliased(layout: str) -> None:
    """Writing to the caller's arrays afterwards changes nothing in the dataset, in every layout (NCHW input is
    already in the stored layout: a zero-copy torch.from_numpy would alias it)."""
    x, y = _toy()
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    ds = ArrayDataset(x, y, layout=layout)
    images, labels = ds.images.clone(), ds.labels.clone()
    x[:] = 0
    y[:] = 0
    assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
    assert images.flatten(1).sum(1).min() > 0 and labels.max() == 2  # the writes above would have shown


@pytest.mark.parametrize("kwargs, field", [
    ({"num_classes": 2}, "label"),
    ({"classes": ["a", "b"]}, "label"),
    ({"classes": ["a", "b", "c"], "num_classes": 4}, "num_classes"),
    ({"layout": "HWC"}, "layout"),
])
def test_bad_metadata_names_the_field(kwargs: dict, field: str) -> None:
    x, y = _toy()
    with pytest.raises(InvalidValue) as err:
        ArrayDataset(x, y, **{"layout": "NHWC", **kwargs})
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_bad_arrays_raise_data_errors() -> None:
    x, y = _toy()
    with pytest.raises(DataError, match="dtype float32; allowed: uint8"):
        ArrayDataset(x.astype(np.float32), y, layout="NHWC")
    with pytest.raises(DataError, match=r"shape \(60, 5, 4\) for layout NHWC"):
        ArrayDataset(x[..., 0], y, layout="NHWC")
    with pytest.raises(DataError, match=r"labels.*shape \(59,\); allowed: \(60,\)"):
        ArrayDataset(x, y[:-1], layout="NHWC")
    with pytest.raises(DataError, match="labels.*dtype float64"):
        ArrayDataset(x, y.astype(float), layout="NHWC")
    with pytest.raises(InvalidValue, match="label: got -1"):
        ArrayDataset(x, y - 1, layout="NHWC")


def test_channel_stats_match_numpy() -> None:
    x, y = _toy(n=40, c=3)
    mean, std = ArrayDataset(x, y, layout="NHWC").channel_stats()
    f = x.astype(np.float64) / 255
    assert np.allclose(mean, f.mean(axis=(0, 1, 2)), atol=1e-12)
    assert np.allclose(std, f.std(axis=(0, 1, 2)), atol=1e-12)


def test_subset_and_class_counts() -> None:
    x, y = _toy(k=4)
    ds = ArrayDataset(x, y, layout="NHWC", classes=["a", "b", "c", "d"])
    sub = ds.subset([3, 0, 7], name="s")
    assert len(sub) == 3 and sub.classes == ds.classes and sub.name == "s"
    assert torch.equal(sub.images[0], ds.images[3]) and sub.labels.tolist() == [3, 0, 3]
    assert sub.class_counts().tolist() == [1, 0, 0, 2]
    with pytest.raises(InvalidValue, match="indices"):
        ds.subset([60])


def test_allocate_is_exact_and_proportional() -> None:
    counts = np.array([50, 30, 20, 1])
    for k in range(0, 102):
        a = allocate(counts, k)
        assert a.sum() == k and np.all(a <= counts) and np.all(a >= 0)
        assert np.all(np.abs(a - counts * k / counts.sum()) < 1 + 1e-9)
    with pytest.raises(InvalidValue, match="split size"):
        allocate(counts, 102)


@pytest.mark.parametrize("stratify", [True, False])
def test_split_indices_disjoint_cover_deterministic(stratify: bool) -> None:
    labels = np.repeat(np.arange(5), [100, 40, 30, 20, 10])
    parts = split_indices(labels, [40, 20], np.random.default_rng(3), stratify=stratify)
    again = split_indices(labels, [40, 20], np.random.default_rng(3), stratify=stratify)
    other = split_indices(labels, [40, 20], np.random.default_rng(4), stratify=stratify)
    assert [len(p) for p in parts] == [40, 20, 140]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(200))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))
    if stratify:  # every part keeps the class shares (within one example per class)
        for p in parts:
            share = np.bincount(labels[p], minlength=5) / len(p)
            assert np.all(np.abs(share * len(p) - np.array([100, 40, 30, 20, 10]) / 200 * len(p)) <= 1)


def test_split_indices_rejects_too_large() -> None:
    with pytest.raises(InvalidValue, match="split sizes"):
        split_indices(np.zeros(10, int), [6, 5], np.random.default_rng(0))


def test_allocate_breaks_ties_randomly() -> None:
    counts = np.full(10, 5)
    picks = {int(np.flatnonzero(allocate(counts, 1, np.random.default_rng(s)))[0]) for s in range(30)}
    assert len(picks) > 3 and allocate(counts, 1).tolist() == [1] + [0] * 9
