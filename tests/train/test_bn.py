"""calibrate_bn: only the BN running statistics change, and they are the equal-weight average over the batches."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nasforge.errors import DataError, InvalidValue
from nasforge.train import bn_layers, calibrate_bn


def _net(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(dropout),
                         nn.Conv2d(6, 8, 3, stride=2, bias=False), nn.BatchNorm2d(8, momentum=0.3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _data(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 3, 12, 12, generator=g) * (1 + i) + i, torch.randint(0, 4, (16,), generator=g))
            for i in range(n)]


def test_only_running_statistics_change_and_equal_the_batch_average() -> None:
    model = _net()
    model.eval()  # modes and momenta must come back as they were
    params = {k: v.clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    batches = _data(5)
    used = calibrate_bn(model, batches + _data(3, seed=9), num_batches=5)
    assert used == 5
    assert all(torch.equal(params[k], v) for k, v in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m.training for m in model.modules())
    assert model[5].momentum == 0.3 and model[1].momentum == 0.1
    changed = {k for k, v in model.named_buffers() if not torch.equal(buffers[k], v)}
    assert changed == {f"{i}.{b}" for i in (1, 5) for b in ("running_mean", "running_var", "num_batches_tracked")}
    assert int(model[1].num_batches_tracked) == 5
    with torch.no_grad():  # the first BN sees conv outputs directly: its stats are the plain per-batch average
        feats = [model[0](x) for x, _ in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-4, atol=1e-5)


def test_dropout_stays_off_so_calibration_is_deterministic() -> None:
    model = _net(dropout=0.5)
    model.train()
    calibrate_bn(model, _data(4), num_batches=4)
    first = model[5].running_var.clone()
    calibrate_bn(model, [x for x, _ in _data(4)], num_batches=4)  # bare tensors work too
    assert torch.equal(first, model[5].running_var)
    assert all(m.training for m in model.modules())


def test_edge_cases() -> None:
    assert calibrate_bn(nn.Linear(3, 2), _data(1), num_batches=3) == 0
    assert bn_layers(nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False))) == []
    assert calibrate_bn(_net(), _data(2), num_batches=10) == 2
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidValue, match="num_batches"):
            calibrate_bn(_net(), _data(2), num_batches=bad)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="got no batches"):
        calibrate_bn(_net(), [], num_batches=2)
    with pytest.raises(DataError, match="expected float tensors"):
        calibrate_bn(_net(), [("x", 1)], num_batches=2)
