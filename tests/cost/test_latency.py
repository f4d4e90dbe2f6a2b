"""Measured latency (nasforge.cost.latency): torch eager and ONNX Runtime backends."""
from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn as nn

from nasforge.cost.latency import BACKENDS, LatencyResult, measure_latency, onnx_exporter
from nasforge.errors import InvalidValue, UnknownName

FAST = {"warmup": 1, "repeats": 3, "min_run_time": 0.02}


def _net() -> nn.Module:
    """Small, but compute-bound enough that framework overhead does not dominate (~0.1-1 ms on a CPU core)."""
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class ThreadProbe(nn.Module):
    """Records torch's intra-op thread count at every forward call."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.lin(x)


@pytest.fixture
def two_threads():
    """Run the test with torch at 2 intra-op threads and put the original value back after."""
    prior = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(prior)


def test_torch_latency_is_positive_finite_with_requested_stats(two_threads) -> None:
    r = measure_latency(_net(), (3, 32, 32), batch_size=2, threads=1, **FAST)
    assert isinstance(r, LatencyResult)
    assert r.median_ms > 0 and math.isfinite(r.median_ms) and math.isfinite(r.mean_ms)
    assert r.iqr_ms >= 0 and math.isfinite(r.iqr_ms)
    assert r.runs >= FAST["repeats"]
    assert (r.batch_size, r.threads, r.backend, r.device) == (2, 1, "torch", "cpu")
    assert r.per_sample_ms == pytest.approx(r.median_ms / 2)
    assert r.to_dict()["median_ms"] == r.median_ms


def test_threads_are_fixed_during_the_measurement_and_restored_after(two_threads) -> None:
    probe = ThreadProbe()
    r = measure_latency(probe, (4,), threads=1, **FAST)
    assert probe.seen and set(probe.seen) == {1}, "every timed and warm-up call ran with the requested 1 thread"
    assert torch.get_num_threads() == two_threads
    probe.seen.clear()
    measure_latency(probe, (4,), **FAST)  # threads=None: keep torch's current setting
    assert set(probe.seen) == {two_threads}
    assert r.threads == 1


def test_threads_restored_and_model_untouched_after_an_error(two_threads) -> None:
    net = _net().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InvalidValue, match="input_shape"):
        measure_latency(net, (4, 32, 32), threads=1, **FAST)  # 4 channels into a 3-channel conv
    assert torch.get_num_threads() == two_threads
    measure_latency(net, (3, 16, 16), threads=1, **FAST)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # BN statistics not updated


def test_onnxruntime_backend_runs_and_agrees_with_torch_in_order_of_magnitude(two_threads) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net = _net()
    ort = measure_latency(net, (3, 32, 32), threads=1, backend="onnxruntime", **FAST)
    eager = measure_latency(net, (3, 32, 32), threads=1, backend="torch", **FAST)
    assert ort.backend == "onnxruntime" and ort.median_ms > 0 and math.isfinite(ort.median_ms)
    assert ort.info["onnx_exporter"] == onnx_exporter() and ort.info["provider"] == "CPUExecutionProvider"
    assert 0.1 < ort.median_ms / eager.median_ms < 10
    assert torch.get_num_threads() == two_threads


def test_bad_backend_names_the_field() -> None:
    assert BACKENDS == ("torch", "onnxruntime")
    with pytest.raises(UnknownName, match=r"backend: got 'tvm'; allowed: 'torch', 'onnxruntime'"):
        measure_latency(_net(), (3, 8, 8), backend="tvm")


def test_missing_onnxruntime_gives_a_clear_error_naming_the_backend(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(InvalidValue, match=r"backend: got 'onnxruntime'.*not installed"):
        measure_latency(_net(), (3, 8, 8), backend="onnxruntime", **FAST)


@pytest.mark.parametrize("kwargs,field", [
    ({"batch_size": 0}, "batch_size"), ({"threads": 0}, "threads"), ({"warmup": -1}, "warmup"),
    ({"repeats": 0}, "repeats"), ({"min_run_time": 0}, "min_run_time"), ({"device": "npu:x"}, "device"),
    ({"batch_size": 1.5}, "batch_size"),
])
def test_bad_options_are_rejected_before_measuring(kwargs, field) -> None:
    with pytest.raises(InvalidValue, match=f"^{field}"):
        measure_latency(_net(), (3, 8, 8), **kwargs)
