"""One entry point for data: ``load_data(DataConfig(...)) -> DataSplits(train, val, test)``.

``source`` is a known name (:data:`SOURCES`: the embedded Fashion-MNIST test split that ships with nasforge,
scikit-learn's digits, Debian's Fashion-MNIST) or a path whose format is detected (:mod:`nasforge.data.formats`).
The pool of training examples is split, seeded and stratified by default, into train and validation subsets (and a
test subset when the source has no test split of its own), as DCNAS (Sec. 4.1) and PAD-NAS (Sec. 4.1) carve a
class-balanced validation set out of ImageNet's training set and test on the official validation set; ``limit``
is MENAS's per-class subsample of the search data ("Experimental Details": 10% of each class). Normalisation
statistics come from the training subset; the seed and the sizes are recorded in :attr:`DataSplits.info`.

>>> splits = load_data(DataConfig(source="embedded", limit=2000, crop_padding=2))
>>> for x, y in splits.loader("train", 64, seed=0): ...
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

import numpy as np
import torch
from pydantic import ConfigDict, Field, ValidationError, field_validator

from ..errors import DataError, InvalidValue
from ..schema import ConfigModel
from .augment import BatchTransform, ImageAugment
from .dataset import ArrayDataset, split_indices
from .formats import (
    FORMATS,
    Splits,
    detect_format,
    get_format,
    read_idx_folder,
    resize_dataset,
)
from .imagefolder import count_images, image_folder_files, read_image_folder
from .loader import Batches
from .stream import FileDataset, LoaderOptions

__all__ = ["DataConfig", "DataSplits", "load_data", "load_dataset", "SOURCES", "FASHION_MNIST_CLASSES",
           "embedded_path", "list_formats"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLIT_NAMES = ("train", "val", "test")


class DataConfig(ConfigModel):
    """Where the data comes from, how it is split and how batches are augmented.

    Fractions are of the training pool (the source's training split, or all of it when it has only one split):
    ``val_fraction`` goes to validation; ``test_fraction`` to test only when the source has no test split.
    ``limit`` caps each source split (stratified subsample) before splitting. ``image_size`` resizes the stored
    images once at load time; ``resolution`` resizes batches (BigNAS's elastic resolution). ``crop_padding`` /
    ``flip`` are the training augmentation; ``mean`` / ``std`` default to the training subset's statistics.

    Large data: ``mode`` ``memory`` decodes every split into one ``uint8`` tensor; ``stream`` (image folders only)
    decodes each image when a batch needs it, in ``num_workers`` ``DataLoader`` workers (``pin_memory``: default on
    CUDA; ``persistent_workers``; ``prefetch_factor`` batches per worker, default 2); ``auto`` streams when the
    decoded images would take more than ``memory_limit_mb``. ``channels``: every image converted to 1 (grayscale)
    or 3 (RGB); ``None``: 1 if every image is grayscale, else 3 (streaming: 3). Streaming needs ``resolution`` or
    ``image_size`` (images differ in size). Streamed normalisation statistics are estimated from 256 images.

    Papers' augmentations (kornia, per image; :class:`~nasforge.data.augment.ImageAugment`):
    ``random_resized_crop`` (Inception crop of ``rrc_scale`` of the area and aspect ratio in ``rrc_ratio``,
    resized to ``resolution``) for training, and resize-shorter-side to ``resolution / eval_crop_fraction`` +
    centre crop for evaluation (also what streamed images get when ``random_resized_crop`` is off);
    ``auto_augment``: ``autoaugment`` (ImageNet policy; BigNAS) or ``randaugment`` (``randaugment_n`` ops at
    magnitude ``randaugment_m``; MENAS retraining).
    """

    model_config = ConfigDict(coerce_numbers_to_str=False)  # on top of ConfigModel's (STRICT)

    source: str = "embedded"
    format: Literal["auto", "idx", "cifar", "npz", "csv", "image-folder"] = "auto"
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0)
    stratify: bool = True
    limit: int | None = Field(None, ge=1)
    image_size: int | None = Field(None, ge=1)
    normalize: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_padding: int = Field(0, ge=0)
    flip: bool = False
    resolution: int | None = Field(None, ge=1)
    interpolation: Literal["bilinear", "bicubic", "nearest", "area"] = "bilinear"
    mode: Literal["auto", "memory", "stream"] = "auto"
    memory_limit_mb: float = Field(2048.0, gt=0)
    channels: Optional[Literal[1, 3]] = None
    num_workers: int = Field(2, ge=0)
    pin_memory: Optional[bool] = None
    persistent_workers: bool = True
    prefetch_factor: Optional[int] = Field(None, ge=1)
    random_resized_crop: bool = False
    rrc_scale: tuple[float, float] = (0.08, 1.0)
    rrc_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    auto_augment: Literal["none", "autoaugment", "randaugment"] = "none"
    randaugment_n: int = Field(2, ge=1)
    randaugment_m: int = Field(9, ge=0, le=30)
    eval_crop_fraction: float = Field(0.875, gt=0, le=1)

    @field_validator("source", mode="before")
    @classmethod
    def _path_to_str(cls, v: Any) -> Any:
        return os.fspath(v) if isinstance(v, os.PathLike) else v

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _invalid(exc) from None
        self.check()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | "DataConfig" | None) -> "DataConfig":
        """Build from a mapping (e.g. the ``data:`` block of a YAML config); errors name the field."""
        if isinstance(data, DataConfig):
            return data
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidValue("data", type(data).__name__, "a mapping of DataConfig fields")
        return cls(**dict(data))

    def require_split(self, split: Literal["val"], why: str) -> None:
        """A one-line error when this config leaves the validation split empty whatever the source holds:
        ``val_fraction`` 0, or too small to give one example of ``limit`` (``why`` says who needs the split). A
        split that turns out empty once the data is read is a :class:`DataError` of :meth:`DataSplits.__getitem__`."""
        if split != "val":
            raise InvalidValue("split", split, ["val"], where="DataConfig.require_split")
        if self.val_fraction == 0:
            raise InvalidValue("data.val_fraction", self.val_fraction, f"a fraction > 0 ({why})")
        if self.limit is not None and round(self.val_fraction * self.limit) < 1:
            raise InvalidValue("data.val_fraction", self.val_fraction, f"a fraction > {0.5 / self.limit:.3g}, "
                               f"giving at least one of data.limit {self.limit} examples ({why})")

    def check(self) -> None:
        """Cross-field rules pydantic's per-field constraints cannot express."""
        if self.val_fraction + self.test_fraction >= 1.0:
            raise InvalidValue("data.val_fraction + data.test_fraction", self.val_fraction + self.test_fraction,
                               "less than 1 (something must be left for training)")
        if (self.mean is None) != (self.std is None):
            raise InvalidValue("data.mean/data.std", (self.mean, self.std), "both given or both omitted")
        if self.std is not None and (not self.std or min(self.std) <= 0):
            raise InvalidValue("data.std", self.std, "one positive float per channel")
        if not 0.0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1.0:
            raise InvalidValue("data.rrc_scale", self.rrc_scale, "(low, high) with 0 < low <= high <= 1")
        if not 0.0 < self.rrc_ratio[0] <= self.rrc_ratio[1]:
            raise InvalidValue("data.rrc_ratio", self.rrc_ratio, "(low, high) with 0 < low <= high")
        if self.mode == "stream" and self.resolution is None and self.image_size is None:
            raise InvalidValue("data.resolution", None, "an int (or set data.image_size) when data.mode is 'stream' "
                                                        "(streamed images differ in size)")

    def loader_options(self) -> LoaderOptions:
        """The ``DataLoader`` settings of streamed splits."""
        return LoaderOptions(num_workers=self.num_workers, pin_memory=self.pin_memory,
                             persistent_workers=self.persistent_workers, prefetch_factor=self.prefetch_factor,
                             seed=self.seed)


def _invalid(exc: ValidationError) -> InvalidValue:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "data"
    if err.get("type") == "extra_forbidden":
        fields = ", ".join(DataConfig.model_fields)
        return InvalidValue(f"data.{loc}", err.get("input"), f"a DataConfig field: {fields}")
    msg = str(err.get("msg", "a valid value"))
    for head in ("Input should be ", "Value error, "):
        msg = msg.removeprefix(head)
    return InvalidValue(f"data.{loc}", err.get("input"), msg)


# ================================================================================================= known sources
def embedded_path() -> Path:
    """Folder of the embedded Fashion-MNIST test split shipped as package data."""
    return Path(str(files("nasforge").joinpath("assets", "fashion_mnist")))


def _with_classes(splits: Splits, classes: tuple[str, ...]) -> Splits:
    return {s: ArrayDataset(d.images, d.labels, classes=classes, name=d.name,
                            source_index=d.source_index) for s, d in splits.items()}


def _embedded(image_size: int | None) -> Splits:
    folder = embedded_path()
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        raise DataError(f"embedded dataset: {str(folder)!r} lacks t10k-images-idx3-ubyte.gz; reinstall nasforge")
    return _with_classes(read_idx_folder(folder, image_size), FASHION_MNIST_CLASSES)


def _debian_fashion_mnist(image_size: int | None) -> Splits:
    if not DEBIAN_FASHION_MNIST.is_dir():
        raise DataError(f"data.source 'fashion-mnist': {str(DEBIAN_FASHION_MNIST)!r} does not exist; allowed: "
                        "`apt-get install dataset-fashion-mnist`, or a path to the folder of IDX files")
    return _with_classes(read_idx_folder(DEBIAN_FASHION_MNIST, image_size), FASHION_MNIST_CLASSES)


def _digits(image_size: int | None) -> Splits:
    """scikit-learn's 8x8 digits (UCI; 1,797 images, pixel counts 0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    ds = ArrayDataset(images, bunch.target, classes=[str(c) for c in bunch.target_names], layout="NHW",
                      name="digits")
    return {"all": resize_dataset(ds, image_size) if image_size else ds}


#: known source names -> loader of their raw splits (``image_size`` -> ``{split: ArrayDataset}``)
SOURCES: dict[str, Callable[[int | None], Splits]] = {
    "embedded": _embedded,
    "fashion-mnist-10k": _embedded,
    "fashion-mnist": _debian_fashion_mnist,
    "digits": _digits,
}


def _read_source(cfg: DataConfig) -> tuple[Splits, dict[str, Any]]:
    if cfg.source in SOURCES:
        if cfg.mode == "stream":
            raise InvalidValue("data.mode", "stream", f"'auto' or 'memory' for the built-in source {cfg.source!r}")
        return SOURCES[cfg.source](cfg.image_size), {"source": cfg.source, "format": "builtin", "mode": "memory"}
    path = Path(cfg.source).expanduser()
    if not path.exists():
        allowed = f"a known name ({', '.join(SOURCES)}) or an existing file or folder"
        if "/" in cfg.source or "\\" in cfg.source or path.suffix:
            raise DataError(f"data.source: path {cfg.source!r} does not exist; allowed: {allowed}")
        raise InvalidValue("data.source", cfg.source, allowed)
    fmt = detect_format(path) if cfg.format == "auto" else get_format(cfg.format)
    info: dict[str, Any] = {"source": str(path.resolve()), "format": fmt.name}
    if fmt.name != "image-folder":
        if cfg.mode == "stream":
            raise InvalidValue("data.mode", "stream", f"'auto' or 'memory' for format {fmt.name!r} (only image "
                                                      "folders stream)")
        return fmt.read(path, cfg.image_size), {**info, "mode": "memory"}
    mode = cfg.mode
    if mode == "auto":
        n, first = count_images(path)
        h, w = (cfg.image_size, cfg.image_size) if cfg.image_size else ((first[1], first[0]) if first else (0, 0))
        estimate = n * (cfg.channels or 3) * h * w / 2 ** 20
        mode = "stream" if estimate > cfg.memory_limit_mb else "memory"
        info["decoded_mb_estimate"] = round(estimate, 1)
        if mode == "stream" and cfg.resolution is None and cfg.image_size is None:
            raise InvalidValue("data.resolution", None, f"an int (or data.image_size): {n} images of ~{estimate:.0f} "
                               f"MB decoded exceed data.memory_limit_mb {cfg.memory_limit_mb:g}, so they are "
                               "streamed, and streamed images differ in size")
    info["mode"] = mode
    if mode == "stream":
        return dict(image_folder_files(path, cfg.image_size, cfg.channels)), info
    return dict(read_image_folder(path, cfg.image_size, cfg.channels)), info


_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, what Pillow's RGB -> L uses


def _convert_channels(ds: ArrayDataset, channels: int | None) -> ArrayDataset:
    """``ds`` with ``channels`` channels: 1 -> 3 replicates, 3 -> 1 takes the luma (as Pillow does)."""
    have = ds.input_shape[0]
    if channels is None or have == channels:
        return ds
    if have == 1 and channels == 3:
        images = ds.images.expand(-1, 3, -1, -1)
    elif have == 3 and channels == 1:
        w = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        images = (ds.images.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    else:
        raise InvalidValue("data.channels", channels, f"null for data with {have} channels")
    return ArrayDataset(images, ds.labels, num_classes=ds.num_classes, classes=ds.classes, name=ds.name,
                        source_index=ds.source_index)


# ================================================================================================= splitting
Dataset = Any  # ArrayDataset (in memory) or FileDataset (streamed): the same labels / subset interface


def _subsample(ds: Dataset, limit: int | None, rng: np.random.Generator, stratify: bool) -> Dataset:
    if limit is None or len(ds) <= limit:
        return ds
    return ds.subset(split_indices(ds.labels, [limit], rng, stratify=stratify)[0])


def _split(raw: Mapping[str, Dataset], cfg: DataConfig) -> dict[str, Dataset | None]:
    """``{"train", "val", "test"}`` from the source's raw splits, following the rules of :class:`DataConfig`; a
    source's own ``val`` split (an image folder's ``val/``) is the validation split (``val_fraction`` unused)."""
    test = raw.get("test") if len(raw) > 1 else None
    pool = next((raw[k] for k in ("train", "all") if k in raw), next(iter(raw.values())))
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(4)]
    pool = _subsample(pool, cfg.limit, rngs[0], cfg.stratify)
    test = _subsample(test, cfg.limit, rngs[1], cfg.stratify) if test is not None else None
    own_val = raw.get("val") if "train" in raw else None
    own_val = _subsample(own_val, cfg.limit, rngs[3], cfg.stratify) if own_val is not None else None
    n = len(pool)
    n_test = round(cfg.test_fraction * n) if test is None else 0
    n_val = round(cfg.val_fraction * n) if own_val is None else 0
    if n - n_test - n_val < 1:
        raise InvalidValue("data.val_fraction + data.test_fraction", cfg.val_fraction + cfg.test_fraction,
                           f"small enough to leave training examples out of {n}")
    test_idx, val_idx, train_idx = split_indices(pool.labels, [n_test, n_val], rngs[2], stratify=cfg.stratify)
    out: dict[str, Dataset | None] = {"train": pool.subset(train_idx, "train"),
                                           "val": (own_val if own_val is not None else
                                                   pool.subset(val_idx, "val") if n_val else None),
                                           "test": pool.subset(test_idx, "test") if n_test else test}
    return out


@dataclass(frozen=True)
class DataSplits:
    """The train / val / test datasets of one :class:`DataConfig`, with the normalisation statistics in use.

    ``input_shape`` is what a network sees (after ``resolution``); ``info`` records the resolved source, format,
    seed, sizes and statistics (JSON-able, for the trial store).
    """

    train: ArrayDataset | FileDataset
    val: ArrayDataset | FileDataset | None
    test: ArrayDataset | FileDataset | None
    config: DataConfig
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the batches (the network input)."""
        return self.transform().output_shape(self.train.input_shape)

    @property
    def streaming(self) -> bool:
        """Whether the splits are streamed from files (``data.mode`` stream, or auto on a large folder)."""
        return isinstance(self.train, FileDataset)

    def __getitem__(self, split: str) -> ArrayDataset | FileDataset:
        if split not in SPLIT_NAMES:
            raise InvalidValue("split", split, SPLIT_NAMES)
        ds = getattr(self, split)
        if ds is None:
            why = ("data.val_fraction gives no example" if split == "val" else
                   "the source has no test split and data.test_fraction gives no example")
            raise DataError(f"split {split!r}: empty because {why}; allowed: {', '.join(self.available())}")
        return ds

    def available(self) -> list[str]:
        """Names of the non-empty splits."""
        return [s for s in SPLIT_NAMES if getattr(self, s) is not None]

    def transform(self) -> BatchTransform:
        """The batch transform of the config (augmentation applies only when a loader trains)."""
        c = self.config
        sample = None
        if c.random_resized_crop or c.auto_augment != "none" or (self.streaming and c.image_size is None):
            _, h, w = self.train.input_shape
            size = c.resolution or c.image_size or min(h, w)
            sample = ImageAugment(size, rrc=c.random_resized_crop, scale=tuple(c.rrc_scale),
                                  ratio=tuple(c.rrc_ratio), auto_augment=c.auto_augment,
                                  randaugment_n=c.randaugment_n, randaugment_m=c.randaugment_m,
                                  crop_fraction=c.eval_crop_fraction,
                                  interpolation="bilinear" if c.interpolation == "area" else c.interpolation)
        return BatchTransform(mean=self.mean, std=self.std, pad=c.crop_padding, flip=c.flip,
                              resolution=c.resolution, interpolation=c.interpolation, sample=sample)

    def loader(self, split: str = "train", batch_size: int = 128, *, device: str | torch.device = "cpu",
               seed: int | None = None, generator: torch.Generator | None = None, drop_last: bool = False,
               train: bool | None = None, shuffle: bool | None = None, rank: int = 0,
               world_size: int = 1) -> Batches:
        """:class:`Batches` over ``split``; ``train`` (shuffle + augment) defaults to ``split == "train"``.
        ``rank`` / ``world_size`` (streamed data): this process reads only its shard; ``batch_size`` is per rank."""
        train = split == "train" if train is None else train
        return Batches(self[split], batch_size, train=train, transform=self.transform(), drop_last=drop_last,
                       device=device, seed=seed, generator=generator, shuffle=shuffle, rank=rank,
                       world_size=world_size)


def load_data(config: DataConfig | Mapping[str, Any] | None = None) -> DataSplits:
    """Load, split and describe the data of ``config`` (a :class:`DataConfig` or a mapping of its fields)."""
    cfg = DataConfig.from_dict(config)
    cfg.check()
    raw, info = _read_source(cfg)
    if info.get("mode") == "memory" and cfg.channels is not None:
        raw = {s: _convert_channels(d, cfg.channels) for s, d in raw.items()}
    parts = _split(raw, cfg)
    train = parts["train"]
    if train is None:  # _split always returns a training split; keeps type checkers honest
        raise DataError("data: no training examples")
    for d in parts.values():
        if isinstance(d, FileDataset):
            d.options = cfg.loader_options()
    mean, std = None, None
    if cfg.normalize:
        if cfg.mean is not None:
            mean, std = cfg.mean, cfg.std
        elif isinstance(train, FileDataset):
            mean, std = train.channel_stats(seed=cfg.seed)
        else:
            mean, std = train.channel_stats()
        std = tuple(s if s > 0 else 1.0 for s in (std or ()))
        if len(mean) != train.input_shape[0] or len(std) != train.input_shape[0]:
            raise InvalidValue("data.mean/data.std length", len(mean), [train.input_shape[0]])
    info.update(seed=cfg.seed, stratify=cfg.stratify, limit=cfg.limit, num_classes=train.num_classes,
                stored_shape=list(train.input_shape), mean=mean, std=std,
                sizes={s: (len(d) if d is not None else 0) for s, d in parts.items()})
    return DataSplits(train=train, val=parts["val"], test=parts["test"], config=cfg, mean=mean, std=std, info=info)


def load_dataset(source: str = "embedded", *, split: str = "train", **options: Any) -> ArrayDataset:
    """One split (``"train"``, ``"val"`` or ``"test"``) of ``load_data(DataConfig(source=source, **options))``."""
    if split not in SPLIT_NAMES:
        raise InvalidValue("split", split, SPLIT_NAMES)
    return load_data(DataConfig(source=source, **options))[split]


def list_formats() -> list[str]:
    """Names of the file formats that a path source may have."""
    return [f.name for f in FORMATS]
