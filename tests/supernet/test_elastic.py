"""nasforge.supernet: elastic ops and the elastic MBConv supernet (BigNAS Sec. 3.1 / 4.1; DESIGN.md "Supernet").

The key invariant (DESIGN.md): after BN calibration, ``activate(a)(x) == extract(a)(x)``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from nasforge import Architecture, get_space
from nasforge.errors import InvalidArchitecture, InvalidValue
from nasforge.nn.mbconv import TransitionShortcut
from nasforge.spaces.bignas import BigNASSpace, BigNASStage
from nasforge.spaces.mobilenet import MobileNet3Space
from nasforge.supernet import ElasticMBConvSupernet, Supernet
from nasforge.supernet.elastic import batch_norm, crop_index
from nasforge.train import calibrate_bn

SHAPE, CLASSES = (3, 32, 32), 10


def _tiny_bignas(transition_skip: bool = True) -> BigNASSpace:
    """Every elastic dimension of Table 1 in miniature: resolution, stem / stage / head widths, depth, kernels
    3-7 and expand ratios including 1 (no expansion conv) inside a stage that also expands. Stem and stage-1 widths
    overlap, so stage 1's first layer is an identity block in some children and a transition in others."""
    return BigNASSpace(stages=(BigNASStage((8, 16), (1, 2), (3,), (1,), 1),
                               BigNASStage((16, 24), (1, 2, 3), (3, 5), (1, 3, 6), 2),
                               BigNASStage((24, 32), (1, 2), (3, 5, 7), (4, 6), 2)),
                       resolutions=(24, 28, 32), stem_widths=(8, 16), head_widths=(32, 48),
                       transition_skip=transition_skip)


def _perturb_bn(net: nn.Module, seed: int) -> None:
    """Random BN affine parameters, so a wrong slice of gamma / beta cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)


def _supernet(space, seed: int = 0, shape=SHAPE) -> ElasticMBConvSupernet:
    net = Supernet(space, shape, CLASSES, zero_init_last_bn=False, generator=torch.Generator().manual_seed(seed))
    _perturb_bn(net, seed + 1)
    return net


def _batches(n: int, seed: int, shape=SHAPE, size: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, *shape, generator=g) for _ in range(n)]


def _activate_equals_extract(net: ElasticMBConvSupernet, archs: list[Architecture], x: torch.Tensor) -> None:
    for i, a in enumerate(archs):
        with net.activate(a):
            assert calibrate_bn(net, _batches(2, i, tuple(x.shape[1:])), 2) == 2
            net.eval()
            with torch.no_grad():
                y = net(x)
        child = net.extract(a).eval()
        with torch.no_grad():
            y_child = child(x)
        assert torch.allclose(y, y_child, atol=1e-5), (str(a), (y - y_child).abs().max())


def _expected_index(full: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Independent statement of the elastic rule: lower-index channels, centred kernels."""
    return tuple(slice(0, s) if d < 2 else slice((f - s) // 2, (f - s) // 2 + s)
                 for d, (f, s) in enumerate(zip(full, shape)))


def _block_map(net: ElasticMBConvSupernet, arch: Architecture) -> dict[int, int]:
    """Child block index -> supernet block index, from the spaces' (stage, layer) positions."""
    big = {pos: i for i, pos in enumerate(net.space.block_positions(net.space.largest()))}
    return {i: big[pos] for i, pos in enumerate(net.space.block_positions(arch))}


def _supernet_name(name: str, blocks: dict[int, int]) -> str:
    parts = name.split(".")
    if parts[0] == "blocks":
        parts[1] = str(blocks[int(parts[1])])
    return ".".join(parts)


@pytest.fixture(scope="module")
def tiny() -> BigNASSpace:
    return _tiny_bignas()


@pytest.fixture(scope="module")
def tiny_net(tiny: BigNASSpace) -> ElasticMBConvSupernet:
    return _supernet(tiny)


# --------------------------------------------------------------------------------------------- key invariant
@pytest.mark.slow
def test_activated_supernet_equals_extracted_child_for_50_archs(tiny: BigNASSpace) -> None:
    shape = (3, 16, 16)  # small input: resolutions 12, 14 and 16 px
    net = _supernet(tiny, seed=3, shape=shape)
    rng = np.random.default_rng(0)
    archs = [tiny.smallest(), tiny.largest()] + [tiny.sample(rng) for _ in range(48)]
    assert len({a.key() for a in archs}) > 40
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(9))
    _activate_equals_extract(net, archs, x)


