"""LR schedules against their formulas (and against torch's own schedulers), optimizer construction."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from nasforge.errors import InvalidValue
from nasforge.train import (TrainConfig, build_optimizer, build_scheduler, cosine_factor, exponential_factor,
                            linear_factor, lr_lambda, warmup_factor)


def _staircase(step: int, spe: int, every: Fraction = Fraction(12, 5)) -> int:
    """floor(epoch_float / 2.4) in exact rational arithmetic (the oracle for float round-off)."""
    return math.floor(Fraction(step, spe) / every)


@pytest.mark.parametrize("spe", [1, 5, 7, 100, 391])
def test_exponential_is_097_per_24_epochs_exactly_at_the_boundaries(spe: int) -> None:
    for step in list(range(0, 40 * spe, max(1, spe // 3))) + [int(2.4 * k * spe) for k in range(1, 12)]:
        assert exponential_factor(step, spe) == pytest.approx(0.97 ** _staircase(step, spe), rel=1e-12), step


def test_exponential_known_values_and_constant_ending() -> None:
    assert exponential_factor(239, 100) == 1.0
    assert exponential_factor(240, 100) == pytest.approx(0.97)
    assert exponential_factor(720, 100) == pytest.approx(0.97 ** 3)  # 7.2 / 2.4 is 2.9999... in floats
    # BigNAS: held at 5% once reached (0.97 ** 99 ~ 0.049 is the first value below 0.05)
    assert exponential_factor(int(2.4 * 98 * 10), 10, floor=0.05) == pytest.approx(0.97 ** 98)
    assert exponential_factor(10 ** 6, 10, floor=0.05) == 0.05


def test_warmup_cosine_linear_formulas() -> None:
    assert [warmup_factor(s, 4) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert cosine_factor(0, 100) == 1.0
    assert cosine_factor(50, 100) == pytest.approx(0.5)
    assert cosine_factor(100, 100) == pytest.approx(0.0, abs=1e-12)
    assert cosine_factor(150, 100, floor=0.1) == pytest.approx(0.1)
    assert linear_factor(25, 100) == 0.75
    assert linear_factor(100, 100, floor=0.2) == pytest.approx(0.2)


def _lrs(config: TrainConfig, spe: int, total: int) -> list[float]:
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, config)
    sched = build_scheduler(opt, config, spe, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_matches_torch_cosine_annealing() -> None:
    cfg = TrainConfig(lr=0.1, schedule="cosine", min_lr_ratio=0.1)
    ours = _lrs(cfg, spe=10, total=50)
    opt = torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50, eta_min=0.01)
    theirs = []
    for _ in range(50):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_linear_matches_torch_linear_lr() -> None:
    ours = _lrs(TrainConfig(lr=0.5, schedule="linear", min_lr_ratio=0.0), spe=4, total=40)
    opt = torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=0.5)
    ref = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=40)
    theirs = []
    for _ in range(40):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_menas_recipe_per_step_lr_warmup_then_staircase() -> None:
    """MENAS: warm-up from 0 to 0.064 (at batch 1024), then x0.97 every 2.4 epochs; here batch 64 -> 0.004."""
    cfg = TrainConfig.from_recipe("menas", batch_size=64, warmup_epochs=1.0)
    spe, total = 10, 200
    lrs = _lrs(cfg, spe, total)
    base = 0.064 * 64 / 1024
    for step, lr in enumerate(lrs):
        want = base * step / spe if step < spe else base * 0.97 ** _staircase(step, spe)
        assert lr == pytest.approx(want, rel=1e-12, abs=1e-15), step


def test_lr_lambda_rejects_bad_lengths() -> None:
    with pytest.raises(InvalidValue, match="steps_per_epoch"):
        lr_lambda(TrainConfig(), 0, 10)
    with pytest.raises(InvalidValue, match="total_steps"):
        lr_lambda(TrainConfig(), 10, 0)


def test_rmsprop_uses_tf_epsilon_mapped_to_torch_and_skips_decay_on_1d_params() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    opt = build_optimizer(model, TrainConfig.from_recipe("efficientnet"))
    assert isinstance(opt, torch.optim.RMSprop)
    g = opt.param_groups[0]
    assert g["eps"] == pytest.approx(math.sqrt(1e-3)) and g["alpha"] == 0.9 and g["momentum"] == 0.9
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 1e-5 and opt.param_groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    sgd = build_optimizer(model, TrainConfig.from_recipe("nb201"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"] and len(sgd.param_groups) == 1
    assert sgd.param_groups[0]["weight_decay"] == 5e-4


def test_scheduler_state_round_trips() -> None:
    cfg = TrainConfig.from_recipe("bignas", batch_size=32, warmup_epochs=0.5)
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, 8, 100)
    for _ in range(37):
        opt.step()
        sched.step()
    opt2 = build_optimizer(model, cfg)
    sched2 = build_scheduler(opt2, cfg, 8, 100)
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert sched2.last_epoch == 37 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
