"""Image-folder datasets: ``root/<class>/<image>`` (or ``root/{train,val,test}/<class>/<image>``), read with Pillow.

Class indices follow the sorted sub-folder names (the usual ImageFolder convention), shared by all splits; a
``val/`` folder is the validation split (ImageNet's layout). Every image is converted to ``channels`` channels
(1: ``L``, 3: ``RGB``; CMYK, palette and 16-bit images too); ``channels=None`` gives 1 when every image is
grayscale and 3 otherwise (decided over all images, not by the first one). With ``image_size`` every image is
resized (bilinear) to ``image_size`` x ``image_size``, otherwise all images must have the same size.
:func:`image_folder_files` lists the same splits as file lists for streaming (:mod:`nasforge.data.stream`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, InvalidValue
from .dataset import ArrayDataset, check_same_shape
from .stream import FileDataset, list_image_files

__all__ = ["IMAGE_SUFFIXES", "detect_image_folder", "read_image_folder", "write_image_folder", "image_folder_files",
           "image_folder_roots"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
_SPLITS = ("train", "val", "test")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _has_image(folder: Path) -> bool:
    """Whether ``folder`` directly holds an image file (stops at the first: cheap on ImageNet-sized folders)."""
    with os.scandir(folder) as it:
        return any(os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file() for e in it)


def _class_dirs(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that directly contain at least one image."""
    if not root.is_dir():
        return []
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and _has_image(d)]


def _split_layout(root: Path) -> bool:
    return all(_class_dirs(root / s) for s in _SPLITS if (root / s).is_dir()) and (root / "train").is_dir()


def detect_image_folder(path: Path) -> bool:
    """True for a folder of class sub-folders of images, or a folder with ``train/`` (and ``test/``) of those."""
    return path.is_dir() and (bool(_class_dirs(path)) or (_split_layout(path) and bool(_class_dirs(path / "train"))))


def _load_image(path: Path, mode: str | None, image_size: int | None) -> tuple[np.ndarray, str]:
    """The image in ``mode`` (``None``: ``L`` for a grayscale file, else ``RGB``) and the mode used."""
    try:
        with Image.open(path) as im:
            mode = mode or ("L" if im.mode in _GRAY_MODES else "RGB")
            im = im.convert("RGBA").convert(mode) if im.mode == "P" else im.convert(mode)
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8), mode
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image {str(path)!r}: cannot be read ({type(exc).__name__})") from None


def _read_split(root: Path, classes: list[str], image_size: int | None, name: str,
                mode: str | None) -> ArrayDataset:
    arrays, labels, shape = [], [], None
    for label, cls in enumerate(classes):
        folder = root / cls
        for f in (_images_in(folder) if folder.is_dir() else []):
            a, _ = _load_image(f, mode, image_size)
            if shape is None:
                shape = a.shape[:2]
            elif a.shape[:2] != shape:
                raise DataError(f"image {str(f)!r}: size {a.shape[1]}x{a.shape[0]}; allowed: {shape[1]}x{shape[0]} "
                                "like the first image (or set image_size to resize)")
            arrays.append(a)
            labels.append(label)
    if not arrays:
        raise DataError(f"image folder {str(root)!r}: no images; allowed: files {', '.join(sorted(IMAGE_SUFFIXES))}")
    if mode is None and any(a.ndim == 3 for a in arrays):  # mixed grayscale / colour: RGB (L -> RGB replicates)
        arrays = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    x = np.stack(arrays)
    return ArrayDataset(x, np.asarray(labels, np.int64), classes=classes, layout="NHW" if x.ndim == 3 else "NHWC",
                        name=name)


def _mode_of(channels: int | None) -> str | None:
    if channels is None:
        return None
    if channels not in (1, 3):
        raise InvalidValue("data.channels", channels, "1 (grayscale), 3 (RGB) or null (1 if every image is grayscale)")
    return "L" if channels == 1 else "RGB"


def image_folder_roots(path: Path) -> tuple[dict[str, Path], list[str]]:
    """``({split: folder}, classes)``: ``{"all"}`` for ``root/<class>/*``, else the present ones of
    ``train`` / ``val`` / ``test``; classes are the sorted union of every split's class folders."""
    if not detect_image_folder(path):
        raise DataError(f"image folder {str(path)!r}: no class sub-folders with images; allowed: root/<class>/<image>"
                        " or root/{train,val,test}/<class>/<image>")
    if _split_layout(path) and not _class_dirs(path):
        roots = {s: path / s for s in _SPLITS if (path / s).is_dir()}
    else:
        roots = {"all": path}
    return roots, sorted({d.name for r in roots.values() for d in _class_dirs(r)})


def read_image_folder(path: Path, image_size: int | None = None, channels: int | None = None
                      ) -> dict[str, ArrayDataset]:
    """Read ``{"all"}`` from ``root/<class>/*`` or ``{"train", "val", "test"}`` (those present) from
    ``root/{train,val,test}/<class>/*``, every image in ``channels`` channels."""
    mode = _mode_of(channels)
    roots, classes = image_folder_roots(path)
    splits = {s: _read_split(r, classes, image_size, s, mode) for s, r in roots.items()}
    if mode is None and len({d.input_shape[0] for d in splits.values()}) > 1:  # one split all grayscale
        splits = {s: _read_split(r, classes, image_size, s, "RGB") if splits[s].input_shape[0] == 1 else splits[s]
                  for s, r in roots.items()}
    return check_same_shape(splits)


def image_folder_files(path: Path, image_size: int | None = None, channels: int | None = None
                       ) -> dict[str, FileDataset]:
    """The splits of :func:`read_image_folder` as file lists (nothing decoded); ``channels=None`` means 3 here
    (telling whether every image is grayscale would mean opening every file)."""
    mode = _mode_of(channels)
    roots, classes = image_folder_roots(path)
    out = {}
    for split, root in roots.items():
        files, labels = list_image_files(root, classes, IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"image folder {str(root)!r}: no images; allowed: files "
                            f"{', '.join(sorted(IMAGE_SUFFIXES))}")
        out[split] = FileDataset(root, files, labels, classes=classes, channels=1 if mode == "L" else 3,
                                 image_size=image_size, name=split)
    return out


def count_images(path: Path) -> tuple[int, tuple[int, int] | None]:
    """Number of image files of the folder's splits and the ``(width, height)`` of the first one (header only)."""
    roots, classes = image_folder_roots(path)
    n, first = 0, None
    for root in roots.values():
        files, _ = list_image_files(root, classes, IMAGE_SUFFIXES)
        n += len(files)
        if first is None and files:
            try:
                with Image.open(root / files[0]) as im:
                    first = im.size
            except (UnidentifiedImageError, OSError):
                first = None
    return n, first


def write_image_folder(path: Path, splits: Mapping[str, ArrayDataset]) -> None:
    """Write each image as a lossless PNG under ``path/<class>/`` (``{"all"}``) or ``path/<split>/<class>/``."""
    if not splits or ("all" in splits and len(splits) > 1) or not set(splits) <= {"all", *_SPLITS}:
        raise DataError(f"image-folder writer: splits {sorted(splits)}; allowed: 'all', or some of 'train', 'val', "
                        "'test'")
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
