"""The BigNAS space (Yu et al. 2020, Table 1 / Sec. 4.1): table facts, resolution rule, elastic nesting, codec."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasforge import Architecture, get_space, parse
from nasforge.errors import InvalidArchitecture, InvalidValue, NasforgeError, ParseError
from nasforge.nn.mbconv import InvertedResidual, MBConvNet
from nasforge.spaces.bignas import BigNASSpace, BigNASStage, ResolutionNet, scaled_size


@pytest.fixture(scope="module")
def space() -> BigNASSpace:
    return get_space("bignas")


def _counted(net: torch.nn.Module, inp: tuple[int, int, int]) -> int:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net.eval()(torch.randn(1, *inp))
    return fc.get_total_flops()


def _paper_child(space: BigNASSpace) -> Architecture:
    """The Sec. 4.4 child: res 256, depths 1:2:2:2:4:4:1, channels 32:16:24:48:88:128:216:352:1408,
    kernels 3:3:5:3:5:5:3 ("FLOPs near 650M")."""
    depth, width, kernel = [1, 2, 2, 2, 4, 4, 1], [16, 24, 48, 88, 128, 216, 352], [3, 3, 5, 3, 5, 5, 3]
    genes = {"resolution": 256, "stem.width": 32, "head.width": 1408}
    for k in range(7):
        genes[f"s{k + 1}.depth"], genes[f"s{k + 1}.width"] = depth[k], width[k]
        for j in range(depth[k]):
            genes[f"s{k + 1}.l{j}.kernel"], genes[f"s{k + 1}.l{j}.expand"] = kernel[k], 1 if k == 0 else 6
    return space.make(genes)


def test_table1_choices(space: BigNASSpace) -> None:
    dims = {d.label: d.choices for d in space.dimensions()}
    assert dims["resolution"] == (192, 224, 256, 288, 320)
    assert dims["stem.width"] == (32, 40) and dims["head.width"][0] == 1280 and dims["head.width"][-1] == 1408
    assert [dims[f"s{k}.depth"] for k in range(1, 8)] == [
        (1, 2), (2, 3), (2, 3), (2, 3, 4), (2, 3, 4, 5, 6), (2, 3, 4, 5, 6), (1, 2)]
    assert dims["s5.width"] == (112, 120, 128) and dims["s7.width"] == (320, 328, 336, 344, 352)
    # stage 1 is MBConv1 with 3x3 kernels; stage 2 has 3x3 only; stages 3-7 choose 3 or 5; expand fixed by operator
    assert dims["s1.l1.expand"] == (1,) and dims["s1.l0.kernel"] == (3,) and dims["s2.l2.kernel"] == (3,)
    assert dims["s3.l0.kernel"] == (3, 5) and dims["s6.l5.expand"] == (6,)
    assert "s1.l2.kernel" not in dims and "s5.l6.kernel" not in dims
    assert space.default_input == (3, 320, 320) and space.default_classes == 1000
    assert space.cardinality() > 10 ** 12  # Sec. 3.2: "more than 10^12" candidates


def test_paper_child_in_space_near_650_mflops(space: BigNASSpace) -> None:
    child = _paper_child(space)
    assert space.contains(child)
    macs = space.flops(child) / 2  # papers count multiply-adds
    assert 600e6 < macs < 700e6
    # pinned: 658.5M with the Sec. 3.1 stage-transition 1x1 convs, 636.8M without them
    assert space.flops(child) == 2 * 658_535_680 and space.params(child) == 6_691_740
    plain = BigNASSpace(transition_skip=False)
    assert plain.flops(child) == 2 * 636_794_112 and plain.params(child) == 6_570_524
    # the whole family spans the paper's 200 MFLOPs .. 1 GFLOPs models
    assert space.flops(space.smallest()) / 2 < 240e6 < 1e9 < space.flops(space.largest()) / 2


def test_strides_follow_table1_resolution_column(space: BigNASSpace) -> None:
    spec = space.spec(space.largest())
    assert spec.input_shape == (3, 320, 320) and spec.stem.stride == 2
    strides = [b.stride for b in spec.blocks]
    firsts = np.cumsum([0, 2, 3, 3, 4, 6, 6])  # depth of the largest child, stage by stage
    assert [strides[i] for i in firsts] == [1, 2, 2, 2, 1, 2, 1]
    assert sum(strides) == len(strides) + 4  # total stride 32: 320 -> 10, 192 -> 6


def test_canonical_dedup_of_layers_beyond_depth(space: BigNASSpace) -> None:
    a = space.smallest()
    assert "s5.l2.kernel" not in a and a["s5.depth"] == 2
    b = space.make({**a.to_dict(), "s5.l2.kernel": 5, "s5.l3.kernel": 3, "s5.l2.expand": 6})
    assert b == a and b.key() == a.key()
    deeper = space.make({**b.to_dict(), "s5.depth": 3, "s5.l2.kernel": 5, "s5.l2.expand": 6})
    assert deeper != a and deeper["s5.l2.kernel"] == 5
    with pytest.raises(InvalidArchitecture, match=r"s5\.l2\.kernel"):
        space.make({**a.to_dict(), "s5.depth": 3})  # a layer that becomes active needs its genes


def test_every_child_nests_in_the_full_model(space: BigNASSpace) -> None:
    """Elastic supernet layout (Sec. 4.1): lower-index channels, first-k layers, centre-cropped kernels."""
    full = space.spec(space.largest())
    depths = [2, 3, 3, 4, 6, 6, 2]
    start = np.cumsum([0] + depths[:-1])
    rng = np.random.default_rng(0)
    for a in [space.smallest()] + [space.sample(rng) for _ in range(10)]:
        spec, i = space.spec(a), 0
        assert spec.stem.out_ch <= full.stem.out_ch and spec.head.conv_ch <= full.head.conv_ch
        for k in range(7):
            for j in range(int(a[f"s{k + 1}.depth"])):
                b, f = spec.blocks[i], full.blocks[start[k] + j]
                for field in ("in_ch", "mid_ch", "out_ch", "se_ch"):
                    assert getattr(b, field) <= getattr(f, field), (str(a), i, field)
                assert b.kernel <= f.kernel and b.kernel % 2 == 1 and b.stride == f.stride
                i += 1
        assert i == len(spec.blocks)


def test_resolution_rule_and_resizing_net(space: BigNASSpace) -> None:
    assert [scaled_size(32, r, 320) for r in (192, 224, 256, 288, 320)] == [19, 22, 26, 29, 32]
    assert [scaled_size(28, r, 320) for r in (192, 320)] == [17, 28]
    a = space.smallest()  # resolution 192
    assert space.spec(a).input_shape == (3, 192, 192)  # default input: the gene is the input size
    assert space.spec(a, (3, 320, 320)).input_shape == (3, 192, 192)
    assert space.spec(a, (1, 28, 30)).input_shape == (1, 17, 18)
    net = space.build(a, (3, 32, 32), 10)
    assert isinstance(net, ResolutionNet) and net.input_size == (19, 19)
    plain = MBConvNet(net.spec)
    assert list(net.state_dict()) == list(plain.state_dict())  # same names as every MBConv network
    plain.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(x, size=(19, 19), mode="bicubic", align_corners=False)
        torch.testing.assert_close(net.eval()(x), plain.eval()(resized))
        torch.testing.assert_close(net(resized), plain(resized))  # right-sized input passes untouched


def test_stride_plan_shared_by_all_resolutions(space: BigNASSpace) -> None:
    a = space.largest()
    plans = {tuple(b.stride for b in space.spec(a.replace(resolution=r), (3, 32, 32)).blocks)
             for r in (192, 224, 256, 288, 320)}
    assert len(plans) == 1  # the topology does not depend on the resolution gene
    # 32 px: the stem and two block strides are kept (32 -> 16 -> 8 -> 4), later ones become stride 1
    assert space.spec(a, (3, 32, 32)).stem.stride == 2 and next(iter(plans)).count(2) == 2


def test_flops_match_counter_at_paper_resolution(space: BigNASSpace) -> None:
    child = _paper_child(space)
    net = space.build(child, num_classes=5)
    assert space.flops(child, num_classes=5) == _counted(net, (3, 256, 256))
    assert space.params(child) == sum(p.numel() for p in space.build(child).parameters())


def test_transition_skips_exactly_where_shapes_differ(space: BigNASSpace) -> None:
    """Sec. 3.1: a shortcut (2x2 avg pool and/or 1x1 conv) at each stage transition, where the resolution or the
    channels change; identity skips elsewhere. Analytic costs still equal the counted ones."""
    rng = np.random.default_rng(3)
    for a in [space.smallest(), space.sample(rng)]:
        spec = space.spec(a, (3, 32, 32), 10)
        net = space.build(a, (3, 32, 32), 10).eval()
        for (k, j), b, block in zip(space.block_positions(a), spec.blocks, net.blocks):
            differ = b.stride == 2 or b.in_ch != b.out_ch
            assert (block.shortcut is not None) == differ == (j == 0) and block.has_skip == (not differ)
            if differ:
                assert isinstance(block.shortcut.pool, torch.nn.AvgPool2d) == (b.stride == 2)
                assert isinstance(block.shortcut.conv, torch.nn.Conv2d) == (b.in_ch != b.out_ch)
        assert space.flops(a, (3, 32, 32), 10) == _counted(net, (3, 32, 32))
        assert space.params(a, (3, 32, 32), 10) == sum(p.numel() for p in net.parameters())
    plain = BigNASSpace(transition_skip=False).build(space.smallest(), (3, 32, 32), 10)
    assert all(block.shortcut is None for block in plain.blocks)
    with pytest.raises(InvalidValue, match="transition_skip"):
        BigNASSpace(transition_skip="yes")  # type: ignore[arg-type]


def test_block_positions_and_layer_modules(space: BigNASSpace) -> None:
    a = _paper_child(space)
    positions = space.block_positions(a)
    assert positions[:3] == [(1, 0), (2, 0), (2, 1)] and positions[-1] == (7, 0)
    assert len(positions) == len(space.spec(a).blocks) == 1 + 2 + 2 + 2 + 4 + 4 + 1
    modules = space.layer_modules(a)
    assert modules["s1.l0"] == "blocks.0" and modules["s6.l3"] == "blocks.14" and len(modules) == 16
    net = space.build(a, (3, 32, 32), 10)
    assert all(isinstance(net.get_submodule(m), InvertedResidual) for m in modules.values())


def test_samples_mutate_crossover_and_round_trips(space: BigNASSpace) -> None:
    rng = np.random.default_rng(7)
    archs = [space.sample(rng) for _ in range(12)]
    assert len({a.key() for a in archs}) == len(archs)
    for a, b in zip(archs, archs[1:]):
        assert space.validate(a) == a
        assert Architecture.from_json(a.to_json()) == a and parse(a.to_json()) == a
        assert space.parse(str(a)) == a and parse(f"bignas:{a}") == a
        m = space.mutate(a, rng, n=3)
        c = space.crossover(a, b, rng)
        assert m != a and space.contains(m) and space.contains(c)
        for label in c:
            if ".l" not in label:  # stage / network genes come from a parent; layer genes may be re-filled
                assert c[label] in (a[label], b[label])


def test_string_format_is_readable_and_strict(space: BigNASSpace) -> None:
    text = str(space.smallest())
    assert text == ("res192_c32-r1_c16,k3_e1-r2_c24,k3_e6,k3_e6-r2_c40,k3_e6,k3_e6-r2_c80,k3_e6,k3_e6"
                    "-r2_c112,k3_e6,k3_e6-r2_c192,k3_e6,k3_e6-r1_c320,k3_e6-c1280")
    bad = {
        "res192_c32-r1_c16,k3_e1": ParseError,                           # too few stages
        text.replace("r1_c16,k3_e1", "r1_c16,k3_e1,k3_e1"): ParseError,  # more layers than r1
        text.replace("r1_c16,k3_e1", "r1_c16,k3"): ParseError,           # missing e token
        text.replace("r1_c16,k3_e1", "r1_c16,k3_e1_se1"): ParseError,    # token outside the table
        text.replace("res192", "res100"): InvalidArchitecture,           # value outside the space
        text.replace("r2_c24,k3_e6,k3_e6", "r4_c24,k3_e6,k3_e6,k3_e6,k3_e6"): InvalidArchitecture,
    }
    for s, err in bad.items():
        with pytest.raises(err):
            space.parse(s)
    with pytest.raises(InvalidArchitecture, match=r"'resolution'.*100.*192"):
        space.parse(text.replace("res192", "res100"))
    with pytest.raises(InvalidArchitecture, match=r"s2\.depth"):
        space.parse(text.replace("r2_c24,k3_e6,k3_e6", "r4_c24,k3_e6,k3_e6,k3_e6,k3_e6"))
    with pytest.raises(InvalidArchitecture, match=r"s3\.l0\.kernel"):
        space.parse(text.replace("r2_c40,k3_e6", "r2_c40,k7_e6"))


def test_bad_genes_and_inputs_raise_nasforge_errors(space: BigNASSpace) -> None:
    a = space.largest()
    with pytest.raises(InvalidArchitecture, match=r"s1\.width.*20"):
        space.make({**a.to_dict(), "s1.width": 20})
    with pytest.raises(InvalidArchitecture, match=r"stem\.width"):
        space.make({k: v for k, v in a.to_dict().items() if k != "stem.width"})
    with pytest.raises(InvalidValue, match="input_shape"):
        space.build(a, (3, 32))
    with pytest.raises(NasforgeError, match="space"):
        space.validate(Architecture("nb201", a.to_dict()))


def _tiny() -> BigNASSpace:
    return BigNASSpace(stages=(BigNASStage((8, 16), (1, 2), (3,), (1,), 1),
                               BigNASStage((16,), (1, 2, 3), (3, 5), (3, 6), 2)),
                       resolutions=(24, 32), stem_widths=(8,), head_widths=(32, 40))


def test_cardinality_by_brute_force_on_a_tiny_table() -> None:
    tiny = _tiny()
    dims = tiny.dimensions()
    seen = {tiny.make(dict(zip([d.label for d in dims], values))).key()
            for values in itertools.product(*(d.choices for d in dims))}
    assert tiny.cardinality() == len(seen) == 2 * 1 * 2 * (2 * (1 + 1)) * (1 * (4 + 16 + 64))
    lo, hi = tiny.flops(tiny.smallest()), tiny.flops(tiny.largest())
    rng = np.random.default_rng(0)
    assert all(lo <= tiny.flops(tiny.sample(rng)) <= hi for _ in range(20))
    a = tiny.sample(rng)
    assert tiny.parse(tiny.format(a)) == a


def test_constructor_validates_tables() -> None:
    with pytest.raises(InvalidValue, match="stage 1 kernels"):
        BigNASSpace(stages=(BigNASStage((8,), (1,), (4,), (1,), 1),))
    with pytest.raises(InvalidValue, match="stage 1 stride"):
        BigNASSpace(stages=(BigNASStage((8,), (1,), (3,), (1,), 3),))
    with pytest.raises(InvalidValue, match="resolutions"):
        BigNASSpace(resolutions=(320, 192))
    with pytest.raises(InvalidValue, match="stages"):
        BigNASSpace(stages=())
