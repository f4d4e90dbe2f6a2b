"""The papers' per-image augmentations (kornia): random-resized crop, eval resize + centre crop, AutoAugment,
RandAugment; seeded per image, and wired into the in-memory and streamed loaders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasforge.data import ArrayDataset, BatchTransform, Batches, DataConfig, ImageAugment, load_data
from nasforge.errors import InvalidValue


def _image(h: int = 30, w: int = 50, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_rrc_shapes_and_per_image_seeds() -> None:
    aug = ImageAugment(16, rrc=True)
    img = _image()
    a, b, c = aug.train_one(img, 1), aug.train_one(img, 1), aug.train_one(img, 2)
    assert a.shape == (3, 16, 16) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    batch = aug.train_batch(torch.stack([img, img, img]), [5, 6, 5])
    assert batch.shape == (3, 3, 16, 16) and torch.equal(batch[0], batch[2]) and not torch.equal(batch[0], batch[1])
    gray = ImageAugment(8, auto_augment="randaugment").train_one(_image(c=1), 3)
    assert gray.shape == (1, 8, 8)


def test_rrc_full_scale_square_crop_is_the_whole_image() -> None:
    """scale (1, 1) and ratio (1, 1) on a square image: the crop is the image itself, only resized."""
    img = _image(24, 24)
    out = ImageAugment(24, rrc=True, scale=(1.0, 1.0), ratio=(1.0, 1.0)).train_one(img, 0)
    assert torch.equal(out, img)
    assert not torch.equal(ImageAugment(24, rrc=True, scale=(0.5, 0.5), ratio=(1.0, 1.0)).train_one(img, 0), img)


def test_rrc_crops_keep_aspect_within_ratio() -> None:
    """On a checkerboard of 8-px squares, a square crop (ratio 1) of half the area resized to 32 keeps the squares
    square: as many colour changes per row as per column."""
    board = ((torch.arange(64)[:, None] // 8 + torch.arange(64)[None, :] // 8) % 2 * 255).to(torch.uint8)[None]
    aug = ImageAugment(32, rrc=True, scale=(0.5, 0.5), ratio=(1.0, 1.0), interpolation="nearest")
    out = aug.train_one(board, 4)[0].float()
    # a 45x45 square crop resized to 32: every checker square is ~5.7 px on both axes (aspect kept)
    rows = (out[:, 1:] != out[:, :-1]).sum(1).float().mean()
    cols = (out[1:, :] != out[:-1, :]).sum(0).float().mean()
    assert abs(rows - cols) <= 1.0 and 4 <= rows <= 7


def test_eval_resize_shorter_side_and_centre_crop_is_deterministic() -> None:
    aug = ImageAugment(8, rrc=True, crop_fraction=0.5)  # shorter side -> 16, then the centre 8 x 8
    x = torch.stack([_image(32, 64, seed=1), _image(32, 64, seed=2)])
    a, b = aug.eval_batch(x), aug.eval_batch(x)
    assert a.shape == (2, 3, 8, 8) and torch.equal(a, b)
    marker = torch.zeros(1, 1, 40, 80, dtype=torch.uint8)
    marker[..., 10:30, 20:60] = 255  # the centre square's middle rows: 40 x 80 -> 4 x 8 -> centre 4 x 4
    out = ImageAugment(4, crop_fraction=1.0, interpolation="nearest").eval_batch(marker)[0, 0]
    assert out.shape == (4, 4) and out[1:3].min() == 255 and out[0].max() == 0 and out[3].max() == 0


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_auto_policies_per_image(policy: str) -> None:
    aug = ImageAugment(16, rrc=False, auto_augment=policy, crop_fraction=1.0)
    img = _image(16, 16)
    outs = [aug.train_one(img, s) for s in range(6)]
    assert all(o.shape == (3, 16, 16) for o in outs)
    assert torch.equal(outs[0], aug.train_one(img, 0))
    assert len({o.numpy().tobytes() for o in outs}) > 2  # different images of a batch get different ops


def test_bad_augment_values_are_one_line_errors() -> None:
    with pytest.raises(InvalidValue, match=r"^data\.auto_augment: got 'trivial'"):
        DataConfig(auto_augment="trivial")
    with pytest.raises(InvalidValue, match=r"^data\.rrc_scale: got \(0\.5, 0\.1\); allowed: \(low, high\)"):
        DataConfig(rrc_scale=(0.5, 0.1))
    with pytest.raises(InvalidValue, match=r"^data\.randaugment_m"):
        DataConfig(randaugment_m=31)


def test_memory_loader_applies_rrc_in_training_and_centre_crop_in_eval() -> None:
    x = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ds = ArrayDataset(x, [0, 1, 0, 1, 0, 1])
    t = BatchTransform(sample=ImageAugment(12, rrc=True))
    train = [b for b, _ in Batches(ds, 3, train=True, transform=t, seed=0)]
    again = [b for b, _ in Batches(ds, 3, train=True, transform=t, seed=0)]
    evals = [b for b, _ in Batches(ds, 3, train=False, transform=t)]
    assert train[0].shape == evals[0].shape == (3, 3, 12, 12)
    assert torch.equal(train[0], again[0]) and torch.equal(train[1], again[1])
    assert torch.equal(evals[0], [b for b, _ in Batches(ds, 3, train=False, transform=t)][0])


def test_config_wires_augmentation_into_streamed_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(6):
        d = tmp_path / "train" / "ab"[i % 2]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    splits = load_data(DataConfig(source=str(tmp_path), mode="stream", resolution=12, random_resized_crop=True,
                                  auto_augment="randaugment", val_fraction=0.0, test_fraction=0.0,
                                  num_workers=0))
    assert splits.input_shape == (3, 12, 12) and splits.transform().sample is not None
    x, y = next(iter(splits.loader("train", 6, seed=0)))
    assert x.shape == (6, 3, 12, 12) and x.dtype == torch.float32 and y.shape == (6,)
    e1 = next(iter(splits.loader("train", 6, train=False)))[0]
    e2 = next(iter(splits.loader("train", 6, train=False)))[0]
    assert torch.equal(e1, e2)
