"""Contract tests run over every registered search space (DESIGN.md: 'contract tests parametrised over every
registered space'). Space-specific behaviour lives in the test module of each space."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import nasforge
from nasforge import Architecture, get_space, list_spaces
from nasforge.errors import InvalidArchitecture, NasforgeError, ParseError

SPACES = list_spaces()
SMALL_INPUTS = {"default": (3, 32, 32), "gray": (1, 28, 28)}


def test_expected_spaces_registered() -> None:
    for name in ["menas-mt", "menas-ws", "bignas", "proxyless-basic", "proxyless-large", "nb201"]:
        assert name in SPACES


@pytest.fixture(params=SPACES)
def space(request):
    return get_space(request.param)


def _samples(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_samples_validate_and_round_trip(space) -> None:
    for a in _samples(space, 50) + [space.smallest(), space.largest()]:
        assert a.space == space.name
        assert space.validate(a) == a
        assert Architecture.from_json(a.to_json()) == a
        assert json.loads(a.to_json())["space"] == space.name
        s = str(a)
        assert space.parse(s) == a
        assert nasforge.parse(s, space.name) == a
        assert nasforge.parse(f"{space.name}:{s}") == a
        assert len(a.key()) == 16 and a.key() == Architecture.from_json(a.to_json()).key()


def test_seeded_sampling_reproduces(space) -> None:
    assert _samples(space, 10, seed=3) == _samples(space, 10, seed=3)
    assert _samples(space, 10, seed=3) != _samples(space, 10, seed=4)


def test_mutate_and_crossover_stay_valid(space) -> None:
    rng = np.random.default_rng(1)
    archs = _samples(space, 20, seed=2)
    for a, b in zip(archs, archs[1:]):
        m = space.mutate(a, rng)
        assert m != a and space.validate(m) == m
        c = space.crossover(a, b, rng)
        assert space.validate(c) == c
        assert space.decode(space.encode(c)) == c


def test_inactive_genes_are_canonicalised(space) -> None:
    """Passing any value for a gene the network does not use gives the same architecture (same key)."""
    dims = {d.label: d for d in space.dimensions()}
    for a in _samples(space, 20, seed=5):
        inactive = [k for k in dims if k not in a]
        for label in inactive[:3]:
            for value in dims[label].choices[:2]:
                b = space.make({**a.to_dict(), label: value})
                assert b == a and b.key() == a.key()


def test_bad_genes_name_the_field(space) -> None:
    a = space.sample(np.random.default_rng(0))
    label = next(iter(a))
    with pytest.raises(InvalidArchitecture, match=label.replace(".", r"\.")):
        space.make({**a.to_dict(), label: "no-such-choice"})
    with pytest.raises(InvalidArchitecture, match="no_such_gene"):
        space.make({**a.to_dict(), "no_such_gene": 1})
    with pytest.raises(ParseError):
        space.parse("this is not an architecture")
    with pytest.raises(NasforgeError):
        nasforge.parse("garbage-without-space")


def test_cardinality_counts_at_least_the_distinct_architectures_seen(space) -> None:
    """An exact int, never below the number of distinct architectures sampling and mutation turn up (each space's
    own tests check the exact value, by formula or brute force)."""
    seen = {a.key() for a in _samples(space, 300, seed=11)}
    rng = np.random.default_rng(12)
    seen |= {space.mutate(space.smallest(), rng).key() for _ in range(100)} | {space.smallest().key()}
    assert type(space.cardinality()) is int and space.cardinality() >= len(seen) > 100


def test_smallest_largest_bound_flops(space) -> None:
    lo, hi = space.flops(space.smallest()), space.flops(space.largest())
    for a in _samples(space, 20, seed=7):
        assert lo <= space.flops(a) <= hi


@pytest.mark.parametrize("inp,n", [(SMALL_INPUTS["default"], 18), (SMALL_INPUTS["gray"], 3)], ids=list(SMALL_INPUTS))
def test_build_forward_and_costs_match_counters(space, inp, n) -> None:
    """20 architectures per space at 32x32x3 (18 samples + smallest + largest) and 5 at 28x28x1: forward works,
    analytic FLOPs and params equal FlopCounterMode and the parameter count of the built network."""
    archs = _samples(space, n, seed=11) + [space.smallest(), space.largest()]
    for a in archs:
        net = space.build(a, input_shape=inp, num_classes=7).eval()
        x = torch.randn(2, *inp)
        with torch.no_grad():
            y = net(x)
        assert y.shape == (2, 7)
        assert torch.isfinite(y).all()
        assert space.params(a, inp, 7) == sum(p.numel() for p in net.parameters())
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(torch.randn(1, *inp))
        assert space.flops(a, inp, 7) == fc.get_total_flops(), str(a)