def test_full_table1_space_at_32px() -> None:
    space = get_space("bignas")
    net = _supernet(space, seed=5)
    largest = space.build(space.largest(), SHAPE, CLASSES)
    assert list(net.state_dict()) == list(largest.state_dict())  # a trained largest child loads as it is
    _activate_equals_extract(net, [space.smallest(), space.sample(np.random.default_rng(1))], torch.randn(2, *SHAPE))


def test_menas_ws_activate_equals_extract() -> None:
    space = get_space("menas-ws")
    net = _supernet(space, seed=11)
    _activate_equals_extract(net, [space.smallest(), space.sample(np.random.default_rng(2))], torch.randn(2, *SHAPE))


def test_reduced_menas_mt_nests_every_gene() -> None:
    """Per-stage width, depth, down-sampling and per-layer kernel, expand (incl. 1), SE and pruning all nest."""
    space = MobileNet3Space(kernels=(3, 5), expands=(1, 3, 6), prunes=(0.75, 1.0), depths=(1, 2),
                            widths=(0.5, 1.0), base_channels=(24, 40, 80))
    net = _supernet(space, seed=13)
    rng = np.random.default_rng(3)
    archs = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(6)]
    specs = [space.spec(a, SHAPE, CLASSES) for a in archs]
    assert any(not b.expand for s in specs for b in s.blocks) and any(b.se_ch == 0 for s in specs for b in s.blocks)
    assert len({tuple(b.stride for b in s.blocks[:1]) for s in specs}) == 2  # stride is not a weight
    for a in archs:
        assert list(space.layer_modules(a)) == [f"s{k}.l{j}" for k, j in space.block_positions(a)]
    _activate_equals_extract(net, archs, torch.randn(2, *SHAPE))


# --------------------------------------------------------------------------------------------- extraction
def test_extract_holds_lower_index_channels_and_centre_kernels(tiny: BigNASSpace,
                                                               tiny_net: ElasticMBConvSupernet) -> None:
    a = tiny.make({**tiny.largest().to_dict(), "s3.width": 24, "s3.l0.kernel": 3, "s3.l0.expand": 4,
                   "s3.l1.kernel": 5, "s2.l0.expand": 3, "stem.width": 8, "head.width": 32})
    child = tiny_net.extract(a)
    big = tiny_net.state_dict()
    blocks = _block_map(tiny_net, a)
    ref = tiny.build(a, SHAPE, CLASSES).state_dict()
    assert list(child.state_dict()) == list(ref) and type(child) is type(tiny.build(a))
    for name, t in child.state_dict().items():
        assert t.shape == ref[name].shape, name
        src = big[_supernet_name(name, blocks)]
        assert torch.equal(t, src[_expected_index(src.shape, t.shape)]), name
    k3 = next(i for i, pos in enumerate(tiny.block_positions(a)) if pos == (3, 0))
    w, full = child.blocks[k3].dw.conv.weight, tiny_net.blocks[blocks[k3]].dw.conv.weight
    assert w.shape == (4 * 24, 1, 3, 3) and full.shape == (6 * 24, 1, 7, 7)
    assert torch.equal(w, full[:96, :, 2:5, 2:5])  # the centre 3x3 of the 7x7, lower-index channels
    assert torch.equal(child.stem.conv.weight, tiny_net.stem.conv.weight[:8])
    assert torch.equal(child.head.classifier.weight, tiny_net.head.classifier.weight[:, :32])
    assert all(type(m).__module__.startswith(("torch.", "nasforge.nn", "nasforge.spaces")) for m in child.modules())


def test_extract_and_child_state_dict_are_copies(tiny: BigNASSpace, tiny_net: ElasticMBConvSupernet) -> None:
    a = tiny.smallest()
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    child = tiny_net.extract(a)
    state = tiny_net.child_state_dict(a)
    with torch.no_grad():
        for p in child.parameters():
            p.add_(1.0)
        for t in state.values():
            t.add_(1)
    assert all(torch.equal(v, before[k]) for k, v in tiny_net.state_dict().items())
    assert set(state) == set(tiny.build(a, SHAPE, CLASSES).state_dict())
    with torch.no_grad():
        tiny_net.stem.conv.weight.mul_(2.0)
    try:
        assert not torch.equal(child.stem.conv.weight, tiny_net.stem.conv.weight[:8] + 1.0)
    finally:
        with torch.no_grad():
            tiny_net.stem.conv.weight.div_(2.0)


