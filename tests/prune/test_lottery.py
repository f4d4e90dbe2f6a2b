"""MENAS lottery tickets: pruning proposals (step a), Eq. 1 exactness, BN re-calibration, ranking (steps b-d)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasforge import get_space
from nasforge.data import DataConfig, load_data
from nasforge.errors import InvalidValue
from nasforge.eval.train_eval import init_weights
from nasforge.prune import PROPOSAL_RATES, empty_network, explore_lottery_tickets, inherit_weights, pruning_proposals
from nasforge.spaces.mbconv_common import pruned_channels
from nasforge.spaces.mobilenet import MobileNet3Space
from nasforge.train import calibrate_bn
from nasforge.train.loop import evaluate

SHAPE, CLASSES = (1, 28, 28), 10
SPACE = MobileNet3Space(base_channels=(16, 24), depths=(1, 2))
#: unpruned (rate 1.0) in every layer, SE in two of them, one expand-ratio-1 layer (not prunable)
ARCH = SPACE.make({"s1.depth": 2, "s1.width": 1.0, "s1.down": True,
                   "s1.l0.kernel": 3, "s1.l0.expand": 4, "s1.l0.se": True, "s1.l0.prune": 1.0,
                   "s1.l1.kernel": 5, "s1.l1.expand": 1, "s1.l1.se": False,
                   "s2.depth": 2, "s2.width": 1.0, "s2.down": True,
                   "s2.l0.kernel": 7, "s2.l0.expand": 6, "s2.l0.se": False, "s2.l0.prune": 1.0,
                   "s2.l1.kernel": 3, "s2.l1.expand": 5, "s2.l1.se": True, "s2.l1.prune": 1.0})


@pytest.fixture(scope="module")
def parent() -> torch.nn.Module:
    """A network of ARCH with seeded weights and BN statistics taken from real images (as after training)."""
    net = init_weights(SPACE.build(ARCH, SHAPE, CLASSES), torch.Generator().manual_seed(0))
    from nasforge.train import calibrate_bn

    calibrate_bn(net, [x for x, _ in _data().loader("train", 64, seed=1)], 3)
    return net.eval()


_SPLITS = None


def _data():
    global _SPLITS
    if _SPLITS is None:
        _SPLITS = load_data(DataConfig(source="embedded", limit=300, val_fraction=0.3, test_fraction=0.0))
    return _SPLITS


def _mids(arch) -> list[int]:
    return [b.mid_ch for b in SPACE.spec(arch).blocks]


def test_rate_one_everywhere_is_the_parent_and_inherits_it_exactly(parent) -> None:
    layers = SPACE.prunable_layers(ARCH)
    assert layers == ["s1.l0", "s2.l0", "s2.l1"]
    same = SPACE.with_pruning(ARCH, [1.0] * len(layers))
    assert same == ARCH
    child = empty_network(SPACE, same, SHAPE, CLASSES, "cpu")
    report = inherit_weights(child, parent.state_dict(), child_layers=SPACE.layer_modules(same),
                             parent_layers=SPACE.layer_modules(ARCH))
    assert set(report.values()) == {"copy"}
    x = torch.randn(8, *SHAPE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(child.eval()(x), parent(x))


def test_proposals_are_distinct_valid_narrower_and_cheaper() -> None:
    props = pruning_proposals(SPACE, ARCH, 40, np.random.default_rng(0))
    assert len(props) == 40 and len(set(props)) == 40 and ARCH not in props
    base_mids, base_flops = _mids(ARCH), SPACE.flops(ARCH, SHAPE, CLASSES)
    for p in props:
        assert SPACE.contains(p) and SPACE.flops(p, SHAPE, CLASSES) < base_flops
        mids = _mids(p)
        assert all(m <= b for m, b in zip(mids, base_mids)) and mids != base_mids
        assert mids[1] == base_mids[1]  # the expand-ratio-1 layer is never pruned
        for k, (lid, e) in enumerate([("s1.l0", 4), ("s2.l0", 6), ("s2.l1", 5)]):
            block = [0, 2, 3][k]
            full = SPACE.spec(ARCH).blocks[block].in_ch * e
            allowed = {full} | {pruned_channels(full, r) for r in PROPOSAL_RATES}
            assert mids[block] in allowed
    assert len({tuple(_mids(p)) for p in props}) == 40  # distinct networks, not only distinct genes
    assert props == pruning_proposals(SPACE, ARCH, 40, np.random.default_rng(0))  # seeded
    assert props != pruning_proposals(SPACE, ARCH, 40, np.random.default_rng(1))


def test_a_layer_only_shrinks_and_fewer_proposals_come_back_when_the_space_is_small() -> None:
    space = MobileNet3Space(base_channels=(16,), depths=(1,))
    arch = space.make({"s1.depth": 1, "s1.width": 1.0, "s1.down": True, "s1.l0.kernel": 3, "s1.l0.expand": 2,
                       "s1.l0.se": False, "s1.l0.prune": 0.85})
    mid = space.spec(arch).blocks[0].mid_ch  # int(32 * 0.85) = 27
    narrower = {pruned_channels(32, r) for r in PROPOSAL_RATES} - {m for m in range(mid, 33)}
    props = pruning_proposals(space, arch, 40, np.random.default_rng(0))
    assert len(props) == len(narrower) == 5  # 22..26: every distinct narrower width, once
    assert {space.spec(p).blocks[0].mid_ch for p in props} == narrower
    assert pruning_proposals(space, arch, 2, np.random.default_rng(0))[0] in props
    ws = get_space("menas-ws")  # MobileNet3-WS has no pruning rates (Table 1): nothing to propose
    assert pruning_proposals(ws, ws.sample(np.random.default_rng(0)), 5, np.random.default_rng(0)) == []


@pytest.mark.parametrize("kwargs, needle", [
    ({"k": 0}, "k: got 0; allowed: an int >= 1"),
    ({"rates": [1.5]}, "rates: got [1.5]; allowed: a non-empty sequence of keep-rates in (0, 1]"),
    ({"rng": 3}, "rng: got 'int'; allowed: a numpy.random.Generator"),
])
def test_bad_proposal_arguments(kwargs, needle) -> None:
    args = {"k": 4, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(InvalidValue) as err:
        pruning_proposals(SPACE, ARCH, **args)
    assert needle in str(err.value)


def test_a_space_without_pruning_is_rejected() -> None:
    nb = get_space("nb201")
    with pytest.raises(InvalidValue, match="space: got 'nb201'; allowed: a space with channel pruning"):
        pruning_proposals(nb, nb.sample(np.random.default_rng(0)), 3, np.random.default_rng(0))


def _counted_flops(net: torch.nn.Module) -> int:
    """FLOPs torch counts on one forward pass of a single image (a multiply-add is 2)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(torch.zeros(1, *SHAPE))
    return counter.get_total_flops()


