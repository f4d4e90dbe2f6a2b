"""nasforge.nn.layers and nasforge.nn.mbconv: blocks, networks, naming and early validation."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from torch.utils.flop_counter import FlopCounterMode

from nasforge.nn.analytic import spec_flops, spec_params
from nasforge.errors import InvalidValue
from nasforge.nn.layers import ConvBNAct, SqueezeExcite, make_activation, make_gate
from nasforge.nn.mbconv import InvertedResidual, MBConvNet, TransitionShortcut, build_network
from nasforge.nn.spec import ConvSpec, HeadSpec, MBConvSpec, NetworkSpec


def _net_spec(in_ch: int = 3, size: int = 16, classes: int = 5) -> NetworkSpec:
    blocks = (
        MBConvSpec(in_ch=8, mid_ch=8, out_ch=8, kernel=3, stride=1, expand=False),          # e1, skip
        MBConvSpec(in_ch=8, mid_ch=24, out_ch=12, kernel=5, stride=2, se_ch=8, act="hswish", se_gate="hsigmoid"),
        MBConvSpec(in_ch=12, mid_ch=30, out_ch=12, kernel=7, stride=1, se_ch=8, act="swish"),  # skip
    )
    return NetworkSpec((in_ch, size, size), ConvSpec(in_ch, 8, 3, 2, "hswish"), blocks,
                       HeadSpec(in_ch=12, conv_ch=16, feature_ch=20, num_classes=classes, act="hswish", dropout=0.2))


def test_activation_and_gate_factories() -> None:
    x = torch.linspace(-5, 5, 11)
    assert torch.equal(make_activation("relu")(x), x.clamp(min=0))
    assert torch.allclose(make_activation("hswish")(x), x * (x + 3).clamp(0, 6) / 6)
    assert torch.allclose(make_activation("swish")(x), x * torch.sigmoid(x))
    assert torch.equal(make_activation("relu6")(x * 2), (x * 2).clamp(0, 6))
    assert isinstance(make_activation(None), nn.Identity)
    assert torch.allclose(make_gate("hsigmoid")(x), (x + 3).clamp(0, 6) / 6)
    with pytest.raises(InvalidValue, match="activation.*'gelu'.*hswish"):
        make_activation("gelu")
    with pytest.raises(InvalidValue, match="se_gate"):
        make_gate("tanh")


def test_conv_bn_act_is_keyword_only_and_validates() -> None:
    with pytest.raises(TypeError):
        ConvBNAct(3, 8, 3)  # type: ignore[misc]
    m = ConvBNAct(in_ch=4, out_ch=4, kernel=5, stride=2, groups=4, act=None)
    assert m.conv.padding == (2, 2) and m.conv.bias is None and m.conv.groups == 4
    assert isinstance(m.act, nn.Identity)
    assert m(torch.randn(1, 4, 9, 9)).shape == (1, 4, 5, 5)
    for kwargs, field in [({"kernel": 4}, "kernel"), ({"stride": 3}, "stride"), ({"groups": 3}, "groups"),
                          ({"out_ch": 0}, "out_ch")]:
        with pytest.raises(InvalidValue, match=field):
            ConvBNAct(**{"in_ch": 4, "out_ch": 4, "kernel": 3, **kwargs})


def test_squeeze_excite_scales_channels_by_a_gate_of_the_pooled_input() -> None:
    se = SqueezeExcite(channels=6, reduced=2, gate="hsigmoid").eval()
    x = torch.randn(2, 6, 5, 5)
    s = se.gate(se.conv_expand(torch.relu(se.conv_reduce(x.mean((2, 3), keepdim=True)))))
    assert torch.allclose(se(x), x * s)
    assert se.conv_reduce.bias is not None and se.conv_expand.weight.shape == (6, 2, 1, 1)
    # the gate depends only on the pooled input: a spatially shifted input gets the same gate
    assert torch.allclose(se(x.roll(1, dims=3)) / x.roll(1, dims=3), se(x) / x, atol=1e-5)


def test_inverted_residual_structure_and_skip_rule() -> None:
    b = InvertedResidual(MBConvSpec(in_ch=8, mid_ch=8, out_ch=8, kernel=3, stride=1, expand=False))
    assert isinstance(b.expand, nn.Identity) and isinstance(b.se, nn.Identity) and b.has_skip
    b = InvertedResidual(MBConvSpec(in_ch=8, mid_ch=20, out_ch=8, kernel=5, stride=2, se_ch=8))
    assert not b.has_skip
    assert b.expand.conv.weight.shape == (20, 8, 1, 1)
    assert b.dw.conv.weight.shape == (20, 1, 5, 5) and b.dw.conv.stride == (2, 2)
    assert b.se.conv_reduce.weight.shape == (8, 20, 1, 1)
    assert b.project.conv.weight.shape == (8, 20, 1, 1) and isinstance(b.project.act, nn.Identity)
    assert b(torch.randn(1, 8, 9, 9)).shape == (1, 8, 5, 5)


def test_skip_adds_the_input_exactly() -> None:
    spec = MBConvSpec(in_ch=6, mid_ch=12, out_ch=6, kernel=3, stride=1, se_ch=4)
    b = InvertedResidual(spec).eval()
    nn.init.zeros_(b.project.bn.weight)  # project branch outputs its BN bias (zero): block == identity
    x = torch.randn(2, 6, 7, 7)
    assert torch.equal(b(x), x)
    nn.init.ones_(b.project.bn.weight)
    no_skip = InvertedResidual(replace(spec, out_ch=7))
    assert not no_skip.has_skip and no_skip(x).shape == (2, 7, 7, 7)


def test_network_names_are_regular_and_copyable_by_name() -> None:
    spec = _net_spec()
    net = build_network(spec)
    names = set(net.state_dict())
    for name in ["stem.conv.weight", "stem.bn.running_mean", "blocks.0.dw.conv.weight", "blocks.1.expand.conv.weight",
                 "blocks.1.se.conv_reduce.weight", "blocks.2.project.bn.bias", "head.conv.conv.weight",
                 "head.fc.weight", "head.classifier.bias"]:
        assert name in names, name
    assert not any(n.startswith("blocks.0.expand") or n.startswith("blocks.0.se") for n in names)
    other = build_network(spec)
    other.load_state_dict(net.state_dict())  # same spec, same names and shapes
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(net.eval()(x), other.eval()(x))


def test_network_forward_shapes_and_features() -> None:
    for in_ch, size in [(3, 32), (1, 28), (3, 17)]:
        net = build_network(_net_spec(in_ch, size, classes=4)).eval()
        x = torch.randn(3, in_ch, size, size)
        with torch.no_grad():
            y = net(x)
            feats = net.forward_features(x)
        assert y.shape == (3, 4) and torch.isfinite(y).all()
        assert feats.shape[:2] == (3, 12)
        assert isinstance(net, MBConvNet) and net.spec.input_shape == (in_ch, size, size)


def test_head_without_conv_or_features() -> None:
    spec = replace(_net_spec(), head=HeadSpec(in_ch=12, conv_ch=0, feature_ch=0, num_classes=3))
    net = build_network(spec)
    assert isinstance(net.head.conv, nn.Identity) and isinstance(net.head.fc, nn.Identity)
    assert net.head.classifier.in_features == 12
    assert net.eval()(torch.randn(1, 3, 16, 16)).shape == (1, 3)


def test_built_network_needs_only_torch_and_nasforge_nn() -> None:
    net = build_network(_net_spec())
    modules = {type(m).__module__ for m in net.modules()}
    assert all(m.startswith("torch.") or m.startswith("nasforge.nn") for m in modules), modules


def test_transition_shortcut_pools_and_projects() -> None:
    """BigNAS Sec. 3.1: 2x2 average pooling when the resolution changes, 1x1 conv when the channels do."""
    both = TransitionShortcut(in_ch=6, out_ch=10, stride=2)
    assert isinstance(both.pool, nn.AvgPool2d) and isinstance(both.conv, nn.Conv2d)
    assert both.conv.weight.shape == (10, 6, 1, 1) and both.conv.bias is None
    for size in (1, 2, 7, 8):  # ceil_mode: the same ceil(H / 2) as the strided depthwise conv
        x = torch.randn(2, 6, size, size)
        expected = nn.functional.conv2d(nn.functional.avg_pool2d(x, 2, ceil_mode=True), both.conv.weight)
        assert torch.equal(both(x), expected) and both(x).shape[-1] == -(-size // 2)
    pool_only = TransitionShortcut(in_ch=6, out_ch=6, stride=2)
    assert isinstance(pool_only.conv, nn.Identity) and not list(pool_only.parameters())
    conv_only = TransitionShortcut(in_ch=6, out_ch=10, stride=1)
    assert isinstance(conv_only.pool, nn.Identity)
    assert isinstance(TransitionShortcut(in_ch=6, out_ch=6, stride=1, conv=True).conv, nn.Conv2d)
    for kwargs, field in [({"stride": 3}, "stride"), ({"conv": False}, "conv"), ({"in_ch": 0}, "in_ch")]:
        with pytest.raises(InvalidValue, match=field):
            TransitionShortcut(**{"in_ch": 6, "out_ch": 10, "stride": 2, **kwargs})


def test_transition_skip_only_where_there_is_no_identity_skip() -> None:
    base = MBConvSpec(in_ch=8, mid_ch=16, out_ch=12, kernel=3, stride=2, se_ch=4)
    assert not base.transition_skip and InvertedResidual(base).shortcut is None  # default: networks unchanged
    block = InvertedResidual(replace(base, transition_skip=True)).eval()
    assert block.shortcut is not None and isinstance(block.shortcut.pool, nn.AvgPool2d)
    nn.init.zeros_(block.project.bn.weight)  # zero-init gamma: the block is its shortcut (BigNAS Sec. 3.1)
    x = torch.randn(2, 8, 9, 9)
    assert torch.equal(block(x), block.shortcut(x))
    identity = replace(base, out_ch=8, stride=1, transition_skip=True)
    assert identity.has_skip and not identity.has_transition and InvertedResidual(identity).shortcut is None
    with pytest.raises(InvalidValue, match="transition_skip"):
        InvertedResidual(replace(base, transition_skip=1))


def test_transition_skips_keep_analytic_costs_exact() -> None:
    spec = _net_spec()
    spec = replace(spec, blocks=tuple(replace(b, transition_skip=True) for b in spec.blocks)
                   + (MBConvSpec(in_ch=12, mid_ch=24, out_ch=12, kernel=3, stride=2, transition_skip=True),))
    spec = replace(spec, head=replace(spec.head, in_ch=12))
    for size in (16, 17, 9):
        s = replace(spec, input_shape=(3, size, size))
        net = build_network(s).eval()
        assert [b.shortcut is not None for b in net.blocks] == [False, True, False, True]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.randn(1, 3, size, size))
        assert spec_flops(s) == counter.get_total_flops()
        assert spec_params(s) == sum(p.numel() for p in net.parameters())
    plain = replace(spec, blocks=tuple(replace(b, transition_skip=False) for b in spec.blocks))
    assert spec_params(spec) - spec_params(plain) == 12 * 8  # the one 1x1 conv 8 -> 12; pooling is free


@pytest.mark.parametrize("change, field", [
    (lambda s: replace(s, stem=replace(s.stem, in_ch=1)), "in_ch of stem"),
    (lambda s: replace(s, blocks=s.blocks[:1] + (replace(s.blocks[1], in_ch=9),) + s.blocks[2:]), "in_ch of block 1"),
    (lambda s: replace(s, blocks=s.blocks[:1] + (replace(s.blocks[1], kernel=4),) + s.blocks[2:]), "kernel of block 1"),
    (lambda s: replace(s, blocks=(replace(s.blocks[0], mid_ch=16),) + s.blocks[1:]), "mid_ch of block 0"),
    (lambda s: replace(s, blocks=s.blocks[:2] + (replace(s.blocks[2], act="gelu"),)), "act of block 2"),
    (lambda s: replace(s, blocks=s.blocks[:2] + (replace(s.blocks[2], se_gate="x"),)), "se_gate of block 2"),
    (lambda s: replace(s, head=replace(s.head, in_ch=8)), "in_ch of head"),
    (lambda s: replace(s, head=replace(s.head, dropout=1.5)), "dropout of head"),
    (lambda s: replace(s, head=replace(s.head, num_classes=0)), "num_classes of head"),
    (lambda s: replace(s, input_shape=(3, 0, 16)), "input_shape"),
])
def test_bad_specs_fail_early_naming_the_field(change, field) -> None:
    with pytest.raises(InvalidValue, match=field):
        build_network(change(_net_spec()))