def test_training_step_matches_the_child(tiny: BigNASSpace) -> None:
    """Train mode: batch statistics, in-place update of the sliced running stats, and gradients that land on the
    child's slice only, equal to the extracted child's."""
    net = _supernet(tiny, seed=21)
    net.head_dropout.p = 0.0
    a = tiny.sample(np.random.default_rng(5))
    child = net.extract(a).train()
    child.head.dropout.p = 0.0
    x = torch.randn(6, *SHAPE)
    with net.activate(a):
        y = net.train()(x)
    y_child = child(x)
    torch.testing.assert_close(y, y_child, atol=1e-5, rtol=1e-5)
    y.square().mean().backward()
    y_child.square().mean().backward()
    blocks, params = _block_map(net, a), dict(net.named_parameters())
    for name, p in child.named_parameters():
        grad = params[_supernet_name(name, blocks)].grad
        index = _expected_index(grad.shape, p.shape)
        torch.testing.assert_close(grad[index], p.grad, atol=1e-6, rtol=1e-4)
        rest = grad.clone()
        rest[index] = 0
        assert not rest.any(), name
    for name, buf in child.named_buffers():
        src = dict(net.named_buffers())[_supernet_name(name, blocks)]
        torch.testing.assert_close(src[_expected_index(src.shape, buf.shape)], buf, atol=1e-6, rtol=1e-5)


def test_batch_norm_updates_only_the_active_slice() -> None:
    bn = nn.BatchNorm2d(6)
    ref = nn.BatchNorm2d(4)
    x = torch.randn(5, 4, 3, 3)
    y = batch_norm(bn, x)
    torch.testing.assert_close(y, ref(x))
    torch.testing.assert_close(bn.running_mean[:4], ref.running_mean)
    assert torch.equal(bn.running_mean[4:], torch.zeros(2)) and torch.equal(bn.running_var[4:], torch.ones(2))
    bn.momentum = ref.momentum = None  # cumulative average, as calibrate_bn uses it
    for _ in range(2):
        x = torch.randn(5, 4, 3, 3)
        torch.testing.assert_close(batch_norm(bn, x), ref(x))
    torch.testing.assert_close(bn.running_var[:4], ref.running_var)
    assert int(bn.num_batches_tracked) == 3


def test_crop_index_rule_and_errors() -> None:
    assert crop_index((8, 6, 7, 7), (4, 6, 3, 3)) == (slice(0, 4), slice(0, 6), slice(2, 5), slice(2, 5))
    assert crop_index((10,), (3,)) == (slice(0, 3),)
    for shape in [(9, 6, 3, 3), (4, 6, 4, 4), (4, 6, 3)]:
        with pytest.raises(InvalidValue, match="weight"):
            crop_index((8, 6, 7, 7), shape)


# --------------------------------------------------------------------------------------------- activation
def test_activation_is_scoped_and_does_not_nest(tiny: BigNASSpace, tiny_net: ElasticMBConvSupernet) -> None:
    net, x = tiny_net.eval(), torch.randn(2, *SHAPE)
    with torch.no_grad():
        y_largest = net(x)
        assert torch.equal(y_largest, net.extract(tiny.largest()).eval()(x))
        a, b = tiny.smallest(), tiny.sample(np.random.default_rng(1))
        with pytest.raises(RuntimeError, match="boom"):
            with net.activate(a):
                assert net.active_arch == a
                y_small = net(x)
                raise RuntimeError("boom")
        assert net.active_arch is None and torch.equal(net(x), y_largest)
        assert y_small.shape == y_largest.shape and not torch.allclose(y_small, y_largest)
        with net.activate(a):
            with pytest.raises(InvalidValue, match="activate"):
                with net.activate(b):
                    pass
            assert net.active_arch == a  # the failed nested call left the outer activation alone
            torch.testing.assert_close(net(x), y_small)
        assert net.active_arch is None


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def test_invalid_architectures_fail_before_any_tensor_op(tiny: BigNASSpace, tiny_net: ElasticMBConvSupernet) -> None:
    x = torch.randn(1, *SHAPE)
    bad = [Architecture("bignas", {**tiny.largest().to_dict(), "s3.l0.kernel": 9}),
           Architecture("bignas", {k: v for k, v in tiny.largest().to_dict().items() if k != "stem.width"}),
           get_space("menas-ws").smallest(), "res32_c8-..."]
    for arch in bad:
        with _CountOps() as counter:
            with pytest.raises(InvalidArchitecture):
                with tiny_net.activate(arch):
                    tiny_net(x)
            with pytest.raises(InvalidArchitecture):
                tiny_net.extract(arch)
        assert counter.ops == 0 and tiny_net.active_arch is None
    with pytest.raises(InvalidValue, match=r"supernet input.*\(N, 3, H, W\)"):
        tiny_net(torch.randn(1, 1, 32, 32))


