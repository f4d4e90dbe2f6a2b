"""Batched augmentation: crop within the padded image, flips, resize, normalisation, determinism, eval mode."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasforge.data import BatchTransform, random_crop_flip, resize
from nasforge.errors import InvalidValue


def _batch(b: int = 32, c: int = 3, h: int = 8, w: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (b, c, h, w), generator=g, dtype=torch.int64).to(torch.uint8)  # no zeros


def _windows(x: torch.Tensor, pad: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    padded = F.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[-2:]
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            win = padded[..., dy:dy + h, dx:dx + w]
            out += [(dy, dx, False, win), (dy, dx, True, win.flip(-1))]
    return out


def test_crop_and_flip_are_windows_of_the_padded_image() -> None:
    x, pad = _batch(), 2
    out = random_crop_flip(x, torch.Generator().manual_seed(1), pad=pad, flip=True)
    assert out.shape == x.shape and out.dtype == torch.uint8
    found = set()
    for i in range(len(x)):
        matches = [(dy, dx, fl) for dy, dx, fl, win in _windows(x[i], pad) if torch.equal(win, out[i])]
        assert matches, f"sample {i} is not a (flipped) window of its padded image"
        found.add(matches[0][2])
    assert found == {True, False}  # both flipped and unflipped samples occur in 32 draws
    assert (out == 0).any()  # some padding got into some crops


def test_offsets_cover_the_whole_range() -> None:
    x = _batch(b=400, c=1, h=6, w=6)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=1)
    offsets = set()
    for i in range(len(x)):
        offsets |= {(dy, dx) for dy, dx, fl, win in _windows(x[i], 1) if not fl and torch.equal(win, out[i])}
    assert offsets == {(dy, dx) for dy in range(3) for dx in range(3)}


def test_flip_only_reverses_columns_per_sample() -> None:
    x = _batch()
    out = random_crop_flip(x, torch.Generator().manual_seed(5), flip=True)
    flipped = [bool(torch.equal(out[i], x[i].flip(-1))) for i in range(len(x))]
    same = [bool(torch.equal(out[i], x[i])) for i in range(len(x))]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)


def test_determinism_for_a_seed() -> None:
    x = _batch()
    t = BatchTransform(pad=3, flip=True, mean=(0.5,) * 3, std=(0.25,) * 3)
    a = t(x, train=True, generator=torch.Generator().manual_seed(7))
    b = t(x, train=True, generator=torch.Generator().manual_seed(7))
    c = t(x, train=True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eval_applies_no_augmentation_and_normalises() -> None:
    x = _batch()
    t = BatchTransform(pad=3, flip=True, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125))
    out = t(x, train=False)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    assert out.dtype == torch.float32
    assert torch.allclose(out, (x.float() / 255 - mean) / std, atol=1e-5)
    assert torch.equal(t(x, train=False), out)
    assert torch.allclose(BatchTransform()(x, train=False), x.float() / 255)


def test_normalised_statistics_are_zero_mean_unit_std() -> None:
    x = _batch(b=64)
    f = x.double() / 255
    mean = tuple(f.mean(dim=(0, 2, 3)).tolist())
    std = tuple(f.std(dim=(0, 2, 3), unbiased=False).tolist())
    out = BatchTransform(mean=mean, std=std)(x, train=False).double()
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest", "area"])
def test_resize_shapes_and_constant_images(mode: str) -> None:
    x = torch.full((4, 2, 8, 10), 77, dtype=torch.uint8)
    out = BatchTransform(resolution=12, interpolation=mode)(x, train=False)
    assert out.shape == (4, 2, 12, 12)
    assert torch.allclose(out, torch.full_like(out, 77 / 255), atol=1e-6)
    assert BatchTransform(resolution=5).output_shape((2, 8, 10)) == (2, 5, 5)


def test_resize_function_is_linear_and_noop_at_same_size() -> None:
    x = torch.rand(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    assert resize(x, 9) is x
    a, b = resize(2 * x + 1, 16), 2 * resize(x, 16) + 1
    assert torch.allclose(a, b, atol=1e-5) and a.shape == (2, 3, 16, 16)
    assert resize(x, (4, 6), "area").shape == (2, 3, 4, 6)


def test_input_is_not_modified() -> None:
    x = torch.rand(2, 1, 4, 4)
    before = x.clone()
    BatchTransform(mean=(0.5,), std=(0.5,))(x, train=False)
    assert torch.equal(x, before)


@pytest.mark.parametrize("kwargs, field", [
    ({"pad": -1}, "pad"), ({"resolution": 0}, "resolution"), ({"interpolation": "lanczos"}, "interpolation"),
    ({"mean": (0.5,), "std": None}, "mean/std"), ({"mean": (0.5,), "std": (0.0,)}, "std"),
])
def test_bad_transform_settings(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidValue) as err:
        BatchTransform(**kwargs)
    assert str(err.value).startswith(field)


def test_random_training_needs_a_generator_and_matching_channels() -> None:
    with pytest.raises(InvalidValue, match="generator"):
        BatchTransform(flip=True)(_batch(), train=True)
    with pytest.raises(InvalidValue, match="mean/std channels"):
        BatchTransform(mean=(0.5,), std=(0.5,))(_batch(c=3), train=False)
