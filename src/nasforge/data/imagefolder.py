"""Image-folder datasets: ``root/<class>/<image>`` (or ``root/{train,test}/<class>/<image>``), read with Pillow.

Class indices follow the sorted sub-folder names (the usual ImageFolder convention), shared by the train and test
splits. Images are converted to one mode for the whole dataset: grayscale (``L``) when the first image is
grayscale, else ``RGB``; with ``image_size`` every image is resized (bilinear) to ``image_size`` x ``image_size``,
otherwise all images must have the same size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .dataset import ArrayDataset, check_same_shape

__all__ = ["IMAGE_SUFFIXES", "detect_image_folder", "read_image_folder", "write_image_folder"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
_SPLITS = ("train", "test")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _class_dirs(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that directly contain at least one image."""
    if not root.is_dir():
        return []
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and _images_in(d)]


def _split_layout(root: Path) -> bool:
    return all(_class_dirs(root / s) for s in _SPLITS if (root / s).is_dir()) and (root / "train").is_dir()


def detect_image_folder(path: Path) -> bool:
    """True for a folder of class sub-folders of images, or a folder with ``train/`` (and ``test/``) of those."""
    return path.is_dir() and (bool(_class_dirs(path)) or (_split_layout(path) and bool(_class_dirs(path / "train"))))


def _load_image(path: Path, mode: str | None, image_size: int | None) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as im:
            mode = mode or ("L" if im.mode in _GRAY_MODES else "RGB")
            im = im.convert(mode)
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8), mode
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image {str(path)!r}: cannot be read ({type(exc).__name__})") from None


def _read_split(root: Path, classes: list[str], image_size: int | None, name: str) -> ArrayDataset:
    arrays, labels, mode, shape = [], [], None, None
    for label, cls in enumerate(classes):
        folder = root / cls
        for f in (_images_in(folder) if folder.is_dir() else []):
            a, mode = _load_image(f, mode, image_size)
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                raise DataError(f"image {str(f)!r}: size {a.shape[1]}x{a.shape[0]}; allowed: {shape[1]}x{shape[0]} "
                                "like the first image (or set image_size to resize)")
            arrays.append(a)
            labels.append(label)
    if not arrays:
        raise DataError(f"image folder {str(root)!r}: no images; allowed: files {', '.join(sorted(IMAGE_SUFFIXES))}")
    x = np.stack(arrays)
    return ArrayDataset(x, np.asarray(labels, np.int64), classes=classes, layout="NHW" if x.ndim == 3 else "NHWC",
                        name=name)


def read_image_folder(path: Path, image_size: int | None = None) -> dict[str, ArrayDataset]:
    """Read ``{"all"}`` from ``root/<class>/*`` or ``{"train", "test"}`` from ``root/{train,test}/<class>/*``."""
    if not detect_image_folder(path):
        raise DataError(f"image folder {str(path)!r}: no class sub-folders with images; allowed: root/<class>/<image>"
                        " or root/{train,test}/<class>/<image>")
    if _split_layout(path) and not _class_dirs(path):
        roots = {s: path / s for s in _SPLITS if (path / s).is_dir()}
    else:
        roots = {"all": path}
    classes = sorted({d.name for r in roots.values() for d in _class_dirs(r)})
    return check_same_shape({s: _read_split(r, classes, image_size, s) for s, r in roots.items()})


def write_image_folder(path: Path, splits: Mapping[str, ArrayDataset]) -> None:
    """Write each image as a lossless PNG under ``path/<class>/`` (``{"all"}``) or ``path/<split>/<class>/``."""
    if not splits or ("all" in splits and len(splits) > 1) or not set(splits) <= {"all", *_SPLITS}:
        raise DataError(f"image-folder writer: splits {sorted(splits)}; allowed: 'all', or 'train' and/or 'test'")
    for split, ds in splits.items():
        bad = [c for c in ds.classes if not c or "/" in c or "\\" in c or c.startswith(".")]
        if bad:
            raise DataError(f"image-folder writer: class name {bad[0]!r}; allowed: names usable as folder names")
        root = path if split == "all" else path / split
        x, y = ds.numpy("NHW" if ds.input_shape[0] == 1 else "NHWC")
        for i, (img, label) in enumerate(zip(x, y)):
            folder = root / ds.classes[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i:06d}.png")