def test_constructor_checks_space_and_generator() -> None:
    for space in ("nb201", "proxyless-basic"):
        with pytest.raises(InvalidValue, match="space.*block_positions"):
            Supernet(space, SHAPE, CLASSES)
    with pytest.raises(InvalidValue, match="generator"):
        Supernet(_tiny_bignas(), SHAPE, CLASSES, generator=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="input_shape"):
        Supernet(_tiny_bignas(), (3, 32), CLASSES)  # type: ignore[arg-type]


def test_children_that_do_not_nest_raise_naming_the_part() -> None:
    class Shrunk(BigNASSpace):
        """A space whose 'largest' is its smallest: bigger children cannot nest in the supernet."""

        def largest(self) -> Architecture:
            return self.smallest()

    space = Shrunk(stages=_tiny_bignas().stages, resolutions=(24, 32), stem_widths=(8, 16), head_widths=(32,))
    net = Supernet(space, SHAPE, CLASSES)
    with pytest.raises(InvalidValue, match="block s2.l1"):
        net.extract(space.make({**space.smallest().to_dict(), "s2.depth": 2, "s2.l1.kernel": 3, "s2.l1.expand": 1}))
    with pytest.raises(InvalidValue, match="stem"):
        with net.activate(space.make({**space.smallest().to_dict(), "stem.width": 16})):
            pass


# --------------------------------------------------------------------------------------------- init
def test_zero_init_last_bn_exactly_on_residual_blocks() -> None:
    cases = [(_tiny_bignas(), True), (_tiny_bignas(transition_skip=False), False), (get_space("menas-ws"), False)]
    for space, all_residual in cases:
        net = Supernet(space, SHAPE, CLASSES, generator=torch.Generator().manual_seed(0))
        spec = space.spec(space.largest(), SHAPE, CLASSES)
        positions = space.block_positions(space.largest())
        # residual in every child: with transition skips all blocks; without, the later layers of a stage (a
        # first layer is an identity block only in the children where its input and output widths agree)
        residual = [b.transition_skip or (j > 0 and b.has_skip) for b, (_, j) in zip(spec.blocks, positions)]
        assert all(residual) == all_residual and any(residual)
        for block, res in zip(net.blocks, residual):
            assert torch.equal(block.project.bn.weight, torch.zeros_like(block.project.bn.weight)) == res
        zero = {n for n, p in net.named_parameters() if n.endswith("bn.weight") and not p.any()}
        assert zero == {f"blocks.{i}.project.bn.weight" for i, r in enumerate(residual) if r}
    other = Supernet(_tiny_bignas(), SHAPE, CLASSES, zero_init_last_bn=False,
                     generator=torch.Generator().manual_seed(0))
    assert all(p.all() for n, p in other.named_parameters() if n.endswith("bn.weight"))
    # regression: without transition skips, a child whose stage-1 first layer changes width (8 -> 16, no skip)
    # must still see its input at initialisation
    space = _tiny_bignas(transition_skip=False)
    net = Supernet(space, SHAPE, CLASSES, generator=torch.Generator().manual_seed(0)).eval()
    child = space.make({**space.largest().to_dict(), "stem.width": 8})
    x1, x2 = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0)).split(1)
    with net.activate(child):
        assert not torch.allclose(net(x1), net(x2))


