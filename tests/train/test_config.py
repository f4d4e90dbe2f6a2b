"""TrainConfig: paper defaults, recipes, and one-line errors naming the field."""
from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from nasforge.errors import InvalidValue, UnknownName
from nasforge.train import RECIPES, TrainConfig


@pytest.mark.parametrize("field, value", [
    ("lr", -0.1), ("lr", 0), ("batch_size", 0), ("momentum", 1.0), ("rmsprop_decay", 1.5), ("weight_decay", -1e-5),
    ("schedule", "step"), ("optimizer", "adam"), ("warmup_epochs", -1), ("decay_rate", 1.2),
    ("min_lr_ratio", 2.0), ("label_smoothing", 1.0), ("grad_clip_norm", 0.0), ("precision", "fp8"),
    ("nan_check_interval", 0), ("batch_size", "many"),
])
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidValue) as info:
        TrainConfig(**{field: value})
    msg = str(info.value)
    assert msg.startswith(f"{field} of TrainConfig: got {value!r}") and "allowed:" in msg and "\n" not in msg
    assert info.value.field == field


def test_unknown_field_and_recipe() -> None:
    with pytest.raises(InvalidValue, match="field of TrainConfig: got 'learning_rate'; allowed: 'accumulate_steps', .*'weight_decay'"):
        TrainConfig(learning_rate=0.1)
    with pytest.raises(UnknownName, match="recipe: got 'adam'; allowed: 'bignas'"):
        TrainConfig.from_recipe("adam")


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(InvalidValue, match="momentum of TrainConfig: got 0.0; allowed: > 0 when nesterov"):
        TrainConfig(momentum=0.0)
    assert TrainConfig(momentum=0.0, nesterov=False).momentum == 0.0


def test_papers_numbers_in_recipes() -> None:
    big = TrainConfig.from_recipe("bignas")
    assert (big.optimizer, big.rmsprop_decay, big.momentum, big.weight_decay) == ("rmsprop", 0.9, 0.9, 1e-5)
    assert (big.schedule, big.decay_rate, big.decay_epochs, big.min_lr_ratio) == ("exponential", 0.97, 2.4, 0.05)
    assert big.model_copy(update={"batch_size": 4096}).effective_lr == pytest.approx(0.256)  # BigNAS Sec. 4
    menas = TrainConfig.from_recipe("menas")
    assert menas.effective_lr == pytest.approx(0.064) and menas.batch_size == 1024
    assert TrainConfig.from_recipe("menas", batch_size=256).effective_lr == pytest.approx(0.016)
    lnas = TrainConfig.from_recipe("lnas")
    assert (lnas.lr, lnas.batch_size, lnas.weight_decay, lnas.schedule) == (0.025, 64, 3e-4, "cosine")
    assert TrainConfig.from_recipe("dcnas-supernet").schedule == "linear"
    assert TrainConfig.from_recipe("padnas").weight_decay == 4e-5
    assert TrainConfig.from_recipe("nb201").nesterov and TrainConfig.from_recipe("nb201").weight_decay == 5e-4
    assert math.sqrt(1e-3) == pytest.approx(big.torch_rmsprop_eps)
    for name in RECIPES:
        TrainConfig.from_recipe(name)  # every recipe is valid


def test_from_dict_with_recipe_and_frozen() -> None:
    cfg = TrainConfig.from_dict({"recipe": "lnas", "lr": 0.05})
    assert cfg.lr == 0.05 and cfg.weight_decay == 3e-4
    assert TrainConfig.from_dict(None) == TrainConfig()
    assert TrainConfig(**cfg.model_dump()) == cfg
    with pytest.raises(ValidationError):
        cfg.lr = 1.0  # type: ignore[misc]
