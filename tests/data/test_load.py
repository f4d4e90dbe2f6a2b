"""load_data / load_dataset: known names, detected paths, seeded splits, the embedded asset, config errors."""
from __future__ import annotations

import glob
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nasforge
from nasforge.data import DataConfig, DataSplits, embedded_path, load_data, load_dataset
from nasforge.data import load as load_module
from nasforge.data.formats import read_csv
from nasforge.errors import DataError, InvalidValue

REPO = Path(__file__).resolve().parents[2]


def _disjoint(splits: DataSplits) -> bool:
    idx = [set(getattr(splits, s).source_index.tolist()) for s in splits.available()]
    return all(not (a & b) for i, a in enumerate(idx) for b in idx[i + 1:])


# ------------------------------------------------------------------------------------------------ embedded
def test_embedded_asset_matches_provenance() -> None:
    folder = embedded_path()
    table = dict(re.findall(r"\| (t10k-\S+) \| \d+ \| ([0-9a-f]{64}) \|", (folder / "PROVENANCE.md").read_text()))
    assert sorted(table) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name, sha in table.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha


def test_package_data_glob_ships_the_asset() -> None:
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["nasforge"]
    pkg = Path(nasforge.__file__).parent
    shipped = {p for pat in patterns for p in glob.glob(pat, root_dir=pkg, recursive=True)}
    for name in ("PROVENANCE.md", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert f"assets/fashion_mnist/{name}" in shipped


def test_embedded_default_splits() -> None:
    splits = load_data()
    assert splits.info["source"] == "embedded" and splits.info["seed"] == 0
    assert {s: len(getattr(splits, s)) for s in ("train", "val", "test")} == {"train": 7000, "val": 1000, "test": 2000}
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10 and splits.classes[9] == "Ankle boot"
    assert splits.train.class_counts().tolist() == [700] * 10 and splits.val.class_counts().tolist() == [100] * 10
    assert _disjoint(splits)
    assert abs(splits.mean[0] - splits.train.channel_stats()[0][0]) < 1e-12


def test_split_determinism_and_limit() -> None:
    a = load_data({"source": "fashion-mnist-10k", "limit": 2000, "seed": 5})
    b = load_data(DataConfig(source="embedded", limit=2000, seed=5))
    c = load_data(DataConfig(source="embedded", limit=2000, seed=6))
    for s in ("train", "val", "test"):
        assert getattr(a, s).equal(getattr(b, s))
    assert not torch.equal(a.train.source_index, c.train.source_index)
    assert sum(a.info["sizes"].values()) == 2000 and a.info["sizes"] == {"train": 1400, "val": 200, "test": 400}
    assert a.train.class_counts().tolist() == [140] * 10 and _disjoint(a)


def test_random_split_without_stratification() -> None:
    splits = load_data(DataConfig(limit=500, stratify=False, val_fraction=0.2, test_fraction=0.0))
    assert splits.test is None and len(splits.val) == 100 and _disjoint(splits)
    with pytest.raises(DataError, match="split 'test': empty because"):
        splits["test"]
    assert splits.available() == ["train", "val"]


def test_loader_end_to_end() -> None:
    splits = load_data(DataConfig(limit=300, crop_padding=2, flip=True, resolution=32, seed=1))
    assert splits.input_shape == (1, 32, 32)
    x, y = next(iter(splits.loader("train", 300, seed=0)))
    assert x.shape == (210, 1, 32, 32) and y.shape == (210,)
    ev = torch.cat([xb for xb, _ in splits.loader("train", 64, train=False)])
    assert abs(ev.mean().item()) < 0.02 and abs(ev.std().item() - 1) < 0.05  # training statistics normalise


def test_load_dataset_one_split() -> None:
    test = load_dataset("embedded", split="test", limit=100)
    assert len(test) == 20 and test.input_shape == (1, 28, 28)
    with pytest.raises(InvalidValue, match="split: got 'validation'; allowed: 'train', 'val', 'test'"):
        load_dataset("embedded", split="validation")


# ------------------------------------------------------------------------------------------------ real files
def test_fashion_mnist_folder_uses_its_test_split(shared_data: Path) -> None:
    splits = load_data(DataConfig(source=str(shared_data / "fashion_mnist"), limit=3000))
    assert splits.info["format"] == "idx" and splits.info["sizes"] == {"train": 2700, "val": 300, "test": 3000}
    assert splits.test.class_counts().tolist() == [300] * 10


def test_debian_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_module, "DEBIAN_FASHION_MNIST", tmp_path / "nope")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_data(DataConfig(source="fashion-mnist"))
    monkeypatch.setattr(load_module, "DEBIAN_FASHION_MNIST", embedded_path())  # same IDX layout, t10k only
    splits = load_data(DataConfig(source="fashion-mnist", limit=500))
    assert splits.classes[0] == "T-shirt/top" and splits.info["sizes"] == {"train": 350, "val": 50, "test": 100}


