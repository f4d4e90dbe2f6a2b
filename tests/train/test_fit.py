"""Training that fits the device: bf16 autocast, gradient accumulation (same step and LR rule as the large batch),
weight EMA, the precision / device errors and the multi-device warning of the supernet trainer."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from nasforge.errors import InvalidValue
from nasforge.train import TrainConfig, train
from nasforge.train.precision import WeightEMA, check_precision


def _mlp(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():  # seeded initialisation that leaves the global RNG alone
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))


def _data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 2, 2, generator=g)
    return x, (x.flatten(1).sum(1) > 0).long() + (x[:, 0, 0, 0] > 1).long()


def _params(m: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def _fit(batches: list, **cfg) -> nn.Module:
    model = _mlp()
    config = TrainConfig(optimizer="sgd", lr=0.5, momentum=0.9, nesterov=False, weight_decay=1e-3,
                         schedule="constant", nan_check_interval=1, **cfg)
    train(model, batches, config=config, epochs=1, progress=False)
    return model


def test_accumulate_2_x_16_equals_one_batch_of_32() -> None:
    x, y = _data(64)
    big = [(x[:32], y[:32]), (x[32:], y[32:])]
    small = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    a = _fit(big, batch_size=32, lr_reference_batch=32)
    b = _fit(small, batch_size=16, accumulate_steps=2, lr_reference_batch=32)
    c = _fit(small, batch_size=16, global_batch_size=32, lr_reference_batch=32)
    plain = _fit(small, batch_size=16, lr_reference_batch=32)  # 4 steps at half the rate: not the same
    assert torch.allclose(_params(a), _params(b), atol=1e-5) and torch.equal(_params(b), _params(c))
    assert not torch.allclose(_params(a), _params(plain), atol=1e-3)
    assert TrainConfig(batch_size=16, accumulate_steps=2, lr=0.1, lr_reference_batch=32).effective_lr == 0.1


def test_global_batch_size_derives_accumulate_steps_or_errors() -> None:
    assert TrainConfig(batch_size=256, global_batch_size=4096).accumulate_steps == 16
    with pytest.raises(InvalidValue, match=r"^global_batch_size of TrainConfig: got 1000; allowed: a multiple"):
        TrainConfig(batch_size=256, global_batch_size=1000)
    with pytest.raises(InvalidValue, match=r"^accumulate_steps of TrainConfig: got 3; allowed: 16"):
        TrainConfig(batch_size=256, global_batch_size=4096, accumulate_steps=3)


def test_bf16_autocasts_and_follows_the_fp32_loss_curve() -> None:
    x, y = _data(128)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)]
    seen: list[torch.dtype] = []
    curves = {}
    for precision in ("fp32", "bf16"):
        model = _mlp()
        hook = model[1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        cfg = TrainConfig(optimizer="sgd", lr=0.2, momentum=0.0, nesterov=False, schedule="constant",
                          precision=precision)
        curves[precision] = [h.train_loss for h in train(model, batches, config=cfg, epochs=5,
                                                         progress=False).history]
        hook.remove()
    assert torch.bfloat16 in seen and torch.float32 in seen
    assert curves["bf16"][-1] < curves["bf16"][0]
    assert all(abs(a - b) < 0.05 for a, b in zip(curves["fp32"], curves["bf16"]))


def test_precision_errors_are_one_line() -> None:
    with pytest.raises(InvalidValue, match=r"^train\.precision: got 'fp16'; allowed: 'fp32' or 'bf16' on device "
                                           r"'cpu' \(fp16 with a gradient scaler needs CUDA\)$"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(InvalidValue, match=r"^precision of TrainConfig: got 'half'"):
        TrainConfig(precision="half")


def test_ema_weights_differ_from_and_lag_the_raw_weights() -> None:
    x, y = _data(64)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]
    model = _mlp()
    start = _params(model)
    trace = []

    class Capture:
        def on_step_end(self, state) -> None:
            trace.append((_params(state.model), _params(state.ema.model)))

    cfg = TrainConfig(optimizer="sgd", lr=0.3, momentum=0.0, nesterov=False, schedule="constant", ema_decay=0.9)
    train(model, batches, config=cfg, epochs=2, progress=False, callbacks=[Capture()])
    raw, ema = trace[-1]
    assert not torch.allclose(raw, ema, atol=1e-4)
    assert (ema - start).norm() < (raw - start).norm()  # the average trails behind the raw weights
    assert torch.equal(_params(model), ema)  # the trained model holds the averaged weights
    # the update rule: TF's num_updates warm-up, then the decay
    m = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(m.weight)
    e = WeightEMA(m, 0.5)
    with torch.no_grad():
        m.weight.fill_(1.0)
    e.update(m)  # d = min(0.5, 2 / 11)
    assert torch.allclose(e.model.weight, torch.tensor([[1 - 2 / 11]]))


def test_supernet_warns_when_a_multi_device_config_runs_in_one_process() -> None:
    from nasforge.data import DataConfig, load_data
    from nasforge.spaces.bignas import BigNASSpace, BigNASStage
    from nasforge.supernet.mbconv import ElasticMBConvSupernet
    from nasforge.supernet.train import StepRecipe, SupernetTrainer

    space = BigNASSpace(stages=(BigNASStage((4,), (1,), (3,), (1,), 1),), resolutions=(8,), stem_widths=(4,),
                        head_widths=(8,))
    splits = load_data(DataConfig(source="embedded", limit=64, image_size=8, val_fraction=0.25, test_fraction=0.0))
    net = ElasticMBConvSupernet(space, (1, 8, 8), 10, generator=torch.Generator().manual_seed(0))
    tc = TrainConfig.from_recipe("bignas", batch_size=8, devices=8, accumulate_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = SupernetTrainer(copy.deepcopy(net), space, splits, recipe=StepRecipe.bignas(), train_config=tc, epochs=1)
    msgs = [str(w.message) for w in caught if "train.devices" in str(w.message)]
    assert len(msgs) == 1 and "\n" not in msgs[0] and "torchrun" in msgs[0]
    assert t.steps_per_epoch == 48 // 8 // 2
    result = t.fit()
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(v)) for v in result.history[-1]["loss"].values())


def test_a_batch_that_cannot_fit_is_a_one_line_error_naming_what_fits() -> None:
    from nasforge.train.precision import check_batch_fits, measure_step_memory

    gib = 2 ** 30
    check_batch_fits(256, 1 * gib, 0.1 * gib, 80 * gib)  # 26.6 GiB of 80: fits
    with pytest.raises(InvalidValue, match=r"^train\.batch_size: got 1024; allowed: at most ~710 per device here "
                                           r"\(one forward/backward: 102 MiB per image \+ 1\.00 GiB, 80\.0 GiB on"):
        check_batch_fits(1024, 1 * gib, 0.1 * gib, 80 * gib)
    # off CUDA there is nothing to measure, and nothing is touched
    model = _mlp()
    before = _params(model)
    assert measure_step_memory(model, *_data(4), nn.functional.cross_entropy, "fp32", torch.device("cpu")) is None
    assert torch.equal(before, _params(model)) and all(p.grad is None for p in model.parameters())


def test_cli_prints_nasforge_warnings_on_one_line(capsys) -> None:
    from nasforge.cli import _show_warning

    seen = []
    show = _show_warning(lambda *a: seen.append(a))
    show(UserWarning("train.devices is 8 but this run has 1 process(es)"), UserWarning,
         "/x/nasforge/supernet/train.py", 10)
    show(UserWarning("other"), UserWarning, "/x/torch/foo.py", 3)
    err = capsys.readouterr().err
    assert err == "nasforge: warning: train.devices is 8 but this run has 1 process(es)\n"
    assert len(seen) == 1 and seen[0][2] == "/x/torch/foo.py"  # others: the original display
