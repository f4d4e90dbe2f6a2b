"""inherit_weights: MENAS Eq. 1 truncation and individual weight sharing, checked tensor by tensor."""
from __future__ import annotations

import pytest
import torch

from nasforge.errors import InvalidValue
from nasforge.eval.train_eval import init_weights
from nasforge.prune import KINDS, empty_network, inheritance_summary, inherit_weights
from nasforge.spaces.mobilenet import MobileNet3Space

SHAPE, CLASSES = (1, 28, 28), 10
SPACE = MobileNet3Space(base_channels=(16, 24), depths=(1, 2))


def _layer(kernel: int, expand: int, se: bool, prune: float = 1.0) -> dict:
    return {"kernel": kernel, "expand": expand, "se": se, "prune": prune}


def _arch(stages: list[tuple[float, list[dict]]]):
    genes = {}
    for s, (width, layers) in enumerate(stages, 1):
        genes.update({f"s{s}.depth": len(layers), f"s{s}.width": width, f"s{s}.down": True})
        for j, layer in enumerate(layers):
            genes.update({f"s{s}.l{j}.{k}": v for k, v in layer.items()})
    return SPACE.make(genes)


def _net(arch, seed: int) -> torch.nn.Module:
    """A network with seeded weights and non-trivial BN statistics (so copies of them can be told apart)."""
    net = init_weights(SPACE.build(arch, SHAPE, CLASSES), torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith(("running_mean", "bn.weight", "bn.bias")):
                t.copy_(torch.randn(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("num_batches_tracked"):
                t.fill_(seed + 7)
    return net.eval()


def _inherit(child, child_arch, parent, parent_arch) -> dict[str, str]:
    return inherit_weights(child, parent.state_dict(), child_layers=SPACE.layer_modules(child_arch),
                           parent_layers=SPACE.layer_modules(parent_arch))


PARENT = _arch([(1.0, [_layer(3, 6, True)]), (1.0, [_layer(7, 6, True), _layer(5, 6, True)])])


def test_same_architecture_copies_every_tensor_and_reproduces_the_outputs() -> None:
    parent, child = _net(PARENT, 0), _net(PARENT, 1)
    report = _inherit(child, PARENT, parent, PARENT)
    assert set(report) == set(child.state_dict()) and set(report.values()) == {"copy"}
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(3))
    assert torch.equal(child(x), parent(x))


def test_eq1_truncation_keeps_the_leading_channels_of_every_tensor() -> None:
    pruned = SPACE.with_pruning(PARENT, [0.75, 0.8, 0.7])
    parent = _net(PARENT, 0)
    child = empty_network(SPACE, pruned, SHAPE, CLASSES, "cpu")  # uninitialised: every value must come from W
    report = _inherit(child, pruned, parent, PARENT)
    P, C = parent.state_dict(), child.state_dict()
    for k, (pb, cb) in enumerate(zip(SPACE.spec(PARENT).blocks, SPACE.spec(pruned).blocks)):
        m, s, b = cb.mid_ch, cb.se_ch, f"blocks.{k}"
        assert m < pb.mid_ch and s <= pb.se_ch and cb.in_ch == pb.in_ch and cb.out_ch == pb.out_ch
        expected = {  # MENAS Eq. 1: W[:C_out * p_i, :C_in * p_(i-1)]
            "expand.conv.weight": P[f"{b}.expand.conv.weight"][:m],
            "dw.conv.weight": P[f"{b}.dw.conv.weight"][:m],
            "se.conv_reduce.weight": P[f"{b}.se.conv_reduce.weight"][:s, :m],
            "se.conv_reduce.bias": P[f"{b}.se.conv_reduce.bias"][:s],
            "se.conv_expand.weight": P[f"{b}.se.conv_expand.weight"][:m, :s],
            "se.conv_expand.bias": P[f"{b}.se.conv_expand.bias"][:m],
            "project.conv.weight": P[f"{b}.project.conv.weight"][:, :m],
        }
        for bn in ("expand.bn", "dw.bn"):
            expected.update({f"{bn}.{t}": P[f"{b}.{bn}.{t}"][:m]
                             for t in ("weight", "bias", "running_mean", "running_var")})
        for suffix, want in expected.items():
            assert torch.equal(C[f"{b}.{suffix}"], want), suffix
            assert report[f"{b}.{suffix}"] == ("copy" if want.shape == P[f"{b}.{suffix}"].shape else "truncate")
        assert report[f"{b}.expand.conv.weight"] == report[f"{b}.dw.bn.running_var"] == "truncate"
        assert report[f"{b}.project.conv.weight"] == "truncate" and report[f"{b}.project.bn.weight"] == "copy"
    untouched = [n for n in C if not n.startswith("blocks.")] + [n for n in C if ".project.bn." in n]
    assert all(torch.equal(C[n], P[n]) and report[n] == "copy" for n in untouched)
    assert inheritance_summary(report)["fresh"] == 0 and inheritance_summary(report)["partial"] == 0


#: a parent and a mutated child: s1.l0 kernel 3 -> 5 (pad) and SE added (fresh); s1 gains a layer (fresh); s2 widens
#: from 24 to 32 channels (partial) and s2.l0 goes 7x7 -> 5x5 (crop) with SE added (fresh)
PARENT2 = _arch([(1.0, [_layer(3, 3, False)]), (1.0, [_layer(7, 3, False), _layer(3, 6, True)])])
CHILD2 = _arch([(1.0, [_layer(5, 3, True), _layer(3, 3, False)]),
                (1.25, [_layer(5, 3, True), _layer(3, 6, True)])])

#: child tensor prefix -> (parent prefix or None, kind) for every child module; suffixes refine below
_EXPECTED = {
    "stem.": ("stem.", "copy"),
    "blocks.0.expand.": ("blocks.0.expand.", "copy"),
    "blocks.0.dw.conv.": ("blocks.0.dw.conv.", "pad"),  # 3x3 -> 5x5
    "blocks.0.dw.bn.": ("blocks.0.dw.bn.", "copy"),
    "blocks.0.se.": (None, "fresh"),  # SE added
    "blocks.0.project.": ("blocks.0.project.", "copy"),
    "blocks.1.": (None, "fresh"),  # the extra layer s1.l1; parent's blocks.1 is s2.l0 and must not be used
    "blocks.2.expand.": ("blocks.1.expand.", "copy"),
    "blocks.2.dw.conv.": ("blocks.1.dw.conv.", "crop"),  # 7x7 -> 5x5
    "blocks.2.dw.bn.": ("blocks.1.dw.bn.", "copy"),
    "blocks.2.se.": (None, "fresh"),
    "blocks.2.project.": ("blocks.1.project.", "partial"),  # 24 -> 32 output channels
    "blocks.3.": ("blocks.2.", "partial"),  # 24 -> 32 inputs, 144 -> 192 mid channels
    "head.conv.": ("head.conv.", "partial"),  # 24 -> 32 inputs
    "head.fc.": ("head.fc.", "copy"),
    "head.classifier.": ("head.classifier.", "copy"),
}
#: tensors of the partial layers whose shape does not change (and are copied whole)
_SAME_SHAPE = {"blocks.3.dw.bn.num_batches_tracked": "copy",
               "blocks.3.expand.bn.num_batches_tracked": "copy", "blocks.3.project.bn.num_batches_tracked": "copy",
               "blocks.2.project.bn.num_batches_tracked": "copy", "head.conv.bn.weight": "copy",
               "head.conv.bn.bias": "copy", "head.conv.bn.running_mean": "copy", "head.conv.bn.running_var": "copy",
               "head.conv.bn.num_batches_tracked": "copy"}


def _expected_kind(name: str) -> tuple[str | None, str]:
    prefix = max((p for p in _EXPECTED if name.startswith(p)), key=len)
    parent_prefix, kind = _EXPECTED[prefix]
    src = None if parent_prefix is None else parent_prefix + name[len(prefix):]
    return src, _SAME_SHAPE.get(name, kind)


def test_child_inherits_every_overlapping_tensor_and_nothing_else() -> None:
    assert SPACE.spec(CHILD2, SHAPE).blocks[3].in_ch == 32 and SPACE.spec(PARENT2, SHAPE).blocks[2].in_ch == 24
    parent, child = _net(PARENT2, 0), _net(CHILD2, 1)
    own = {k: v.clone() for k, v in child.state_dict().items()}
    P = parent.state_dict()
    report = _inherit(child, CHILD2, parent, PARENT2)
    C = child.state_dict()
    assert set(report) == set(C)
    for name, got in C.items():
        src, kind = _expected_kind(name)
        assert report[name] == kind, name
        if kind == "fresh":
            assert torch.equal(got, own[name]), name
            continue
        w = P[src]
        if kind == "copy":
            assert torch.equal(got, w), name
        elif kind == "pad":  # the parent's 3x3 at the centre of zeros
            border = torch.ones_like(got, dtype=torch.bool)
            border[..., 1:4, 1:4] = False
            assert torch.equal(got[..., 1:4, 1:4], w) and not got[border].any(), name
        elif kind == "crop":  # the centre 5x5 of the parent's 7x7
            assert torch.equal(got, w[..., 1:6, 1:6]), name
        else:  # partial: the overlap from the parent, the rest the child's own init
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(got.shape, w.shape))
            assert torch.equal(got[overlap], w[overlap]), name
            mask = torch.ones_like(got, dtype=torch.bool)
            mask[overlap] = False
            assert mask.any() and torch.equal(got[mask], own[name][mask]), name
    counts = inheritance_summary(report)
    assert set(counts) == set(KINDS) and sum(counts.values()) == len(C)
    assert counts["pad"] == 1 and counts["crop"] == 1 and counts["fresh"] > 0 and counts["partial"] > 0


def test_inheritance_is_deterministic_and_leaves_the_parent_alone() -> None:
    parent = _net(PARENT2, 0)
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    a, b = _net(CHILD2, 1), _net(CHILD2, 1)
    assert _inherit(a, CHILD2, parent, PARENT2) == _inherit(b, CHILD2, parent, PARENT2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())


@pytest.mark.parametrize("state, layers, needle", [
    ([1, 2], None, "parent_state: got 'list'; allowed: a mapping of names to tensors"),
    ({"stem.conv.weight": [1.0]}, None, "parent_state['stem.conv.weight']: got 'list'; allowed: a torch.Tensor"),
    (None, {"s1.l0": "blocks.9"}, "child_layers['s1.l0']: got 'blocks.9'; allowed: a module of the network"),
    (None, "blocks.0", "child_layers: got 'str'"),
])
def test_bad_inputs_are_one_line_errors(state, layers, needle) -> None:
    parent = _net(PARENT, 0)
    child = _net(PARENT, 1)
    with pytest.raises(InvalidValue) as err:
        inherit_weights(child, parent.state_dict() if state is None else state,
                        child_layers=SPACE.layer_modules(PARENT) if layers is None else layers,
                        parent_layers=SPACE.layer_modules(PARENT))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_parent_layer_map_naming_a_missing_module_is_rejected() -> None:
    parent, child = _net(PARENT, 0), _net(PARENT, 1)
    with pytest.raises(InvalidValue, match=r"parent_layers\['s2.l1'\]: got 'blocks.7'"):
        inherit_weights(child, parent.state_dict(), child_layers=SPACE.layer_modules(PARENT),
                        parent_layers={"s2.l1": "blocks.7"})
