"""Datasets as in-memory ``uint8`` tensors or streamed image files, file-format readers and augmentation.

>>> from nasforge.data import DataConfig, load_data
>>> splits = load_data(DataConfig(source="embedded", limit=2000, crop_padding=2, flip=True))
>>> splits.input_shape, splits.num_classes
((1, 28, 28), 10)
>>> for x, y in splits.loader("train", batch_size=64, seed=0):  # float32 NCHW on the device, int64 labels
...     break
"""
from .augment import AUTO_AUGMENTS, INTERPOLATIONS, BatchTransform, ImageAugment, random_crop_flip, resize
from .dataset import ArrayDataset, allocate, split_indices
from .formats import FORMATS, Format, detect_format, get_format, read_idx, write_idx
from .load import (
                   FASHION_MNIST_CLASSES,
                   SOURCES,
                   DataConfig,
                   DataSplits,
                   embedded_path,
                   list_formats,
                   load_data,
                   load_dataset,
)
from .loader import Batches, make_generator
from .stream import FileDataset, LoaderOptions, StreamLoader, epoch_order

__all__ = [
    "ArrayDataset", "split_indices", "allocate",
    "BatchTransform", "random_crop_flip", "resize", "INTERPOLATIONS",
    "Batches", "make_generator", "ImageAugment", "AUTO_AUGMENTS",
    "FileDataset", "LoaderOptions", "StreamLoader", "epoch_order",
    "Format", "FORMATS", "detect_format", "get_format", "read_idx", "write_idx",
    "DataConfig", "DataSplits", "load_data", "load_dataset", "list_formats", "SOURCES", "FASHION_MNIST_CLASSES",
    "embedded_path",
]