def _explore(parent, **kw):
    splits = _data()
    args = dict(input_shape=SHAPE, num_classes=CLASSES, calib_batches=splits.loader("train", 32, seed=0),
                rank_batches=splits.loader("val", 45), k=5, top_k=2, calib_steps=3, rng=np.random.default_rng(3))
    return explore_lottery_tickets(parent, SPACE, ARCH, **{**args, **kw})


def test_explore_ranks_recalibrated_truncations_and_times_them(parent) -> None:
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    res = _explore(parent)
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # the parent is only read
    assert [t.arch for t in res.proposals] == pruning_proposals(SPACE, ARCH, 5, np.random.default_rng(3))
    keys = [(-t.accuracy, t.flops) for t in res.proposals]
    assert len(res.tickets) == 2 and [(-t.accuracy, t.flops) for t in res.tickets] == sorted(keys)[:2]
    # each proposal's accuracy is that of ITS network: truncated from the parent (Eq. 1), BN re-calibrated on the
    # first calib_steps calibration batches, then scored on the rank batches (rebuilt here step by step)
    splits = _data()
    calib = [x for x, _ in itertools.islice(iter(splits.loader("train", 32, seed=0)), 3)]
    for t in res.proposals:
        net = empty_network(SPACE, t.arch, SHAPE, CLASSES, "cpu")
        inherit_weights(net, parent.state_dict(), child_layers=SPACE.layer_modules(t.arch),
                        parent_layers=SPACE.layer_modules(ARCH))
        calibrate_bn(net, calib, 3)
        assert t.accuracy == pytest.approx(evaluate(net.eval(), splits.loader("val", 45))["accuracy"]), t
        assert t.flops == SPACE.flops(t.arch, SHAPE, CLASSES) and t.params == SPACE.params(t.arch, SHAPE, CLASSES)
    assert len({t.accuracy for t in res.proposals}) > 1  # the ranking has something to rank
    tm = res.timings
    assert all(tm[k] > 0 for k in ("truncate_s", "calibrate_s", "rank_s", "total_s"))
    assert tm["total_s"] >= tm["truncate_s"] + tm["calibrate_s"] + tm["rank_s"]
    assert tm["calib_images"] == 5 * 3 * 32 and tm["rank_images"] == 5 * 90 and tm["proposals"] == 5
    # the ticket networks: parameters are exactly the parent's leading channels (frozen during calibration),
    # BN running statistics were re-computed on the calibration batches
    P = parent.state_dict()
    parent_flops = _counted_flops(parent)
    assert parent_flops == SPACE.flops(ARCH, SHAPE, CLASSES)
    for ticket, net in zip(res.tickets, res.networks):
        assert not net.training and [b.mid_ch for b in net.spec.blocks] == _mids(ticket.arch)
        # the FLOPs a ticket removes are removed from the network built: counted on it, they are the recorded ones
        assert _counted_flops(net) == ticket.flops < parent_flops
        for name, p in net.named_parameters():
            assert torch.equal(p, P[name][tuple(slice(0, n) for n in p.shape)]), name
        stats = [(n, b) for n, b in net.named_buffers() if n.endswith("running_mean")]
        changed = [n for n, b in stats if not torch.equal(b, P[n][: b.shape[0]])]
        assert len(changed) == len(stats)
        assert all(int(b) == 3 for n, b in net.named_buffers() if n.endswith("num_batches_tracked"))
        assert res.proposals[[t.arch for t in res.proposals].index(ticket.arch)] == ticket
    assert res.to_dict()["tickets"][0]["arch"] == res.tickets[0].arch.to_dict()


@pytest.mark.parametrize("kw, needle", [
    ({"top_k": 6}, "top_k: got 6; allowed: an int in [1, k=5]"),
    ({"top_k": 0}, "top_k: got 0"),
    ({"calib_steps": 0}, "calib_steps: got 0"),
])
def test_explore_argument_errors(parent, kw, needle) -> None:
    with pytest.raises(InvalidValue) as err:
        _explore(parent, **kw)
    assert needle in str(err.value)


def test_explore_rejects_a_model_of_another_architecture() -> None:
    other = SPACE.with_pruning(ARCH, [0.7, 0.7, 0.7])
    net = empty_network(SPACE, other, SHAPE, CLASSES, "cpu")
    with pytest.raises(InvalidValue, match=r"^model: got 'a state dict of another network "
                       r"\(blocks.0.dw.bn.bias has shape \[44\] instead of \[64\]\)'; allowed: the tensors of space"):
        _explore(net)
