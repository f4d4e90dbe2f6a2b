"""The DARTS space (nasforge.spaces.darts, nn.darts) and its mixed-op supernet: the genotype string round-trips
(including DARTS' published V2 cell), errors name the bad op / field, node input pairs are canonical, the network
has its auxiliary head and drop-path and trains with the shared train loop, and the supernet derives top-2
non-none edges per node."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge import get_space
from nasforge.errors import InvalidArchitecture, ParseError
from nasforge.nn.darts import PRIMITIVES, auxiliary_loss
from nasforge.supernet.mixed import DARTS_EDGES, derive_darts, mixed_supernet_for
from nasforge.train import TrainConfig, train

# DARTS (second order) CIFAR-10 cell, as published in Liu et al. 2019 (Fig. 4 / 5)
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def test_published_genotype_round_trips_with_node_pairs_in_canonical_order():
    space = get_space("darts")
    arch = space.parse(DARTS_V2)
    assert space.parse(space.format(arch)) == arch
    cells = space.cells(arch)
    assert cells["normal"][4:6] == [("skip_connect", 0), ("sep_conv_3x3", 1)]  # node 2's pair, ordered by input
    assert cells["reduce"][2:4] == [("max_pool_3x3", 1), ("skip_connect", 2)]
    swapped = DARTS_V2.replace("('sep_conv_3x3', 1), ('skip_connect', 0)", "('skip_connect', 0), ('sep_conv_3x3', 1)")
    assert space.parse(swapped) == arch and space.parse(swapped).key() == arch.key()


@pytest.mark.parametrize("text,field", [
    (DARTS_V2.replace("'dil_conv_3x3', 2", "'conv_7x7', 2"), "normal[7] op"),
    (DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 3]"), "reduce_concat"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 9)"), "normal.n3.b.in"),
    (DARTS_V2.replace("Genotype(", "Geno("), "darts genotype")])
def test_bad_genotypes_raise_one_line_errors_naming_the_op_or_field(text, field):
    with pytest.raises(ParseError) as err:
        get_space("darts").parse(text)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_a_node_takes_two_distinct_inputs():
    space = get_space("darts")
    pairs = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)] * 4
    with pytest.raises(InvalidArchitecture, match="normal.n0.b.in"):
        space.from_cells([("sep_conv_3x3", 0), ("max_pool_3x3", 0)] + pairs[2:], pairs)
    assert space.cardinality() == (180 * 7 ** 8) ** 2


def test_network_trains_with_the_train_loop_with_auxiliary_head_and_drop_path():
    space = get_space("darts", C=4, layers=3, auxiliary=True, drop_path_prob=0.3)
    arch = space.parse(DARTS_V2)
    net = space.build(arch, (1, 8, 8), 10)
    net.drop_generator = torch.Generator().manual_seed(0)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))]
    net.train()
    out = net(data[0][0])
    assert out.shape == (8, 10) and net.last_aux is not None and net.last_aux.shape == (8, 10)
    loss = auxiliary_loss(net, 0.4)(out, data[0][1])
    assert float(loss.detach()) > float(torch.nn.functional.cross_entropy(out.detach(), data[0][1]))
    net.eval()
    with torch.no_grad():
        a, b = net(data[0][0]), net(data[0][0])
    assert torch.equal(a, b) and net.last_aux is None  # no drop-path and no auxiliary head in eval mode
    before = [p.detach().clone() for p in net.parameters()]
    result = train(net, data, config=TrainConfig.from_recipe("lnas", batch_size=8), epochs=1, progress=False,
                   loss_fn=auxiliary_loss(net))
    assert result.steps == 1 and any(not torch.equal(p, q) for p, q in zip(net.parameters(), before))


def test_supernet_derives_the_top2_non_none_edges_of_each_node():
    space = get_space("darts", C=4, layers=3)
    net = mixed_supernet_for(space, (1, 8, 8), 10, generator=torch.Generator().manual_seed(0))
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10) and net.alpha.shape == (2 * DARTS_EDGES, len(PRIMITIVES))
    probs = torch.full((2 * DARTS_EDGES, len(PRIMITIVES)), 0.01)
    probs[:, PRIMITIVES.index("none")] = 0.9  # none dominates every edge but is never chosen
    probs[1, PRIMITIVES.index("sep_conv_5x5")] = 0.05  # node 2 (edges 0, 1): input 1 best, then input 0
    probs[0, PRIMITIVES.index("dil_conv_3x3")] = 0.04
    probs[4, PRIMITIVES.index("skip_connect")] = 0.08  # node 3 (edges 2, 3, 4): input 2 strongest
    cells = space.cells(derive_darts(space, probs))
    assert cells["normal"][:2] == [("dil_conv_3x3", 0), ("sep_conv_5x5", 1)]
    assert cells["normal"][3] == ("skip_connect", 2)
    assert all(op != "none" for cell in cells.values() for op, _ in cell)
    rng = np.random.default_rng(0)
    assert space.contains(space.mutate(space.parse(DARTS_V2), rng))
