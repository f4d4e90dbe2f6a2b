"""Weight banks of the choice-block supernets (DCNAS, dcnas.txt Sec. 3.2.1): M copies per operation, an
architecture runs with one copy per layer; M = 1 is exactly the SPOS supernet."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from nasforge import get_space
from nasforge.errors import InvalidValue
from nasforge.supernet.choice import choice_supernet

CASES = [("nb201", dict(C=4, N=1), (3, 8, 8)), ("proxyless-basic", {}, (3, 16, 16))]


@pytest.mark.parametrize("name, kwargs, shape", CASES)
def test_one_copy_is_exactly_the_spos_supernet(name, kwargs, shape):
    space = get_space(name, **kwargs)
    spos = choice_supernet(space, shape, 5, generator=torch.Generator().manual_seed(3))
    banked = choice_supernet(space, shape, 5, generator=torch.Generator().manual_seed(3), copies=1)
    a, b = spos.state_dict(), banked.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    for arch in [space.sample(rng) for _ in range(3)]:
        with torch.no_grad(), spos.activate(arch):
            ya = spos(x)
        with torch.no_grad(), banked.activate(arch, copies=[0] * len(banked.layers())):
            yb = banked(x)
        assert torch.equal(ya, yb)


@pytest.mark.parametrize("name, kwargs, shape", CASES)
def test_copies_select_their_own_weights_and_extract_follows_them(name, kwargs, shape):
    space = get_space(name, **kwargs)
    net = choice_supernet(space, shape, 5, generator=torch.Generator().manual_seed(0), copies=2).eval()
    L = len(net.layers())
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    arch = space.largest()
    outs = {}
    for copies in ([0] * L, [1] * L, [i % 2 for i in range(L)]):
        with torch.no_grad(), net.activate(arch, copies=copies):
            outs[tuple(copies)] = net(x)
        net.assignments[arch.key()] = tuple(copies)
        with torch.no_grad():
            assert torch.allclose(net.extract(arch).eval()(x), outs[tuple(copies)], atol=1e-5)
    assert not torch.allclose(outs[(0,) * L], outs[(1,) * L])  # copies are initialised independently
    # copy 1 of every operation gets gradients only when copy 1 is used
    net.train()
    net.zero_grad()
    with net.activate(arch, copies=[0] * L):
        net(x).sum().backward()
    used = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    copy1 = re.compile(r"\.(nor_conv_1x1|nor_conv_3x3|k\d_e\d)\.1\.")
    assert used and not any(copy1.search(n) for n in used)
    assert any(copy1.search(n) for n, _ in net.named_parameters())


def test_unassigned_architectures_draw_reproducible_copies_and_bad_copies_fail():
    space = get_space("nb201", C=4, N=1)
    net = choice_supernet(space, (3, 8, 8), 5, generator=torch.Generator().manual_seed(0), copies=3)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(20)]
    draws = [net.copies_of(a) for a in archs]
    assert draws == [net.copies_of(a) for a in archs]
    assert {c for d in draws for c in d} == {0, 1, 2}
    net.copy_seed = 1
    assert draws != [net.copies_of(a) for a in archs]
    net.assignments[archs[0].key()] = (2,) * len(net.layers())
    assert net.copies_of(archs[0]) == (2,) * len(net.layers())
    with pytest.raises(InvalidValue, match="copies"):
        with net.activate(archs[0], copies=[3] * len(net.layers())):
            pass
    with pytest.raises(InvalidValue, match="copies"):
        choice_supernet(space, (3, 8, 8), 5, copies=0)


def test_capture_records_the_input_of_every_layer():
    space = get_space("nb201", C=4, N=1)
    net = choice_supernet(space, (3, 8, 8), 5, generator=torch.Generator().manual_seed(0), copies=2)
    assert len(net.layers()) == 18  # 3 cells x 6 edges
    net.capture = {}
    with torch.no_grad(), net.activate(space.smallest()):
        net(torch.zeros(1, 3, 8, 8))
    assert sorted(net.capture) == list(range(18))
    assert net.capture[6].shape[1] == 8 and net.capture[0].shape[1] == 4  # cell 2 runs at 2C channels


def test_layer_module_is_the_module_the_forward_pass_runs():
    space = get_space("nb201", C=4, N=1)
    net = choice_supernet(space, (3, 8, 8), 5, generator=torch.Generator().manual_seed(0), copies=2)
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    layer = 6 + 5  # cell 1, edge e5 (nor_conv_3x3)
    copies = [0] * 18
    copies[layer] = 1
    net.zero_grad()
    with net.activate(arch, copies=copies):
        net(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in net.layer_module(layer, "nor_conv_3x3", 1).parameters())
    assert all(p.grad is None for p in net.layer_module(layer, "nor_conv_3x3", 0).parameters())
    assert net.layer_module(layer, "none", 0) is None