def test_generator_init_is_reproducible_and_leaves_global_rng_alone(tiny: BigNASSpace) -> None:
    state = torch.random.get_rng_state()
    a = Supernet(tiny, SHAPE, CLASSES, generator=torch.Generator().manual_seed(1))
    b = Supernet(tiny, SHAPE, CLASSES, generator=torch.Generator().manual_seed(1))
    c = Supernet(tiny, SHAPE, CLASSES, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["stem.conv.weight"], sc["stem.conv.weight"])
    bn = a.blocks[0].dw.bn
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var)) and int(bn.num_batches_tracked) == 0
    # He normal, fan-out (BigNAS Sec. 3.1 starts from He init): std sqrt(2 / (out * k * k / groups)) for every conv
    # large enough to estimate a std (>= 1500 weights: ~2% standard error). Among them are shapes where PyTorch's
    # default (kaiming_uniform a=sqrt(5): std 1/sqrt(3 * fan_in)) and fan-in He differ from fan-out He by > 2x
    # (192->32 1x1 projections, 7x7 depthwise convs), so neither passes for it (a 192x32 1x1 expansion would not
    # tell fan-out He from the default: both 0.102).
    checked, telling = 0, {"default": 0, "fan-in": 0}
    for name, m in a.named_modules():
        if not isinstance(m, nn.Conv2d) or m.weight.numel() < 1500:
            continue
        k, w = m.kernel_size[0] * m.kernel_size[1], m.weight.detach()
        he_out, fan_in = (2.0 / (m.out_channels * k / m.groups)) ** 0.5, m.in_channels / m.groups * k
        assert abs(float(w.std()) - he_out) < 0.1 * he_out, (name, tuple(w.shape), float(w.std()), he_out)
        assert abs(float(w.mean())) < 0.1 * he_out, name
        checked += 1
        for other, std in (("default", (3.0 * fan_in) ** -0.5), ("fan-in", (2.0 / fan_in) ** 0.5)):
            telling[other] += not 0.5 < std / he_out < 2.0
    assert checked >= 6 and min(telling.values()) >= 2, (checked, telling)


# --------------------------------------------------------------------------------------------- structure
def test_transition_shortcuts_and_head_dropout(tiny: BigNASSpace, tiny_net: ElasticMBConvSupernet) -> None:
    firsts = [i for i, (_, j) in enumerate(tiny.block_positions(tiny.largest())) if j == 0]
    for i, block in enumerate(tiny_net.blocks):
        has = isinstance(block.shortcut, TransitionShortcut)
        assert has == (i in firsts), i
        if has:  # stage 1 (16 -> 16 in the largest) gets a conv too: 8 -> 16 children need it
            assert isinstance(block.shortcut.conv, nn.Conv2d)
    assert isinstance(tiny_net.head_dropout, nn.Dropout) and tiny_net.head_dropout is tiny_net.head.dropout
    assert tiny_net.head_dropout.p == pytest.approx(0.2)
    plain = Supernet(_tiny_bignas(transition_skip=False), SHAPE, CLASSES)
    assert all(block.shortcut is None for block in plain.blocks)


def test_children_cost_analytic_equals_counted(tiny: BigNASSpace) -> None:
    rng = np.random.default_rng(4)
    for a in [tiny.largest(), tiny.sample(rng)]:
        net = tiny.build(a, SHAPE, CLASSES).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.randn(1, *SHAPE))
        assert tiny.flops(a, SHAPE, CLASSES) == counter.get_total_flops()
        assert tiny.params(a, SHAPE, CLASSES) == sum(p.numel() for p in net.parameters())


def _graph_ops(out: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind ``out``."""
    seen, stack, names = set(), [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    return names


def test_full_width_layers_use_the_parameters_themselves(tiny: BigNASSpace) -> None:
    """Full-tensor plans: the largest child runs on the parameters (no slice in its graph, so no slice_backward
    zero-filled gradients), a narrower child still slices; both keep activate == extract."""
    net = _supernet(tiny, seed=3)
    x = _batches(1, 4)[0]
    with net.activate(tiny.largest()):
        largest = _graph_ops(net(x))
    with net.activate(tiny.smallest()):
        smallest = _graph_ops(net(x))
    assert "SliceBackward0" not in largest and "SliceBackward0" in smallest
    _activate_equals_extract(net, [tiny.largest(), tiny.smallest()], x)
