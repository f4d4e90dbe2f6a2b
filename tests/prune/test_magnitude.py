"""Lottery-ticket pruning (nasforge.prune.magnitude / ticket; LNAS variants 1 and 2): the per-round rule reaches
the sparsity p after n rounds, rewinding restores theta_0 under the masks, masks survive training, a resumed
ticket run continues after its last finished round, alpha pruning never empties an edge, and an exported pruned
model holds exactly the masked zeros."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nasforge import get_space
from nasforge.errors import InvalidValue
from nasforge.eval.train_eval import init_weights
from nasforge.export import load_exported
from nasforge.io import load_checkpoint
from nasforge.prune.magnitude import (
    alpha_prune_counts,
    finalize,
    iterative_magnitude_pruning,
    magnitude_prune,
    prune_alphas,
    rewind,
    round_keep_fraction,
    weight_masks,
    weight_sparsity,
)
from nasforge.prune.ticket import TICKET_LOG, export_ticket, train_ticket
from nasforge.train import TrainConfig


def _small() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("p,n", [(0.5, 1), (0.75, 2), (0.95, 3), (0.125, 4)])
def test_n_rounds_reach_sparsity_p_and_rewind_survivors_to_theta0(p, n):
    net = _small()
    theta0 = {k: v.clone() for k, v in net.state_dict().items()}
    trained = []

    def train_round(r):  # stands for k epochs of SGD: move every weight
        with torch.no_grad():
            for prm in net.parameters():
                prm.add_(torch.randn(prm.shape, generator=torch.Generator().manual_seed(r)))
        trained.append(r)

    history = iterative_magnitude_pruning(net, theta0, train_round, p, n)
    assert trained == list(range(n)) and len(history) == n
    assert history[-1] == pytest.approx(p, abs=2e-3)
    assert history == sorted(history)
    masks = weight_masks(net)
    for name, m in (("0", net[0]), ("3", net[3])):
        mask = masks[f"{name}.weight"]
        assert torch.equal(m.weight[mask], theta0[f"{name}.weight"][mask])  # survivors rewound to theta_0
        assert (m.weight[~mask] == 0).all()
    assert torch.equal(net[0].bias, theta0["0.bias"])


def test_round_rule_keeps_one_minus_p_to_the_one_over_n_and_rejects_bad_values():
    assert round_keep_fraction(0.75, 2) == pytest.approx(0.5)
    with pytest.raises(InvalidValue, match="sparsity"):
        round_keep_fraction(1.0, 2)
    with pytest.raises(InvalidValue, match="rounds"):
        round_keep_fraction(0.5, 0)


def test_masks_survive_sgd_steps_and_finalize_gives_a_plain_module_with_zeros():
    net = _small()
    magnitude_prune(net, 0.6)
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
        opt.step()
    assert weight_sparsity(net) == pytest.approx(0.6, abs=2e-3)
    finalize(net)
    assert not any(k.endswith(("_orig", "_mask")) for k in net.state_dict())
    assert weight_sparsity(net) == pytest.approx(0.6, abs=2e-3)


def test_alpha_pruning_masks_the_smallest_paths_globally_but_never_an_edges_last():
    scores = torch.tensor([[0.1, 0.2, 0.7], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4]])
    mask = prune_alphas(scores, torch.ones(3, 3, dtype=torch.bool), 3)
    assert mask.tolist() == [[False, True, True], [False, False, True], [True, True, True]]
    full = prune_alphas(scores, mask, 100)
    assert full.sum(1).tolist() == [1, 1, 1] and full[:, 2].all()
    counts = alpha_prune_counts(30, 6, 0.5, 10)
    assert counts == sorted(counts) and counts[-1] == 15
    assert alpha_prune_counts(30, 6, 0.95, 3)[-1] == 24  # capped: every edge keeps one of its 5 paths


def test_ticket_training_resumes_after_its_last_finished_round_and_exports_masks(tmp_path):
    space = get_space("nb201", C=4, N=1)
    arch = space.from_ops(["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3"])
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(2)]
    config = TrainConfig.from_recipe("lnas", batch_size=16)

    def run(folder, crash_round=None):
        net = init_weights(space.build(arch, (1, 8, 8), 10), torch.Generator().manual_seed(0))

        def batches(phase):
            if phase == crash_round:
                raise RuntimeError("killed")
            return data
        return net, train_ticket(net, batches, config=config, folder=folder, final_epochs=1, sparsity=0.75,
                                 rounds=2, k=1, progress=False)

    net, whole = run(tmp_path / "whole")
    assert whole["weight_sparsity"] == pytest.approx(0.75, abs=2e-3)
    assert [r["weight_sparsity"] for r in whole["rounds"]] == pytest.approx([0.5, 0.75], abs=2e-3)
    assert len(whole["timeline"]) == 3
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "cut", crash_round=1)
    assert len(json.loads((tmp_path / "cut" / TICKET_LOG).read_text())["rounds"]) == 1
    net2, resumed = run(tmp_path / "cut")
    for k, v in net.state_dict().items():
        assert torch.allclose(net2.state_dict()[k], v, atol=1e-6), k
    files = export_ticket(net2, arch, tmp_path / "export", input_shape=(1, 8, 8), onnx=False,
                          space_kwargs={"C": 4, "N": 1})
    masks = load_checkpoint(files["masks"])
    plain, got = load_exported(tmp_path / "export")
    assert got == arch
    state = plain.state_dict()
    for key, mask in masks.items():
        assert (state[key][~mask] == 0).all() and key.endswith(".weight")
    assert torch.allclose(plain(data[0][0]), net2.eval()(data[0][0]), atol=1e-5)


def test_rewind_rejects_a_foreign_state_dict():
    net = _small()
    magnitude_prune(net, 0.5)
    with pytest.raises(InvalidValue, match="theta0"):
        rewind(net, {"x": torch.zeros(1)})
