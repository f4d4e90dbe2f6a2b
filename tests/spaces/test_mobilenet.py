"""MENAS spaces menas-mt / menas-ws (MENAS Table 1, Fig. 3) and the shared MBConv space machinery."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import nasforge
from nasforge import Architecture, get_space
from nasforge.errors import InvalidArchitecture, InvalidValue, ParseError
from nasforge.nn.spec import make_divisible
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.mbconv_common import pruned_channels
from nasforge.spaces.mobilenet import PRUNE_RATES, MobileNet3Space

MT, WS = get_space("menas-mt"), get_space("menas-ws")


def _samples(space: SearchSpace, n: int, seed: int = 0) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def _enumerate(space: SearchSpace) -> list[dict]:
    """Every assignment of the active genes (depth-first in dimension order; masking decided on the way)."""
    dims, out = space.dimensions(), []

    def rec(i: int, genes: dict) -> None:
        if i == len(dims):
            out.append(dict(genes))
            return
        d = dims[i]
        if not space.is_active(d.label, genes):
            return rec(i + 1, genes)
        for choice in d.choices:
            genes[d.label] = choice
            rec(i + 1, genes)
            del genes[d.label]

    rec(0, {})
    return out


def _valid(space: SearchSpace, genes: dict) -> bool:
    try:
        space.make(genes)
        return True
    except InvalidArchitecture:
        return False


def test_table1_choices() -> None:
    dims = {d.label: d.choices for d in MT.dimensions()}
    assert dims["s1.l0.kernel"] == (3, 5, 7) and dims["s5.l5.expand"] == (1, 2, 3, 4, 5, 6)
    assert dims["s3.l2.se"] == (False, True) and dims["s2.depth"] == (1, 2, 3, 4, 5, 6)
    assert dims["s4.width"] == (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0) and dims["s1.down"] == (False, True)
    assert PRUNE_RATES[:3] == (0.7, 0.725, 0.75) and PRUNE_RATES[-2:] == (0.975, 1.0) and len(PRUNE_RATES) == 13
    assert "s5.l6.kernel" not in dims and len(dims) == 5 * (3 + 6 * 4)
    a = WS.sample(np.random.default_rng(0))
    assert sorted({k.split(".")[-1] for k in a}) == ["expand", "kernel"] and len(a) == 40  # 5 stages x 4 layers
    assert {a[k] for k in a if k.endswith("expand")} <= {3, 6}


def test_network_follows_fig3_and_mobilenetv3() -> None:
    arch = MT.parse("r2_s2_w1.5,k3_e6_se1_p0.8,k5_e1_se0-r1_s2_w1,k7_e2_se0_p1-r1_s1_w0.5,k3_e4_se1_p1-"
                    "r1_s2_w2,k5_e3_se0_p0.9-r1_s2_w1.25,k3_e1_se1")
    spec = MT.spec(arch)
    assert (spec.stem.out_ch, spec.stem.kernel, spec.stem.stride, spec.stem.act) == (16, 3, 2, "hswish")
    b = spec.blocks
    assert [x.out_ch for x in b] == [40, 40, 40, 40, 224, 200]  # make_divisible(base * w, 8)
    assert [x.stride for x in b] == [2, 1, 2, 1, 2, 2] and [x.act for x in b] == ["relu"] * 3 + ["hswish"] * 3
    assert b[0].mid_ch == pruned_channels(16 * 6, 0.8) == 76 and b[0].se_ch == make_divisible(76 / 4) == 24
    assert not b[1].expand and b[1].mid_ch == 40 and b[1].se_ch == 0 and b[1].has_skip
    assert b[3].mid_ch == 160 and b[3].se_gate == "hsigmoid" and b[3].se_ch == 40
    assert (spec.head.conv_ch, spec.head.feature_ch, spec.head.dropout, spec.head.num_classes) == (960, 1280, 0.2, 1000)
    assert spec.input_shape == (3, 224, 224)


def test_sizes_against_menas_and_mobilenetv3() -> None:
    """Issue 16, network widths (benchmarks/menas_widths.py has the measurement; the space docstring the argument).
    The base channels, stem and tail are MobileNetV3-Large's: written in the space it has MobileNetV3's 5.4 M
    parameters and 219 M multiply-adds. The head matches Table 3: 13.6 M -> 12.5 M (each rounded to 0.1 M) when
    the 1000-way classifier becomes a 100-way one. MENAS's 13.6 M at 1.5 G (Table 2) and more than random search's
    16.9 + 3.0 M (Table 4) are reachable inside the 1 ~ 1.6 G multiply-add window."""
    mnv3 = MT.parse("r2_s2_w1,k3_e4_se0_p1,k3_e3_se0_p1-r3_s2_w1,k5_e3_se1_p1,k5_e3_se1_p1,k5_e3_se1_p1-"
                    "r4_s2_w1,k3_e6_se0_p1,k3_e3_se0_p0.85,k3_e3_se0_p0.775,k3_e3_se0_p0.775-"
                    "r2_s1_w1,k3_e6_se1_p1,k3_e6_se1_p1-r3_s2_w1,k5_e6_se1_p1,k5_e6_se1_p1,k5_e6_se1_p1")
    assert MT.params(mnv3) == pytest.approx(5.4e6, rel=0.03) and MT.flops(mnv3) / 2 == pytest.approx(219e6, rel=0.05)
    assert 1.0e6 <= MT.params(mnv3, num_classes=1000) - MT.params(mnv3, num_classes=100) <= 1.2e6
    at_menas = MT.parse("r3_s2_w2,k7_e6_se1_p1,k7_e6_se1_p1,k7_e6_se1_p0.85-r2_s1_w1,k5_e6_se1_p1,k5_e4_se1_p1-"
                        "r2_s2_w1,k3_e6_se1_p1,k5_e3_se1_p0.75-r2_s2_w1.5,k5_e6_se1_p1,k7_e6_se1_p1-"
                        "r4_s1_w2,k5_e6_se1_p1,k5_e6_se1_p1,k5_e6_se1_p0.725,k5_e6_se1_p1")
    above = MT.parse("r6_s2_w2" + ",k7_e6_se0_p1" * 6 + "-r1_s2_w0.5,k3_e1_se0-r1_s2_w0.5,k3_e1_se0-"
                     "r2_s2_w2,k3_e6_se1_p1,k3_e6_se1_p1-r6_s1_w2" + ",k3_e6_se1_p1" * 6)
    assert MT.params(at_menas) == pytest.approx(13.6e6, rel=0.01) and MT.flops(at_menas) / 2 == \
        pytest.approx(1.5e9, rel=0.01)
    assert MT.params(above) > (16.9 + 3.0) * 1e6 and 1.0e9 <= MT.flops(above) / 2 <= 1.6e9


def test_ws_is_a_subspace_of_mt() -> None:
    """MobileNet3-WS architectures, with the fixed values spelled out, are MobileNet3-MT architectures that build
    the same network: the down-sample limit counts stages, not the stem (see the space docstring)."""
    for a in _samples(WS, 5, seed=4):
        b = MT.parse(str(a))
        assert MT.spec(b) == WS.spec(a)
        assert sum(b[f"s{s}.down"] for s in range(1, 6)) == 4


def test_downsample_constraint() -> None:
    text = "-".join(["r1_s2_w1,k3_e1_se0"] * 5)
    with pytest.raises(InvalidArchitecture, match=r"down-sampling stages of space .menas-mt.: got 5; allowed: at most 4"):
        MT.parse(text)
    assert MobileNet3Space(max_downsample=5).parse(text)["s5.down"] is True
    with pytest.raises(InvalidValue, match="max_downsample"):
        MobileNet3Space(downsample=[True] * 5, max_downsample=4)


def test_round_trips_and_validation() -> None:
    for space in (MT, WS):
        for a in _samples(space, 25, seed=1) + [space.smallest(), space.largest()]:
            assert space.validate(a) == a and space.contains(a)
            assert Architecture.from_json(a.to_json()) == a
            assert space.parse(str(a)) == a and nasforge.parse(f"{space.name}:{a}") == a


def test_masked_genes_do_not_change_the_key() -> None:
    a = MT.parse("r1_s2_w1,k3_e1_se0-r1_s2_w1,k3_e2_se0_p0.8-r1_s2_w1,k3_e1_se0-r1_s2_w1,k3_e1_se0-r1_s1_w1,k3_e1_se0")
    assert "s1.l0.prune" not in a and "s1.l1.kernel" not in a and "s2.l0.prune" in a
    b = MT.make({**a.to_dict(), "s1.l0.prune": 0.7, "s1.l1.kernel": 7, "s1.l1.expand": 6, "s5.l5.se": True})
    assert b == a and b.key() == a.key()
    assert WS.make({**WS.smallest().to_dict(), "s1.depth": 4, "s1.l0.se": True}) == WS.smallest()


def test_equal_networks_get_equal_keys() -> None:
    """make_divisible and int(full * p) collisions are canonicalised to the smallest equivalent choice."""
    base = MT.largest().to_dict()
    w_small = MT.make({**base, "s1.width": 0.625})   # make_divisible(24 * 5/8) == make_divisible(24 / 2) == 16
    assert w_small["s1.width"] == 0.5 and MT.spec(w_small).blocks[0].out_ch == 16
    e4 = MT.make({**base, "s1.l0.expand": 4, "s1.l0.prune": 0.75})  # 16 * 4 * 0.75 == 16 * 3 * 1.0 == 48
    e3 = MT.make({**base, "s1.l0.expand": 3, "s1.l0.prune": 1.0})
    assert e4 == e3 and (e3["s1.l0.expand"], e3["s1.l0.prune"]) == (3, 1.0)
    assert MT.spec(e3).blocks[0].mid_ch == 48


@pytest.mark.parametrize("config", [
    dict(base_channels=(24, 40, 80), depths=(1, 2), widths=(0.5, 0.625, 1.0), max_downsample=2, kernels=(3,),
         expands=(1,), se=(False,), prunes=(1.0,)),
    dict(base_channels=(24, 40), depths=(1, 2), widths=(1.0,), kernels=(3,), se=(False,), expands=(1, 3, 4),
         prunes=(0.75, 1.0), downsample=(True, False)),
], ids=["stages", "layers"])
def test_cardinality_equals_brute_force_count_of_distinct_networks(config) -> None:
    space = MobileNet3Space(**config)
    raw = [g for g in _enumerate(space) if _valid(space, g)]
    keys = {space.make(g).key() for g in raw}
    shape = space.default_input
    networks = set()
    for g in raw:  # the network of the masking-only architecture, values as given
        masked = SearchSpace.make(space, g)
        spec = space._network_spec(masked, shape, 10)
        assert spec == space._network_spec(space.make(g), shape, 10)  # canonical values build the same network
        networks.add(spec)
    assert space.cardinality() == len(keys) == len(networks) < len(raw)


def test_full_space_cardinalities() -> None:
    assert WS.cardinality() == 6 ** 20  # (3 kernels x 2 expand ratios) ** (5 stages x 4 layers)
    assert MT.cardinality() > 10 ** 80


def test_smallest_and_largest_bound_flops() -> None:
    for space in (MT, WS):
        lo, hi = space.flops(space.smallest()), space.flops(space.largest())
        assert all(lo <= space.flops(a) <= hi for a in _samples(space, 30, seed=2))
    small = MT.smallest()
    assert [small[f"s{s}.down"] for s in range(1, 6)] == [True, True, True, True, False]


def test_mutate_and_crossover_are_valid() -> None:
    rng = np.random.default_rng(3)
    archs = _samples(MT, 10, seed=6)
    for a, b in zip(archs, archs[1:]):
        m = MT.mutate(a, rng, n=2)
        assert m != a and MT.contains(m)
        assert MT.contains(MT.crossover(a, b, rng))


@pytest.mark.parametrize("space", [MT, WS], ids=["mt", "ws"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)], ids=["32x32x3", "28x28x1"])
def test_build_forward_and_costs_at_small_inputs(space, shape) -> None:
    for a in _samples(space, 5, seed=9) + [space.smallest()]:
        net = space.build(a, input_shape=shape, num_classes=10).eval()
        with torch.no_grad():
            y = net(torch.randn(2, *shape))
            fmap = net.forward_features(torch.randn(1, *shape))
        assert y.shape == (2, 10) and torch.isfinite(y).all()
        assert min(fmap.shape[2:]) >= 4  # stride plan keeps the map usable
        assert net.stem.conv.in_channels == shape[0]
        assert space.params(a, shape, 10) == sum(p.numel() for p in net.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.randn(1, *shape))
        assert space.flops(a, shape, 10) == counter.get_total_flops()


def test_costs_at_default_input_match_counters() -> None:
    a = MT.parse("r1_s2_w0.5,k3_e3_se1_p0.8-r2_s2_w0.5,k5_e1_se0,k3_e2_se1_p1-r1_s2_w0.5,k7_e1_se1-"
                 "r1_s2_w0.5,k3_e2_se0_p0.7-r1_s1_w0.5,k3_e1_se0")
    net = MT.build(a).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 3, 224, 224))
    assert MT.flops(a) == counter.get_total_flops() and MT.params(a) == sum(p.numel() for p in net.parameters())


def test_with_pruning_truncates_like_eq1() -> None:
    """The pruned child's tensors are the parent's truncated from the low index (MENAS Eq. 1): every child
    tensor loads from the parent's state dict sliced to the child's shape."""
    parent = MT.parse("r2_s2_w1,k3_e6_se1_p1,k5_e1_se0-r1_s2_w1,k3_e4_se0_p1-r1_s2_w1,k3_e3_se1_p0.9-"
                      "r1_s1_w1,k3_e1_se0-r1_s2_w1,k7_e5_se1_p1")
    layers = MT.prunable_layers(parent)
    assert layers == ["s1.l0", "s2.l0", "s3.l0", "s5.l0"]
    assert MT.layer_modules(parent)["s5.l0"] == "blocks.5"
    child = MT.with_pruning(parent, [0.7, 0.8, 0.9, 0.975])
    mids = [b.mid_ch for b in MT.spec(child).blocks]
    assert mids[0] == pruned_channels(96, 0.7) and mids[5] == pruned_channels(112 * 5, 0.975)
    big, small = MT.build(parent, (3, 32, 32), 10), MT.build(child, (3, 32, 32), 10)
    src = big.state_dict()
    sliced = {k: src[k][tuple(slice(0, n) for n in v.shape)] if v.dim() else src[k]
              for k, v in small.state_dict().items()}
    small.load_state_dict(sliced)
    assert torch.equal(small.blocks[0].dw.conv.weight, big.blocks[0].dw.conv.weight[:mids[0]])
    with pytest.raises(InvalidValue, match="pruning rates: got 2"):
        MT.with_pruning(parent, [0.7, 0.8])
    with pytest.raises(InvalidValue, match="pruning rate of s3.l0"):
        MT.with_pruning(parent, [1.0, 1.0, 1.0, 1.0])  # s3.l0 is at 0.9: cannot grow back
    with pytest.raises(InvalidArchitecture, match="s1.l0.prune"):
        MT.with_pruning(parent, [0.5, 1.0, 0.9, 1.0])
    assert WS.prunable_layers(WS.smallest()) and len(WS.prunable_layers(WS.smallest())) == 20


@pytest.mark.parametrize("text, match", [
    ("r1_s2_w1,k3_e1_se0", "5 stages"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1_w1,k3_e1_x0"]), "token: cannot parse 'x0'"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r2_s1_w1,k3_e1_se0"]), "stage 5"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s3_w1,k3_e1_se0"]), "s3"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1,k3_e1_se0"]), "stage 5 header"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1_w1,k3_e1"]), "stage 5 layer 0"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1_w1,k3_e1_se0_se1"]), "at most once"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1_w1,,k3_e1_se0"]), "none empty"),
])
def test_malformed_strings_raise_parse_error(text, match) -> None:
    with pytest.raises(ParseError, match=match):
        MT.parse(text)


@pytest.mark.parametrize("text, match", [
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1_w1,k9_e1_se0"]), r"gene 's5\.l0\.kernel'.*got 9; allowed: 3, 5, 7"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r7_s1_w1,k3_e1_se0"]), r"s5\.depth.*got 7"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1_w0.9,k3_e1_se0"]), r"s5\.width.*got 0\.9"),
    ("-".join(["r1_s2_w1,k3_e1_se0"] * 4 + ["r1_s1_w1,k3_e2_se0_p0.71"]), r"s5\.l0\.prune.*got 0\.71"),
])
def test_bad_values_name_the_gene(text, match) -> None:
    with pytest.raises(InvalidArchitecture, match=match):
        MT.parse(text)


def test_bad_constructor_arguments_and_inputs() -> None:
    for kwargs, field in [({"kernels": (3, 4)}, "kernels"), ({"prunes": (0.0,)}, "prunes"), ({"depths": ()}, "depths"),
                          ({"downsample": [True] * 4}, "downsample"), ({"se": (1,)}, "se"),
                          ({"base_channels": (40, 24)}, "base_channels")]:
        with pytest.raises(InvalidValue, match=field):
            MobileNet3Space(**kwargs)
    with pytest.raises(InvalidValue, match="input_shape"):
        MT.build(MT.smallest(), input_shape=(3, 32))
    with pytest.raises(InvalidValue, match="num_classes"):
        MT.flops(MT.smallest(), num_classes=0)
    with pytest.raises(InvalidArchitecture, match="space"):
        MT.spec(WS.smallest())
