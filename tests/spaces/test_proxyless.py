"""PAD-NAS's ProxylessNAS-style spaces (Xia et al., Sec. 4.1, Tables 1-2): layer rules, op sets, restrict(), codec."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasforge import Architecture, get_space, parse
from nasforge.errors import InvalidArchitecture, InvalidValue, ParseError, UnknownName
from nasforge.spaces.proxyless import IDENTITY, ProxylessSpace, op_fields, op_name

STAGE_FIRST = [0, 1, 5, 9, 13, 17, 21]  # first SBS of each of the 7 stages (Table 1 repeats 1-4-4-4-4-4-1)


@pytest.fixture(scope="module", params=["proxyless-basic", "proxyless-large"])
def space(request: pytest.FixtureRequest) -> ProxylessSpace:
    return get_space(request.param)


def _counted(net: torch.nn.Module, inp: tuple[int, int, int]) -> int:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net.eval()(torch.randn(1, *inp))
    return fc.get_total_flops()


def test_paper_search_space_sizes() -> None:
    """Sec. 4.1: basic 3 x 6^6 x 7^15 (~6.64e17), large 3 x 18^6 x 19^15 (~1.55e27)."""
    assert get_space("proxyless-basic").cardinality() == 3 * 6 ** 6 * 7 ** 15
    assert get_space("proxyless-large").cardinality() == 3 * 18 ** 6 * 19 ** 15
    assert f"{get_space('proxyless-large').cardinality():.2e}" == "1.55e+27"


def test_layer_rules(space: ProxylessSpace) -> None:
    sets = space.op_sets()
    assert list(sets) == [f"l{i}.op" for i in range(22)]
    assert sets["l0.op"] == ("k3_e1", "k5_e1", "k7_e1")  # first SBS: expansion fixed to 1
    for i in range(1, 22):
        ops = sets[f"l{i}.op"]
        assert (IDENTITY in ops) == (i not in STAGE_FIRST)  # no identity in the first layer of a stage
        expands = {op_fields(op)[1] for op in ops if op != IDENTITY}
        assert expands == ({3, 6} if space.name == "proxyless-basic" else {1, 2, 3, 4, 5, 6})
        assert {op_fields(op)[0] for op in ops if op != IDENTITY} == {3, 5, 7}


def test_channel_plan_and_identity_skipping(space: ProxylessSpace) -> None:
    spec = space.spec(space.largest())
    basic = space.name == "proxyless-basic"
    assert spec.stem.out_ch == (32 if basic else 16) and spec.stem.stride == 2
    firsts = [spec.blocks[i] for i in STAGE_FIRST]
    assert [b.out_ch for b in firsts] == [16, 32 if basic else 24, 40, 80, 96, 192, 320]
    assert [b.stride for b in firsts] == [1, 2, 2, 2, 1, 2, 1]
    assert spec.head.conv_ch == 1280 and spec.head.num_classes == 1000 and spec.blocks[0].expand is False
    assert all(b.act == "relu6" and b.se_ch == 0 for b in spec.blocks)  # no SE, no swish (Sec. 4.1)
    small = space.spec(space.smallest())
    assert len(small.blocks) == len(STAGE_FIRST)  # identity layers are left out entirely
    assert space.flops(space.smallest()) < space.flops(space.largest())


def test_identity_positions_are_distinct_architectures() -> None:
    space = get_space("proxyless-basic")
    base = space.largest().to_dict()
    a = space.make({**base, "l2.op": "k3_e6", "l3.op": IDENTITY})
    b = space.make({**base, "l2.op": IDENTITY, "l3.op": "k3_e6"})
    assert a != b and a.key() != b.key()       # per-layer op genes (ProxylessNAS / SPOS choice blocks) ...
    assert space.spec(a) == space.spec(b)      # ... even though the standalone networks are equal


def test_smallest_and_largest_by_flops(space: ProxylessSpace) -> None:
    lo, hi = space.smallest(), space.largest()
    cheapest = "k3_e3" if space.name == "proxyless-basic" else "k3_e1"
    for i in range(22):
        assert hi[f"l{i}.op"] == ("k7_e1" if i == 0 else "k7_e6")
        assert lo[f"l{i}.op"] == ("k3_e1" if i == 0 else cheapest if i in STAGE_FIRST else IDENTITY)
    rng = np.random.default_rng(0)
    flops = [space.flops(space.sample(rng)) for _ in range(30)]
    assert space.flops(lo) <= min(flops) and max(flops) <= space.flops(hi)


def test_restrict_semantics() -> None:
    full = get_space("proxyless-basic")
    r = full.restrict({"l3.op": ["k7_e6", "identity", "k3_e3"], "l0.op": ("k5_e1",)})
    assert r.name == full.name and isinstance(r, type(full))
    assert r.op_sets()["l3.op"] == ("identity", "k3_e3", "k7_e6")  # canonical order, whatever was given
    assert r.op_sets()["l0.op"] == ("k5_e1",)
    assert all(r.op_sets()[k] == v for k, v in full.op_sets().items() if k not in ("l0.op", "l3.op"))
    assert full.op_sets()["l3.op"] == full.op_sets()["l4.op"]  # the original space is unchanged
    assert r.cardinality() == full.cardinality() // (7 * 3) * 3
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = r.sample(rng)
        assert a["l0.op"] == "k5_e1" and a["l3.op"] in ("identity", "k3_e3", "k7_e6")
        assert full.contains(a) and str(a) == r.format(a)  # valid in the full space: PAD-NAS stages share archs
        m = r.mutate(a, rng)
        assert r.contains(m) and m != a
    with pytest.raises(InvalidArchitecture, match=r"l3\.op"):
        r.validate(full.largest().replace(**{"l3.op": "k5_e6", "l0.op": "k5_e1"}))
    rr = r.restrict({"l3.op": ["k3_e3"]})
    assert rr.op_sets()["l3.op"] == ("k3_e3",) and rr.cardinality() == r.cardinality() // 3
    assert get_space("proxyless-basic", op_sets={"l3.op": ["k3_e3"]}).op_sets()["l3.op"] == ("k3_e3",)


def test_restrict_and_constructor_errors() -> None:
    full = get_space("proxyless-basic")
    r = full.restrict({"l3.op": ["k3_e3", "identity"]})
    with pytest.raises(InvalidValue, match=r"op set of 'l3\.op'.*k7_e6"):
        r.restrict({"l3.op": ["k7_e6"]})            # restrict only shrinks
    with pytest.raises(InvalidValue, match=r"op set of 'l1\.op'.*identity"):
        full.restrict({"l1.op": ["identity"]})      # identity forbidden in a stage's first layer
    with pytest.raises(InvalidValue, match=r"op set of 'l0\.op'.*k3_e6"):
        full.restrict({"l0.op": ["k3_e6"]})         # first SBS has E1
    with pytest.raises(InvalidValue, match=r"op set of 'l2\.op'.*k3_e2"):
        full.restrict({"l2.op": ["k3_e2"]})         # E2 only in the large space
    with pytest.raises(InvalidValue, match=r"op set of 'l2\.op'.*\[\]"):
        full.restrict({"l2.op": []})                # every layer keeps >= 1 op
    with pytest.raises(InvalidValue, match=r"op set of 'l2\.op'"):
        full.restrict({"l2.op": "k3_e3"})           # a bare string is not a set of ops
    with pytest.raises(UnknownName, match="l22.op"):
        full.restrict({"l22.op": ["k3_e3"]})
    with pytest.raises(InvalidValue, match=r"op set of 'l5\.op'.*k9_e6"):
        get_space("proxyless-large", op_sets={"l5.op": ["k9_e6"]})
    assert get_space("proxyless-large").restrict({"l2.op": ["k3_e2"]}).op_sets()["l2.op"] == ("k3_e2",)


def test_cardinality_by_brute_force_on_restricted_space() -> None:
    large = get_space("proxyless-large")
    keep = {label: ops[:1] for label, ops in large.op_sets().items()}
    keep.update({"l0.op": ("k3_e1", "k7_e1"), "l2.op": ("identity", "k3_e2", "k5_e5"), "l6.op": ("k3_e1", "k5_e4"),
                 "l21.op": ("k3_e6", "k7_e6")})
    tiny = large.restrict(keep)
    dims = tiny.dimensions()
    seen = {tiny.make(dict(zip([d.label for d in dims], values)))
            for values in itertools.product(*(d.choices for d in dims))}
    assert tiny.cardinality() == len(seen) == 2 * 3 * 2 * 2
    lo, hi = tiny.smallest(), tiny.largest()
    assert all(tiny.flops(lo) <= tiny.flops(a) <= tiny.flops(hi) for a in seen)
    assert min(seen, key=tiny.flops) == lo and max(seen, key=tiny.flops) == hi


def test_flops_match_counter_at_224() -> None:
    space = get_space("proxyless-large")
    a = space.sample(np.random.default_rng(2))
    net = space.build(a)
    assert space.flops(a) == _counted(net, (3, 224, 224))
    assert space.params(a) == sum(p.numel() for p in net.parameters())
    assert 1e6 < space.params(a) < 6e6  # Table 3: PAD-NAS models have 3.7M-4.7M parameters


def test_samples_mutate_crossover_and_round_trips(space: ProxylessSpace) -> None:
    rng = np.random.default_rng(9)
    archs = [space.sample(rng) for _ in range(10)]
    for a, b in zip(archs, archs[1:]):
        assert space.validate(a) == a and len(a) == 22
        assert Architecture.from_json(a.to_json()) == a and parse(a.to_json()) == a
        assert space.parse(str(a)) == a and parse(f"{space.name}:{a}") == a
        assert space.decode(space.encode(a)) == a
        m = space.mutate(a, rng)
        assert space.contains(m) and sum(m[k] != a[k] for k in a) == 1
        c = space.crossover(a, b, rng)
        assert space.contains(c) and all(c[k] in (a[k], b[k]) for k in c)


def test_string_format_and_parse_errors() -> None:
    space = get_space("proxyless-basic")
    a = space.smallest()
    text = str(a)
    assert text == "-".join(["k3_e1"] + ["k3_e3,identity,identity,identity"] * 5 + ["k3_e3"])
    assert op_name(5, 6) == "k5_e6" and op_fields("k5_e6") == (5, 6)
    bad = {
        "k3_e1-k3_e3": ParseError,                                             # 2 stages, not 7
        text.replace("k3_e3,identity,identity,identity", "k3_e3,identity", 1): ParseError,  # 2 layers, not 4
        text.replace("k3_e1-", "k3_x1-"): ParseError,                          # unknown token
        text.replace("k3_e1-", "k3-"): ParseError,                             # missing expansion
        text.replace("k3_e1-", "k3_e1_se1-"): ParseError,                      # no SE token in this space
    }
    for s, err in bad.items():
        with pytest.raises(err):
            space.parse(s)
    with pytest.raises(InvalidArchitecture, match=r"l1\.op.*identity"):
        space.parse(text.replace("k3_e1-k3_e3", "k3_e1-identity", 1))
    with pytest.raises(InvalidArchitecture, match=r"l0\.op.*k3_e2"):
        space.parse(text.replace("k3_e1-", "k3_e2-", 1))
    with pytest.raises(InvalidArchitecture, match=r"l4\.op"):
        space.make({**a.to_dict(), "l4.op": "k3_e2"})  # an op of the large space only
    assert get_space("proxyless-large").parse(text.replace("k3_e3", "k3_e2")).get("l1.op") == "k3_e2"
