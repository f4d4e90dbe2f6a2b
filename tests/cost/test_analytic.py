"""nasforge.nn.analytic: FLOPs and params from a NetworkSpec equal FlopCounterMode and the parameter count."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nasforge.nn.analytic import conv_out, spec_costs, spec_flops, spec_params
from nasforge.errors import InvalidValue
from nasforge.nn.mbconv import build_network
from nasforge.nn.spec import ConvSpec, HeadSpec, MBConvSpec, NetworkSpec


def _counted(module: nn.Module, shape: tuple[int, ...]) -> int:
    module.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.randn(1, *shape))
    return counter.get_total_flops()


def _random_spec(rng: np.random.Generator) -> NetworkSpec:
    """A random valid spec: odd kernels 1-7, strides 1/2, with/without expansion, SE, head conv and features."""
    c, h, w = int(rng.choice([1, 3])), int(rng.integers(3, 30)), int(rng.integers(3, 30))
    ch = int(rng.integers(3, 17))
    stem = ConvSpec(c, ch, int(rng.choice([1, 3, 5])), int(rng.choice([1, 2])), str(rng.choice(["relu", "hswish"])))
    blocks = []
    for _ in range(int(rng.integers(0, 6))):
        out, expand = int(rng.integers(3, 24)), bool(rng.random() < 0.7)
        mid = int(rng.integers(ch + 1, 4 * ch + 2)) if expand else ch
        blocks.append(MBConvSpec(ch, mid, out, int(rng.choice([3, 5, 7])), int(rng.choice([1, 2])),
                                 int(rng.choice([0, 0, 4, 7])), str(rng.choice(["relu", "swish", "relu6"])),
                                 str(rng.choice(["sigmoid", "hsigmoid"])), expand))
        ch = out
    head = HeadSpec(ch, int(rng.choice([0, 32])), int(rng.choice([0, 40])), int(rng.integers(1, 12)), "hswish",
                    float(rng.choice([0.0, 0.2])))
    return NetworkSpec((c, h, w), stem, tuple(blocks), head)


def test_random_specs_match_flop_counter_and_parameter_count() -> None:
    rng = np.random.default_rng(1234)
    for _ in range(40):
        spec = _random_spec(rng)
        net = build_network(spec)
        assert spec_flops(spec) == _counted(net, spec.input_shape), spec
        assert spec_params(spec) == sum(p.numel() for p in net.parameters()), spec


def test_parts_are_named_like_modules_and_sum_up() -> None:
    rng = np.random.default_rng(7)
    spec = next(s for s in (_random_spec(rng) for _ in range(100)) if len(s.blocks) >= 2)
    net = build_network(spec)
    parts = dict(spec_costs(spec))
    assert list(parts)[0] == "stem" and list(parts)[-1] == "head" and len(parts) == len(spec.blocks) + 2
    for name, cost in parts.items():
        assert cost.params == sum(p.numel() for p in net.get_submodule(name).parameters()), name
    assert sum(c.flops for c in parts.values()) == spec_flops(spec)


def test_hand_computed_small_network() -> None:
    """Stem 3->8 k3 s2 on 8x8 (out 4x4); block 8->16(SE 4)->8 k3 s1 with skip; head: classifier only."""
    spec = NetworkSpec((3, 8, 8), ConvSpec(3, 8, 3, 2, "relu"),
                       (MBConvSpec(8, 16, 8, 3, 1, se_ch=4),), HeadSpec(8, 0, 0, 10))
    stem = 2 * 8 * 16 * 3 * 9
    block = 2 * 16 * 16 * 8 + 2 * 16 * 16 * 9 + 2 * (2 * 16 * 4) + 2 * 8 * 16 * 16
    head = 2 * 8 * 10
    assert spec_flops(spec) == stem + block + head
    params = (8 * 3 * 9 + 16) + (16 * 8 + 32) + (16 * 9 + 32) + (4 * 16 + 4 + 16 * 4 + 16) + (8 * 16 + 16) + 90
    assert spec_params(spec) == params


def test_flop_counter_conventions_we_rely_on() -> None:
    """The documented convention: conv/linear biases, BN, activations, pooling and adds count nothing."""
    x = (3, 9, 9)
    assert _counted(nn.Conv2d(3, 8, 3, 2, 1, bias=True), x) == _counted(nn.Conv2d(3, 8, 3, 2, 1, bias=False), x)
    assert _counted(nn.Conv2d(3, 8, 3, 2, 1, bias=False), x) == 2 * 8 * 5 * 5 * 3 * 9
    assert _counted(nn.Linear(10, 5), (10,)) == _counted(nn.Linear(10, 5, bias=False), (10,)) == 100
    assert _counted(nn.Sequential(nn.BatchNorm2d(3), nn.Hardswish(), nn.AdaptiveAvgPool2d(1)), x) == 0


def test_conv_out_is_ceil_for_odd_kernels() -> None:
    for size in range(1, 20):
        for k in (1, 3, 5, 7):
            assert conv_out(size, k, 1) == size and conv_out(size, k, 2) == -(-size // 2)


def test_invalid_spec_is_rejected_before_counting() -> None:
    spec = _random_spec(np.random.default_rng(3))
    with pytest.raises(InvalidValue, match="in_ch of head"):
        spec_flops(replace(spec, head=replace(spec.head, in_ch=spec.head.in_ch + 1)))
