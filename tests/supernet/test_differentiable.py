"""DARTS machinery (nasforge.supernet.mixed / differentiable): the mixed-op NB201 supernet and its path mask, the
genotype derivation, the unrolled (second-order) alpha gradient of lnas.txt Eq. 6 against exact autograd, the
train/val split, and a search that resumes at an epoch boundary exactly where an uninterrupted one would be."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nasforge import get_space
from nasforge.data import load_data
from nasforge.supernet.differentiable import (
    ALPHA_HISTORY,
    DartsSearchConfig,
    DifferentiableSearch,
    split_search_data,
    unrolled_alpha_grad,
)
from nasforge.supernet.mixed import NB201MixedSupernet, derive_nb201, masked_softmax

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _net(seed: int = 0, channels: int = 3) -> NB201MixedSupernet:
    return NB201MixedSupernet(get_space("nb201", C=4, N=1), (channels, 8, 8), 10,
                              generator=torch.Generator().manual_seed(seed))


def _ce(net, x, y):
    return F.cross_entropy(net(x), y)


def test_masked_paths_get_zero_weight_and_no_gradient_and_are_never_derived():
    net = _net()
    with torch.no_grad():
        net.alpha[:, OPS.index("skip_connect")] = 5.0  # skip dominates every edge
    assert net.derive() == net.space.from_ops(["skip_connect"] * 6)  # the DARTS all-skip collapse, as a genotype
    net.alpha_mask[:, OPS.index("skip_connect")] = False
    net.alpha_mask[0, :] = torch.tensor([False, False, False, True, False])
    probs = net.probabilities()
    assert torch.allclose(probs.sum(1), torch.ones(6))
    assert (probs[:, OPS.index("skip_connect")] == 0).all() and probs[0, 3] == 1.0
    loss = net(torch.randn(2, 3, 8, 8)).sum()
    loss.backward()
    assert (net.alpha.grad[~net.alpha_mask] == 0).all() and net.alpha.grad[1:][net.alpha_mask[1:]].abs().sum() > 0
    ops = net.space.cell_ops(net.derive())
    assert "skip_connect" not in ops and ops[0] == "nor_conv_3x3"
    assert derive_nb201(net.space, torch.zeros(6, 5)) == net.space.from_ops(["none"] * 6)  # ties: first op


def test_mixed_op_output_is_the_softmax_weighted_sum_of_the_ops():
    net = _net().eval()
    cell, x = net.layers[1], torch.randn(2, 4, 8, 8)
    w = masked_softmax(torch.randn(6, 5), torch.ones(6, 5, dtype=torch.bool))
    edge = cell.edges[0]
    manual = sum(w[0, k] * op(x) for k, op in enumerate(edge.ops) if not edge.zero[k])
    assert torch.allclose(edge(x, w[0]), manual, atol=1e-6)


def test_unrolled_gradient_matches_exact_autograd_of_eq6_and_restores_the_weights():
    net = _net().double().eval()  # eval: BN uses running statistics, so the loss is a smooth function of theta
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        net.alpha.normal_(0, 1, generator=g)
    xt, xv = (torch.randn(4, 3, 8, 8, generator=g, dtype=torch.double) for _ in range(2))
    yt, yv = (torch.randint(0, 10, (4,), generator=g) for _ in range(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    xi = 0.05
    names = [n for n, _ in net.named_parameters()]

    def loss_at(params, x, y):
        return F.cross_entropy(functional_call(net, {**params, **dict(net.named_buffers())}, (x,)), y)

    def l_val_unrolled(alpha):  # L_val(theta - xi grad_theta L_train(theta, alpha), alpha), differentiable in alpha
        params = {**dict(net.named_parameters()), "alpha": alpha}
        ws = [n for n in names if n != "alpha"]
        grads = torch.autograd.grad(loss_at(params, xt, yt), [params[n] for n in ws], create_graph=True,
                                    allow_unused=True)
        moved = {n: params[n] - xi * gr if gr is not None else params[n] for n, gr in zip(ws, grads)}
        return loss_at({**moved, "alpha": alpha}, xv, yv)

    alpha = net.alpha.detach().clone().requires_grad_(True)
    exact = torch.autograd.grad(l_val_unrolled(alpha), alpha)[0]
    approx = unrolled_alpha_grad(net, _ce, (xt, yt), (xv, yv), xi, eps_scale=1e-6)[0]
    assert torch.allclose(approx, exact, rtol=1e-5, atol=1e-9)
    first = torch.autograd.grad(_ce(net, xv, yv), net.alpha)[0]
    assert not torch.allclose(exact, first, atol=1e-7)  # the second-order term is not negligible here
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_split_search_data_halves_the_training_split_disjointly_and_stratified():
    splits = load_data({"source": "digits", "val_fraction": 0.0, "test_fraction": 0.2, "seed": 0})
    a, b = split_search_data(splits.train, 0.5, seed=3)
    assert abs(len(a) - len(b)) <= 1 and len(a) + len(b) == len(splits.train)
    assert not set(a.source_index.tolist()) & set(b.source_index.tolist())
    assert (abs(a.class_counts() - b.class_counts()) <= 2).all()
    with pytest.raises(Exception, match="train_portion"):
        split_search_data(splits.train, 0.9999, seed=0)


class _Crash(RuntimeError):
    pass


_DIGITS: list = []


def _digits():
    if not _DIGITS:  # loaded once for the module
        _DIGITS.append(load_data({"source": "digits", "val_fraction": 0.0, "test_fraction": 0.0, "seed": 0,
                                  "limit": 300}))
    return _DIGITS[0]


def _search(tmp, config, hook=None):
    splits = _digits()
    tr, va = split_search_data(splits.train, 0.5, seed=0)
    return DifferentiableSearch(_net(channels=1), tr, va, splits.transform(), config, seed=0,
                                device=torch.device("cpu"), folder=tmp, after_epoch=hook)


@pytest.mark.parametrize("order", [1, 2])
def test_search_moves_alpha_and_resumes_at_an_epoch_boundary_exactly(tmp_path, order):
    config = DartsSearchConfig(order=order, epochs=2, batch_size=32, steps_per_epoch=2)
    whole = _search(tmp_path / "whole", config)
    alpha0 = whole.net.alpha.detach().clone()
    whole.fit()
    assert not torch.equal(whole.net.alpha.detach(), alpha0)

    def crash(epoch, net):
        if epoch == 1:
            raise _Crash
    with pytest.raises(_Crash):
        _search(tmp_path / "cut", config, crash).fit()
    resumed = _search(tmp_path / "cut", config)
    out = resumed.fit()
    assert [r["epoch"] for r in out.history] == [0, 1]
    for k, v in whole.net.state_dict().items():
        assert torch.allclose(resumed.net.state_dict()[k], v, atol=1e-6), k
    hist = json.loads((tmp_path / "cut" / ALPHA_HISTORY).read_text())
    assert len(hist["epochs"]) == 2 and len(hist["epochs"][-1]["probabilities"]) == 6
    with pytest.raises(Exception, match="config"):
        _search(tmp_path / "cut", DartsSearchConfig(order=order, epochs=2, batch_size=16, steps_per_epoch=2)).fit()
