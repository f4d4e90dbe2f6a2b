"""Choice-block supernets (nasforge.supernet.choice): activated path == extracted standalone network, op sets
that shrink in place without touching the weights of the ops that stay, and no global RNG use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge import get_space
from nasforge.errors import InvalidArchitecture, InvalidValue
from nasforge.supernet.choice import NB201ChoiceSupernet, ProxylessChoiceSupernet, choice_supernet

SMALL_NB201 = dict(C=4, N=1)


def _trained_bn(net, space, x, rng, steps=3):
    """Training-mode forwards of a few children, so BN running statistics are not the identity."""
    with torch.no_grad():
        net.train()
        for _ in range(steps):
            with net.activate(space.sample(rng)):
                net(x)
    net.eval()


@pytest.mark.parametrize("name, kwargs, shape", [("nb201", SMALL_NB201, (3, 16, 16)),
                                                 ("nb201", SMALL_NB201, (1, 8, 8)),
                                                 ("proxyless-basic", {}, (3, 32, 32)),
                                                 ("proxyless-large", {}, (3, 24, 24))])
def test_activated_child_equals_extracted_network(name, kwargs, shape):
    space = get_space(name, **kwargs)
    net = choice_supernet(space, shape, 7, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(1)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(2))
    _trained_bn(net, space, x, rng)
    archs = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(6)]
    for arch in archs:
        with net.activate(arch), torch.no_grad():
            y = net(x)
        child = net.extract(arch).eval()
        assert type(child) is type(space.build(arch, shape, 7))
        with torch.no_grad():
            assert torch.equal(child(x), y), space.format(arch)


def test_proxyless_identity_layers_map_to_the_right_blocks():
    space = get_space("proxyless-basic")
    genes = {label: ops[-1] for label, ops in space.op_sets().items()}
    genes.update({label: "identity" for label, ops in space.op_sets().items() if "identity" in ops and
                  int(label[1:].split(".")[0]) % 2 == 0})
    arch = space.make(genes)
    net = choice_supernet(space, (3, 32, 32), 10, generator=torch.Generator().manual_seed(0)).eval()
    child = net.extract(arch)
    layers = [label for label in space.op_sets() if genes[label] != "identity"]
    for b, label in enumerate(layers):  # block b of the standalone network is the b-th non-identity layer
        src = net.choices[label.split(".")[0]][genes[label]].dw.conv.weight
        assert torch.equal(child.blocks[b].dw.conv.weight, src)
    assert len(child.blocks) == len(layers) < len(space.op_sets())


def test_restrict_drops_removed_ops_and_keeps_the_weights_of_the_rest():
    space = get_space("nb201", **SMALL_NB201)
    net = choice_supernet(space, (3, 16, 16), 10, generator=torch.Generator().manual_seed(0)).eval()
    kept = {f"e{i}": ["skip_connect", "nor_conv_3x3"] for i in range(6)}
    arch = space.from_ops(["nor_conv_3x3", "skip_connect"] * 3)
    x = torch.randn(2, 3, 16, 16)
    with net.activate(arch), torch.no_grad():
        before = net(x)
    n_before = sum(p.numel() for p in net.parameters())
    net.restrict(kept)
    with net.activate(arch), torch.no_grad():
        assert torch.equal(net(x), before)
    assert sum(p.numel() for p in net.parameters()) < n_before
    assert set(net.choices["e0"]) == {"skip_connect", "nor_conv_3x3"}  # the other three modules are gone
    assert net.space.cardinality() == 2 ** 6 and net.op_sets()["e3"] == ("skip_connect", "nor_conv_3x3")
    rng = np.random.default_rng(0)
    assert all(set(net.space.cell_ops(net.space.sample(rng))) <= {"skip_connect", "nor_conv_3x3"} for _ in range(20))
    with pytest.raises(InvalidArchitecture):
        with net.activate(space.from_ops(["nor_conv_1x1"] * 6)):
            pass
    with pytest.raises(InvalidValue, match="op set of 'e0'"):
        net.restrict({"e0": ["avg_pool_3x3"]})  # not in the current set


def test_activation_is_scoped_and_required():
    space = get_space("nb201", **SMALL_NB201)
    net = choice_supernet(space, (3, 16, 16), 10)
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(InvalidValue, match="no active architecture"):
        net(x)
    with net.activate(space.largest()):
        with pytest.raises(InvalidValue, match="nested"):
            with net.activate(space.smallest()):
                pass
        with pytest.raises(InvalidValue, match="inside an activation"):
            net.restrict({"e0": ["none"]})
    assert net.active_arch is None


def test_seeded_build_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = choice_supernet("proxyless-basic", (3, 32, 32), 10, generator=torch.Generator().manual_seed(3))
    b = choice_supernet("proxyless-basic", (3, 32, 32), 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert isinstance(a, ProxylessChoiceSupernet)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = choice_supernet(get_space("nb201", **SMALL_NB201), (3, 16, 16), 10, generator=torch.Generator().manual_seed(4))
    assert isinstance(c, NB201ChoiceSupernet)
    conv = c.features[1]["edges"]["e0"]["nor_conv_3x3"][1]  # He fan-out init: std sqrt(2 / (4 * 3 * 3))
    assert abs(float(conv.weight.detach().std()) - (2 / 36) ** 0.5) < 0.08


def test_nb201_space_restrict():
    space = get_space("nb201")
    r = space.restrict({"e0": ["none", "nor_conv_1x1"], "e5": ["avg_pool_3x3"]})
    assert r.cardinality() == 2 * 5 ** 4 * 1
    assert r.cell_ops(r.largest())[0] == "nor_conv_1x1" and r.cell_ops(r.smallest())[5] == "avg_pool_3x3"
    assert space.cardinality() == 15625  # the registered space is untouched
    with pytest.raises(InvalidArchitecture):
        r.from_ops(["nor_conv_3x3"] * 6)
    assert r.index(r.largest()) == space.index(space.from_ops(r.cell_ops(r.largest())))
    with pytest.raises(InvalidValue, match="op_sets edge of space 'nb201': got 'e9'"):
        space.restrict({"e9": ["none"]})
