"""Streaming image folders: lazy decode in DataLoader workers, rank shards, seeded batches, val/ and channels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasforge.data import DataConfig, FileDataset, epoch_order, load_data
from nasforge.errors import InvalidValue


def _folder(root: Path, splits: dict[str, int], *, gray_every: int = 0, seed: int = 0) -> Path:
    """``root/<split>/<class>/<i>.jpg``: ``n`` images per split over classes a, b, c, sizes 20..39, every
    ``gray_every``-th image grayscale."""
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        for i in range(n):
            h, w = (int(v) for v in rng.integers(20, 40, 2))
            gray = gray_every and i % gray_every == 0
            a = rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)
            d = root / split / "abc"[i % 3]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(d / f"{i:04d}.png")
    return root


def test_epoch_order_shards_are_disjoint_and_cover_the_epoch() -> None:
    n, world = 103, 4
    shards = [epoch_order(n, torch.Generator().manual_seed(7), r, world) for r in range(world)]
    idx = [set(s[0]) for s in shards]
    assert all(len(s[0]) == n // world for s in shards)
    assert all(not (idx[a] & idx[b]) for a in range(world) for b in range(a + 1, world))
    full, seeds = epoch_order(n, torch.Generator().manual_seed(7))
    assert set().union(*idx) == set(full[:n // world * world])  # the whole epoch minus the dropped tail
    seed_of = dict(zip(full, seeds))  # every rank gives a sample the seed the single process would
    assert all(seed_of[i] == s for order, ss in shards for i, s in zip(order, ss))


def test_two_ranks_decode_only_their_shard(tmp_path: Path) -> None:
    splits = load_data(DataConfig(source=str(_folder(tmp_path, {"train": 30})), mode="stream", image_size=16,
                                  val_fraction=0.0, test_fraction=0.0, num_workers=0))
    seen, loaders = [], []
    for rank in range(2):
        b = splits.loader("train", 4, seed=3, drop_last=True, rank=rank, world_size=2)
        labels = [y for _, y in b]
        assert len(labels) == len(b) == 3 and b.decoded == 12  # 15 per rank, 3 full batches of 4
        seen.append(b)
        loaders.append(torch.cat(labels))
    single = splits.loader("train", 8, seed=3, drop_last=True)
    assert len(single) == 3 and b.decoded == 12
    # the two ranks' batch k together hold the same examples (labels) as the single process's batch k of 8
    for k, (_, y) in enumerate(single):
        both = torch.cat([loaders[0][4 * k:4 * k + 4], loaders[1][4 * k:4 * k + 4]])
        assert sorted(both.tolist()) == sorted(y.tolist())


def test_same_seed_same_batches_with_two_workers(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"train": 24})
    common = dict(source=str(root), mode="stream", resolution=12, random_resized_crop=True, flip=True,
                  val_fraction=0.0, test_fraction=0.0)

    def epochs(workers: int, seed: int) -> list[torch.Tensor]:
        splits = load_data(DataConfig(num_workers=workers, **common))
        b = splits.loader("train", 5, seed=seed)
        return [torch.cat([x.flatten() for x, _ in b]) for _ in range(2)]

    a, b, zero, other = epochs(2, 1), epochs(0, 1), epochs(0, 1), epochs(0, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # 2 workers: the batches of 0 workers
    assert torch.equal(b[0], zero[0]) and torch.equal(b[1], zero[1])
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], other[0])
    state = torch.get_rng_state()
    epochs(0, 1)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone


def test_val_folder_is_the_validation_split(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"train": 12, "val": 6})
    for mode in ("memory", "stream"):
        splits = load_data(DataConfig(source=str(root), mode=mode, image_size=16, val_fraction=0.5,
                                      test_fraction=0.0))
        assert len(splits.train) == 12 and len(splits.val) == 6 and splits.test is None
        assert splits.info["mode"] == mode
        assert splits.val.classes == ("a", "b", "c") and sorted(splits.val.labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_mixed_gray_and_rgb_get_the_configured_channels(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"train": 9}, gray_every=2)  # the first image is grayscale
    for mode in ("memory", "stream"):
        for channels, want in ((None, 3), (1, 1), (3, 3)):
            if mode == "stream" and channels is None:
                continue
            splits = load_data(DataConfig(source=str(root), mode=mode, image_size=10, channels=channels,
                                          val_fraction=0.0, test_fraction=0.0, num_workers=0))
            x, _ = next(iter(splits.loader("train", 9, seed=0)))
            assert x.shape == (9, want, 10, 10), (mode, channels)
    gray = load_data(DataConfig(source=str(_folder(tmp_path / "g", {"train": 3}, gray_every=1)), image_size=10,
                                val_fraction=0.0, test_fraction=0.0))
    assert gray.input_shape == (1, 10, 10)  # every image grayscale: one channel


def test_auto_mode_streams_large_data_and_bad_mode_errors(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"train": 6})
    small = load_data(DataConfig(source=str(root), image_size=8, test_fraction=0.0, val_fraction=0.0))
    big = load_data(DataConfig(source=str(root), image_size=8, test_fraction=0.0, val_fraction=0.0,
                               memory_limit_mb=1e-4))
    assert small.info["mode"] == "memory" and not small.streaming
    assert big.info["mode"] == "stream" and isinstance(big.train, FileDataset)
    with pytest.raises(InvalidValue, match=r"^data\.mode: got 'stream'; allowed: 'auto' or 'memory' for the "):
        load_data(DataConfig(source="embedded", mode="stream", resolution=28))
    with pytest.raises(InvalidValue, match=r"^data\.resolution: got None; allowed: an int"):
        DataConfig(source=str(root), mode="stream")
    with pytest.raises(InvalidValue, match=r"^data\.mode: got 'disk'"):
        DataConfig(mode="disk")
