"""Counted FLOPs / params (nasforge.cost.counted) and the analytic cost models (nasforge.cost)."""
from __future__ import annotations

from typing import Mapping

import pytest
import torch
import torch.nn as nn

from nasforge import Architecture, get_space, list_spaces
from nasforge.cost import AnalyticCost, CostModel, MeasuredLatency, costs, count_flops, count_params
from nasforge.errors import InvalidArchitecture, InvalidValue, UnknownName
from nasforge.spaces.base import Dimension, SearchSpace


# ------------------------------------------------------------------------------------------------ a toy space
class ToySpace(SearchSpace):
    """conv(k) -> BN -> ReLU [-> conv3x3 -> BN -> ReLU when depth == 2] -> GAP -> Linear; not registered."""

    name = "toy-cost"
    default_input = (3, 12, 12)
    default_classes = 5

    def dimensions(self) -> tuple[Dimension, ...]:
        return (Dimension("width", (4, 8)), Dimension("kernel", (1, 3)), Dimension("depth", (1, 2)),
                Dimension("width2", (2, 6)))

    def is_active(self, label: str, genes: Mapping[str, object]) -> bool:
        return label != "width2" or genes.get("depth") == 2

    def format(self, arch: Architecture) -> str:
        return arch.to_json()

    def parse(self, text: str) -> Architecture:
        return Architecture.from_json(text, validate=False)

    def build(self, arch, input_shape=None, num_classes=None) -> nn.Module:
        (c, _, _), classes = self.resolve_input(input_shape, num_classes)
        w, k = arch["width"], arch["kernel"]
        layers: list[nn.Module] = [nn.Conv2d(c, w, k, padding=k // 2, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
        if arch["depth"] == 2:
            w2 = arch["width2"]
            layers += [nn.Conv2d(w, w2, 3, padding=1, bias=False), nn.BatchNorm2d(w2), nn.ReLU()]
            w = w2
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, classes)]
        return nn.Sequential(*layers)

    def _parts(self, arch, input_shape, num_classes) -> tuple[int, int]:
        (c, h, wd), classes = self.resolve_input(input_shape, num_classes)
        w, k = arch["width"], arch["kernel"]
        flops, params = 2 * h * wd * w * c * k * k, w * c * k * k + 2 * w
        if arch["depth"] == 2:
            w2 = arch["width2"]
            flops, params = flops + 2 * h * wd * w2 * w * 9, params + w2 * w * 9 + 2 * w2
            w = w2
        return flops + 2 * w * classes, params + w * classes + classes

    def flops(self, arch, input_shape=None, num_classes=None) -> int:
        return self._parts(arch, input_shape, num_classes)[0]

    def params(self, arch, input_shape=None, num_classes=None) -> int:
        return self._parts(arch, input_shape, num_classes)[1]

    def smallest(self) -> Architecture:
        return self.make({"width": 4, "kernel": 1, "depth": 1})

    def largest(self) -> Architecture:
        return self.make({"width": 8, "kernel": 3, "depth": 2, "width2": 6})

    def cardinality(self) -> int:
        return 2 * 2 * (1 + 2)


TOY = ToySpace()


# ------------------------------------------------------------------------------------------------ counted
def test_count_flops_matches_hand_formula_for_conv_depthwise_linear() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),              # 16x16 -> 8x8
        nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False),  # depthwise, 8x8
        nn.Conv2d(8, 16, 1, bias=False),                      # pointwise
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )
    expected = (2 * 8 * 8 * 8 * 3 * 3 * 3       # Conv2d: 2 * Cout * Hout * Wout * Cin/groups * k * k
                + 2 * 8 * 8 * 8 * 1 * 5 * 5     # depthwise: Cin/groups = 1
                + 2 * 16 * 8 * 8 * 8            # 1x1
                + 2 * 16 * 10)                  # Linear: 2 * in * out (bias, BN, ReLU, pooling not counted)
    assert count_flops(net, (3, 16, 16)) == expected


def test_count_params_matches_hand_formula_and_counts_shared_once() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 10))
    assert count_params(net) == (8 * 3 * 9 + 8) + 2 * 8 + (8 * 10 + 10)  # BN running stats are buffers
    shared = nn.Linear(4, 4)
    assert count_params(nn.Sequential(shared, nn.ReLU(), shared)) == 4 * 4 + 4
    net[0].weight.requires_grad_(False)
    assert count_params(net, trainable_only=True) == count_params(net) - 8 * 3 * 9


def test_count_flops_uses_batch_one_eval_mode_and_restores_training_flags() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    net.train()
    net[2].eval()  # mixed flags must come back exactly as they were
    before = {n: m.training for n, m in net.named_modules()}
    stats = net[1].running_mean.clone()
    flops = count_flops(net, (1, 6, 6))
    assert flops == 2 * 2 * 4 * 4 * 1 * 9 + 2 * 32 * 3
    assert {n: m.training for n, m in net.named_modules()} == before
    assert torch.equal(net[1].running_mean, stats)  # eval mode: BN statistics untouched


