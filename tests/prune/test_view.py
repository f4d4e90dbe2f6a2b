"""PrunedView: one network re-pointed per pruning proposal equals the pruned network rebuilt by Eq. 1 truncation."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nasforge.errors import InvalidValue
from nasforge.eval.train_eval import init_weights
from nasforge.prune import empty_network, explore_lottery_tickets, inherit_weights, pruning_proposals
from nasforge.prune.view import PrunedView
from nasforge.train import calibrate_bn

from .test_lottery import ARCH, CLASSES, SHAPE, SPACE, _data


@pytest.fixture(scope="module")
def parent() -> torch.nn.Module:
    net = init_weights(SPACE.build(ARCH, SHAPE, CLASSES), torch.Generator().manual_seed(1))
    calibrate_bn(net, [x for x, _ in _data().loader("train", 64, seed=1)], 2)
    return net.eval()


def _rebuilt(parent: torch.nn.Module, arch) -> torch.nn.Module:
    net = empty_network(SPACE, arch, SHAPE, CLASSES, "cpu")
    inherit_weights(net, parent.state_dict(), child_layers=SPACE.layer_modules(arch),
                    parent_layers=SPACE.layer_modules(ARCH))
    return net.eval()


def test_view_equals_the_rebuilt_pruned_network_for_each_proposal(parent) -> None:
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    splits = _data()
    calib = [x for x, _ in itertools.islice(iter(splits.loader("train", 32, seed=0)), 2)]
    x = next(iter(splits.loader("val", 40)))[0]
    props = pruning_proposals(SPACE, ARCH, 6, np.random.default_rng(5))
    assert len({tuple(b.mid_ch for b in SPACE.spec(p).blocks) for p in props}) == 6
    view = PrunedView(parent, SPACE, ARCH, SHAPE, CLASSES)
    with torch.no_grad():
        for p in [*props, props[0]]:  # back to an earlier (possibly wider) proposal after narrower ones
            net = view.set(p)
            ref = _rebuilt(parent, p)
            # with the trained statistics (Eq. 1 truncation of the running stats too) ...
            assert torch.equal(net(x), ref(x)), SPACE.format(p)
            # ... and after BN re-calibration on the same batches
            calibrate_bn(net, calib, 2)
            calibrate_bn(ref, calib, 2)
            assert torch.allclose(net(x), ref(x), atol=1e-6), SPACE.format(p)
            built = view.build()
            assert [b.mid_ch for b in built.spec.blocks] == [b.mid_ch for b in SPACE.spec(p).blocks]
            assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), ref.state_dict().values()))
        assert not torch.equal(view.set(props[1])(x), view.set(props[2])(x))  # the view really changes
        assert torch.equal(view.reset()(x), parent(x))
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # the trained net is only read


def test_view_rejects_a_proposal_of_another_shape(parent) -> None:
    view = PrunedView(parent, SPACE, ARCH, SHAPE, CLASSES)
    deeper_kernel = SPACE.make({**ARCH.to_dict(), "s1.l0.kernel": 5})
    with pytest.raises(InvalidValue, match="Eq. 1 truncation"):
        view.set(deeper_kernel)
    shallower = SPACE.make({**ARCH.to_dict(), "s2.depth": 1})
    with pytest.raises(InvalidValue, match="number of blocks"):
        view.set(shallower)


def test_ticket_networks_hold_the_statistics_of_their_recalibration(parent) -> None:
    splits = _data()
    res = explore_lottery_tickets(parent, SPACE, ARCH, input_shape=SHAPE, num_classes=CLASSES,
                                  calib_batches=splits.loader("train", 32, seed=0),
                                  rank_batches=splits.loader("val", 45), k=4, top_k=2, calib_steps=2,
                                  rng=np.random.default_rng(4))
    calib = [x for x, _ in itertools.islice(iter(splits.loader("train", 32, seed=0)), 2)]
    for ticket, net in zip(res.tickets, res.networks):
        ref = _rebuilt(parent, ticket.arch)
        calibrate_bn(ref, calib, 2)
        for (name, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=1e-6), name
