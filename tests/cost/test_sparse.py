"""Sparse accounting (nasforge.cost.sparse; LNAS Table 1 "FLOPS"): non-zero FLOPs equal FlopCounterMode's count
on a dense network and shrink with each pruned weight by the multiply-adds it took part in."""
from __future__ import annotations

import torch
from torch import nn

from nasforge import get_space
from nasforge.cost import count_flops, count_params
from nasforge.cost.sparse import nonzero_flops, nonzero_params, sparse_costs
from nasforge.prune.magnitude import magnitude_prune


def test_dense_network_nonzero_costs_equal_counted_costs():
    space = get_space("nb201", C=4, N=1)
    net = space.build(space.from_ops(["nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3", "none",
                                      "nor_conv_3x3"]), (3, 16, 16), 10)
    assert nonzero_flops(net, (3, 16, 16)) == count_flops(net, (3, 16, 16))
    assert nonzero_params(net) == sum(int(p.count_nonzero()) for p in net.parameters()) < count_params(net)


def test_each_zero_weight_removes_its_multiply_adds():
    conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    dense = nonzero_flops(conv, (2, 5, 5))
    with torch.no_grad():
        conv[0].weight[0, 0, 0, 0] = 0.0  # one conv weight: 25 output positions x 2 FLOPs
        conv[2].weight[1, 7] = 0.0  # one linear weight: 2 FLOPs per image
    assert dense - nonzero_flops(conv, (2, 5, 5)) == 2 * 25 + 2
    magnitude_prune(conv, 0.5)  # through torch's pruning masks
    costs = sparse_costs(conv, (2, 5, 5))
    assert costs["weight_sparsity"] == 0.5
    expected = 2 * int(conv[0].weight.count_nonzero()) * 25 + 2 * int(conv[2].weight.count_nonzero())
    assert costs["nonzero_flops"] == expected
    assert costs["nonzero_params"] == int(conv[0].weight.count_nonzero() + conv[2].weight.count_nonzero()) + 3