@pytest.mark.parametrize("shape", [(), (3, 0, 4), (3, -1), "3x32x32", (3.0, 8, 8), (True, 8, 8)])
def test_count_flops_rejects_bad_shapes_naming_the_field(shape) -> None:
    with pytest.raises(InvalidValue, match="input_shape"):
        count_flops(nn.Linear(3, 3), shape)


def test_count_flops_turns_a_torch_shape_error_into_one_line() -> None:
    with pytest.raises(InvalidValue, match=r"input_shape: got \(5,\).*torch:") as info:
        count_flops(nn.Linear(3, 3), (5,))
    assert "\n" not in str(info.value)


def test_count_flops_rejects_bad_device_and_non_module() -> None:
    with pytest.raises(InvalidValue, match="device"):
        count_flops(nn.Linear(3, 3), (3,), device="tpu-9000")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidValue, match="device.*CUDA is not available"):
            count_flops(nn.Linear(3, 3), (3,), device="cuda")
    with pytest.raises(InvalidValue, match="model"):
        count_flops(lambda x: x, (3,))  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="model"):
        count_params("net")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ cost models
@pytest.mark.parametrize("arch", [TOY.smallest(), TOY.largest(), TOY.make({"width": 8, "kernel": 3, "depth": 1})])
@pytest.mark.parametrize("shape,classes", [(None, None), ((2, 9, 7), 3)])
def test_analytic_cost_equals_counted_on_the_built_network(arch, shape, classes) -> None:
    got = AnalyticCost(TOY, shape, classes).cost(arch)
    net = TOY.build(arch, shape, classes)
    used_shape = shape or TOY.default_input
    assert got == {"params": count_params(net), "flops": count_flops(net, used_shape)}
    assert all(type(v) is int for v in got.values())


def test_costs_returns_ints_and_optional_latency() -> None:
    arch = TOY.largest()
    plain = costs(TOY, arch)
    assert set(plain) == {"params", "flops"} and plain["flops"] == TOY.flops(arch)
    with_latency = costs(TOY, arch, latency=True, threads=1, min_run_time=0.01, repeats=3, warmup=1)
    assert with_latency["params"] == plain["params"] and with_latency["flops"] == plain["flops"]
    assert 0 < with_latency["latency_ms"] < 1e4


def test_cost_models_validate_early_and_are_cost_models() -> None:
    assert isinstance(AnalyticCost(TOY), CostModel) and isinstance(MeasuredLatency(TOY), CostModel)
    with pytest.raises(InvalidArchitecture, match="width"):
        AnalyticCost(TOY).cost(Architecture("toy-cost", {"width": 5, "kernel": 1, "depth": 1}))
    with pytest.raises(InvalidValue, match="input_shape"):
        AnalyticCost(TOY, (3, 32), 10)
    with pytest.raises(InvalidValue, match="num_classes"):
        AnalyticCost(TOY, None, 0)
    with pytest.raises(UnknownName, match="backend: got 'tensorrt'"):
        MeasuredLatency(TOY, backend="tensorrt")
    with pytest.raises(InvalidValue, match="MeasuredLatency option: got 'repeat'"):
        MeasuredLatency(TOY, repeat=3)
    with pytest.raises(UnknownName, match="space"):
        AnalyticCost("no-such-space")
    with pytest.raises(InvalidValue, match="space"):
        AnalyticCost(42)  # type: ignore[arg-type]


def test_measured_latency_caches_per_arch_key_and_keeps_caches_private() -> None:
    model = MeasuredLatency(TOY, threads=1, warmup=0, repeats=2, min_run_time=0.005)
    a, b = TOY.smallest(), TOY.largest()
    first = model.measure(a)
    assert model.measure(Architecture("toy-cost", a.to_dict())) is first  # same key -> cached, not re-measured
    assert model.measure(b) is not first and model.cost(b) == {"latency_ms": model.measure(b).median_ms}
    other = MeasuredLatency(TOY, threads=1, warmup=0, repeats=2, min_run_time=0.005)
    assert other.measure(a) is not first  # no cache shared between instances


# ------------------------------------------------------------------------------------------------ a real space
def test_costs_of_nb201_equal_counted_on_the_built_network() -> None:
    """End to end on a registered space (the per-space contract suite checks every space, tests/spaces/)."""
    if "nb201" not in list_spaces():
        pytest.skip("nb201 space not registered")
    space = get_space("nb201")
    arch = space.smallest()
    got = costs("nb201", arch, (3, 32, 32), 10)
    net = space.build(arch, (3, 32, 32), 10)
    assert got == {"params": count_params(net), "flops": count_flops(net, (3, 32, 32))}