def test_cifar10_jpeg_npz_file(shared_data: Path) -> None:
    path = shared_data / "cifar10_jpeg" / "cifar10_jpeg_test_10k.npz"
    splits = load_data(DataConfig(source=str(path), limit=1000, image_size=16, resolution=24))
    assert splits.info["format"] == "npz" and splits.info["sizes"] == {"train": 700, "val": 100, "test": 200}
    assert splits.train.input_shape == (3, 16, 16) and splits.input_shape == (3, 24, 24)
    assert splits.classes[0] == "airplane" and len(splits.mean) == 3


def test_digits_name_matches_the_csv(shared_data: Path) -> None:
    digits = load_module.SOURCES["digits"](None)["all"]
    csv = read_csv(shared_data / "sklearn_digits" / "digits.csv.gz")["all"]
    assert digits.input_shape == (1, 8, 8) and len(digits) == 1797
    assert torch.equal(digits.labels, csv.labels)
    assert torch.equal(digits.images, torch.round(csv.images.double() * 255 / 16).to(torch.uint8))
    splits = load_data(DataConfig(source="digits", seed=2))
    assert splits.info["sizes"] == {"train": 1258, "val": 180, "test": 359} and _disjoint(splits)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("options, field", [
    ({"val_fraction": 1.5}, "data.val_fraction"),
    ({"limit": 0}, "data.limit"),
    ({"batchsize": 3}, "data.batchsize"),
    ({"interpolation": "lanczos"}, "data.interpolation"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.val_fraction + data.test_fraction"),
    ({"mean": [0.5]}, "data.mean/data.std"),
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2]}, "data.mean/data.std length"),
    ({"source": "embeded"}, "data.source"),
])
def test_bad_config_names_the_field(options: dict, field: str) -> None:
    with pytest.raises(InvalidValue) as err:
        load_data(options)
    msg = str(err.value)
    assert msg.startswith(field + ": got") and "\n" not in msg


def test_config_accepts_paths_and_round_trips_json(shared_data: Path) -> None:
    cfg = DataConfig(source=shared_data / "mnist", mean=[0.1], std=[0.3], limit=100)
    assert cfg.source == str(shared_data / "mnist") and cfg.mean == (0.1,)
    again = DataConfig.from_dict(json.loads(cfg.model_dump_json()))
    assert again == cfg and load_data(again).mean == (0.1,)
    with pytest.raises(InvalidValue, match="data.batchsize: got 3; allowed: a DataConfig field: source, format"):
        DataConfig(batchsize=3)


def test_missing_and_unknown_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.source: path .* does not exist; allowed: a known name"):
        load_data({"source": str(tmp_path / "missing")})
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unknown data format"):
        load_data({"source": str(tmp_path)})
    with pytest.raises(DataError, match="no batches"):
        load_data({"source": str(tmp_path), "format": "cifar"})
    with pytest.raises(InvalidValue, match="data: got 'list'"):
        load_data([1, 2])  # type: ignore[arg-type]


def test_labels_out_of_range_in_a_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3, 3), np.uint8), y=np.array([0, 1, 2, 3]),
             classes=np.array(["a", "b", "c"]))
    with pytest.raises(InvalidValue, match="label of .*: got 3; allowed: 0..2"):
        load_data({"source": str(tmp_path / "d.npz")})


def test_too_few_examples_to_split(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 3), np.uint8), y=np.array([0, 1]))
    with pytest.raises(InvalidValue, match="leave training examples out of 2"):
        load_data({"source": str(tmp_path / "d.npz"), "val_fraction": 0.4, "test_fraction": 0.4})


def test_config_choices_match_the_tables() -> None:
    from typing import get_args

    from nasforge.data import FORMATS, INTERPOLATIONS

    assert set(get_args(DataConfig.model_fields["format"].annotation)) == {"auto", *(f.name for f in FORMATS)}
    assert get_args(DataConfig.model_fields["interpolation"].annotation) == INTERPOLATIONS
