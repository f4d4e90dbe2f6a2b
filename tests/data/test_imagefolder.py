"""Image folders read with Pillow: class order, modes, resizing, train/test layout and bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasforge.data import detect_format
from nasforge.data.imagefolder import detect_image_folder, read_image_folder
from nasforge.errors import DataError


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(value: int, h: int = 6, w: int = 5) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = value, 255 - value, np.arange(w, dtype=np.uint8)[None, :]
    return a


def test_classes_sorted_and_pixels_exact(tmp_path: Path) -> None:
    _save(tmp_path / "zebra" / "a.png", _rgb(10))
    _save(tmp_path / "ant" / "b.png", _rgb(20))
    _save(tmp_path / "ant" / "c.bmp", _rgb(30))
    (tmp_path / "ant" / "readme.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    assert detect_image_folder(tmp_path) and detect_format(tmp_path).name == "image-folder"
    ds = read_image_folder(tmp_path)["all"]
    assert ds.classes == ("ant", "zebra") and ds.labels.tolist() == [0, 0, 1]
    assert ds.input_shape == (3, 6, 5)
    assert ds.numpy("NHWC")[0][1].tolist() == _rgb(30).tolist()  # sorted file names: b.png, c.bmp


def test_grayscale_and_resize(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "0.png", np.full((10, 12), 100, np.uint8))
    _save(tmp_path / "b" / "1.png", np.full((7, 7), 200, np.uint8))
    with pytest.raises(DataError, match=r"size 7x7; allowed: 12x10 like the first image \(or set image_size"):
        read_image_folder(tmp_path)
    ds = read_image_folder(tmp_path, image_size=8)["all"]
    assert ds.input_shape == (1, 8, 8)
    assert ds.images[0].unique().tolist() == [100] and ds.images[1].unique().tolist() == [200]


def test_train_test_layout_shares_class_indices(tmp_path: Path) -> None:
    _save(tmp_path / "train" / "cat" / "0.png", _rgb(1))
    _save(tmp_path / "train" / "dog" / "0.png", _rgb(2))
    _save(tmp_path / "test" / "dog" / "0.png", _rgb(3))
    splits = read_image_folder(tmp_path)
    assert sorted(splits) == ["test", "train"]
    assert splits["test"].classes == ("cat", "dog") and splits["test"].labels.tolist() == [1]
    assert splits["test"].num_classes == splits["train"].num_classes == 2


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "0.png", _rgb(1))
    (tmp_path / "a" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"1\.png'.*cannot be read"):
        read_image_folder(tmp_path)


def test_not_an_image_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    assert not detect_image_folder(tmp_path)
    with pytest.raises(DataError, match="no class sub-folders with images"):
        read_image_folder(tmp_path)
