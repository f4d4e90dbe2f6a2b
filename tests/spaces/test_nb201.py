"""The NAS-Bench-201 space (nasforge.spaces.nb201) and its network (nasforge.nn.nb201), checked against the real
benchmark tables in ``<repo>/../shared/data``."""
from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import nasforge
from nasforge import Architecture, get_space
from nasforge.errors import InvalidArchitecture, InvalidValue, ParseError
from nasforge.nn.nb201 import OPS, NB201Network
from nasforge.spaces.nb201 import EDGE_LABELS, TABLE_PATH, NB201Space

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
BEST_C100 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: NASLib's op codes and edge order (nb201_accuracy PROVENANCE.md), an independent encoding of each cell
NASLIB_OPS = {"0": "skip_connect", "1": "none", "2": "nor_conv_3x3", "3": "nor_conv_1x1", "4": "avg_pool_3x3"}
NASLIB_EDGES = ("e0", "e1", "e3", "e2", "e4", "e5")  # 0->1, 0->2, 0->3, 1->2, 1->3, 2->3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: one intra-op thread is faster and avoids spin-waiting on a loaded 2-core runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return get_space("nb201")


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> list[dict[str, str]]:
    with gzip.open(shared_data / "nb201_accuracy" / "nb201_accuracy.csv.gz", "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def _counted_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _counted_flops(net: torch.nn.Module, shape: tuple[int, int, int]) -> int:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net.eval()(torch.zeros(1, *shape))
    return fc.get_total_flops()


# ------------------------------------------------------------------------------------------------ table and numbering
def test_packaged_table_is_the_shared_file(shared_data: Path) -> None:
    packaged = TABLE_PATH.read_bytes()
    digest = hashlib.sha256(packaged).hexdigest()
    assert digest == "3fc3802448966a283dc6fd19c394f1522c35e13284bef8b4439ed4d69ee36d49"
    assert digest in (TABLE_PATH.parent / "PROVENANCE.md").read_text()
    assert packaged == (shared_data / "nb201_accuracy" / "nb201_accuracy.csv.gz").read_bytes()


def test_index_and_strings_agree_with_the_benchmark(space: NB201Space, rows: list[dict[str, str]]) -> None:
    assert len(rows) == space.cardinality() == 15625 == len(OPS) ** len(EDGE_LABELS)
    seen = set()
    for row in rows:
        i = int(row["arch_index"])
        a = space.parse(row["arch_str"])
        assert space.index(a) == i
        assert space.from_index(i) == a
        assert space.format(a) == row["arch_str"]
        # the NASLib code names the same op on every edge (checks the edge order e0..e5)
        assert {e: NASLIB_OPS[c] for e, c in zip(NASLIB_EDGES, row["naslib_op_indices"])} == a.to_dict()
        seen.add(a)
    assert len(seen) == 15625


def test_every_gene_combination_is_one_benchmark_row(space: NB201Space) -> None:
    indices = {space.index(space.from_ops(ops)) for ops in itertools.product(OPS, repeat=6)}
    assert indices == set(range(15625))


def test_isomorphism_key(space: NB201Space, rows: list[dict[str, str]]) -> None:
    assert space.isomorphism_key(space.parse(BEST_C10)) == rows[6111]["nats_unique_str"]
    keys = {space.isomorphism_key(space.from_index(i)) for i in range(0, 15625, 7)}
    assert 1000 < len(keys) <= 6466
    # a dead edge (e0 = none, so node 1 is unreachable and e2 reads nothing) is ignored by the NATS isomorphism class
    base = dict(zip(EDGE_LABELS, ["none", "nor_conv_3x3", "nor_conv_1x1", "skip_connect", "none", "nor_conv_3x3"]))
    other = {**base, "e2": "avg_pool_3x3"}
    assert space.make(base) != space.make(other)
    assert space.isomorphism_key(space.make(base)) == space.isomorphism_key(space.make(other))


# ------------------------------------------------------------------------------------------------ strings and errors
def test_round_trips(space: NB201Space) -> None:
    rng = np.random.default_rng(0)
    for a in [space.sample(rng) for _ in range(30)] + [space.smallest(), space.largest()]:
        s = str(a)
        assert space.parse(s) == a and nasforge.parse(f"nb201:{s}") == a
        assert Architecture.from_json(a.to_json()) == a
        assert space.decode(space.encode(a)) == a
    a = space.parse(f"  {BEST_C10}\n")
    assert a.to_dict() == {"e0": "nor_conv_3x3", "e1": "nor_conv_3x3", "e2": "nor_conv_3x3", "e3": "skip_connect",
                           "e4": "nor_conv_3x3", "e5": "nor_conv_1x1"}
    assert list(space.encode(a)) == [3, 3, 3, 1, 3, 2]


@pytest.mark.parametrize("text, match", [
    (BEST_C10.replace("nor_conv_1x1~2", "conv_5x5~2"), "3<-2 op.*conv_5x5"),
    (BEST_C10.replace("skip_connect~0", "skip_connect~1"), "3<-0 token.*skip_connect~1"),
    (BEST_C10.replace("nor_conv_3x3~1|+", "nor_conv_3x3|+"), "2<-1 token"),
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 node groups"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2.*2 '\\|op~src\\|' tokens"),
    ("nor_conv_3x3~0+|none~0|none~1|+|none~0|none~1|none~2|", "node 1"),
    ("", "3 node groups"),
])
def test_bad_strings_raise_naming_the_problem(space: NB201Space, text: str, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        space.parse(text)


def test_bad_values_raise_with_the_field(space: NB201Space) -> None:
    with pytest.raises(InvalidArchitecture, match="'e3'.*conv_7x7.*'none', 'skip_connect'"):
        space.make({**space.largest().to_dict(), "e3": "conv_7x7"})
    with pytest.raises(InvalidArchitecture, match="'e5'.*<missing>"):
        space.make({k: "none" for k in EDGE_LABELS[:5]})
    with pytest.raises(InvalidValue, match="nb201 index.*15625.*0..15624"):
        space.from_index(15625)
    with pytest.raises(InvalidValue, match="nb201 index"):
        space.from_index("12")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="^C of space 'nb201': got 0"):
        get_space("nb201", C=0)
    with pytest.raises(InvalidValue, match="input_shape"):
        space.build(space.largest(), input_shape=(3, 32))  # type: ignore[arg-type]
    with pytest.raises(InvalidArchitecture, match="space"):
        space.index(Architecture("menas-mt", {"e0": "none"}))


# ------------------------------------------------------------------------------------------------ costs
def test_best_cells_parameter_counts(space: NB201Space) -> None:
    """Arch 9930 (best CIFAR-100 cell: five 3x3 convs) has 1,288,506 parameters, arch 6111 (best CIFAR-10 cell:
    four 3x3 + one 1x1) 1,073,466 — counted on the built network too."""
    for index, text, params in [(9930, BEST_C100, 1_288_506), (6111, BEST_C10, 1_073_466)]:
        a = space.from_index(index)
        assert str(a) == text
        assert space.params(a) == params == _counted_params(space.build(a))


def test_params_equal_the_official_nb201_counts(space: NB201Space, shared_data: Path) -> None:
    """NAS-Bench-Suite-Zero stores NB201's own parameter counts (in millions, 6 decimals) for 1,450 cells."""
    with gzip.open(shared_data / "nb201_zero_cost_naslib" / "zc_nasbench201.csv.gz", "rt", newline="") as fh:
        zc = list(csv.DictReader(fh))
    assert len(zc) == 1450
    for row in zc:
        classes = {"cifar10": 10, "cifar100": 100}[row["dataset"]]
        official = round(ast.literal_eval(row["params"])["score"] * 1e6)
        assert space.params(space.parse(row["arch_str"]), num_classes=classes) == official, row["arch_str"]


def test_params_of_all_cells_match_counted_per_op_costs(space: NB201Space) -> None:
    """Counted parameters of three built networks give the cost of the skeleton and of each conv op; the analytic
    count of all 15,625 cells must equal that sum (and FLOPs are monotone in the conv ops)."""
    none = ["none"] * 6
    base = _counted_params(space.build(space.from_ops(none)))
    per = {op: _counted_params(space.build(space.from_ops([op] + none[1:]))) - base
           for op in ("nor_conv_1x1", "nor_conv_3x3")}
    flops = []
    for ops in itertools.product(OPS, repeat=6):
        a = space.from_ops(ops)
        assert space.params(a) == base + sum(per.get(op, 0) for op in ops)
        flops.append(space.flops(a))
    assert min(flops) == space.flops(space.smallest()) and max(flops) == space.flops(space.largest())
    assert flops.count(max(flops)) == 1


@pytest.mark.slow
def test_flops_and_params_equal_counters_on_built_networks(space: NB201Space) -> None:
    rng = np.random.default_rng(7)
    archs = [space.sample(rng) for _ in range(20)] + [space.smallest(), space.largest()]
    for a in archs:
        net = space.build(a)
        assert space.params(a) == _counted_params(net), str(a)
        assert space.flops(a) == _counted_flops(net, (3, 32, 32)), str(a)


@pytest.mark.parametrize("shape, classes, reductions", [
    ((3, 32, 32), 10, 2), ((1, 28, 28), 10, 2), ((1, 8, 8), 10, 1), ((3, 30, 17), 5, 2), ((2, 5, 5), 3, 0)])
def test_build_forward_on_other_inputs(shape: tuple[int, int, int], classes: int, reductions: int) -> None:
    space = get_space("nb201", C=4, N=2)
    rng = np.random.default_rng(3)
    for a in [space.largest(), space.sample(rng), space.sample(rng)]:
        net = space.build(a, input_shape=shape, num_classes=classes)
        assert [s.stride for s in space.plan(shape, classes) if s.kind == "reduce"].count(2) == reductions
        net.train()
        y = net(torch.randn(2, *shape))
        assert y.shape == (2, classes) and torch.isfinite(y).all()
        y.sum().backward()
        assert space.params(a, shape, classes) == _counted_params(net)
        assert space.flops(a, shape, classes) == _counted_flops(net, shape)


def test_default_network_forward_and_structure(space: NB201Space) -> None:
    a = space.parse(BEST_C10)
    net = space.build(a)
    assert isinstance(net, NB201Network) and net.ops == space.cell_ops(a)
    assert sum(type(m).__name__ == "NB201Cell" for m in net.modules()) == 15
    assert sum(type(m).__name__ == "ResidualReduction" for m in net.modules()) == 2
    with torch.no_grad():
        y = net.eval()(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    # an all-none cell still gives a well-defined network (the cells output zeros)
    dead = space.build(space.smallest())
    with torch.no_grad():
        assert torch.isfinite(dead.eval()(torch.randn(1, 3, 32, 32))).all()


def test_space_options_and_genetic_operators() -> None:
    small = get_space("nb201", C=8, N=1)
    assert repr(small) == "<NB201Space 'nb201' C=8 N=1>"
    a = small.parse(BEST_C100)
    assert small.params(a) == _counted_params(small.build(a)) < get_space("nb201").params(a)
    rng = np.random.default_rng(5)
    m = small.mutate(a, rng)
    assert sum(m[k] != a[k] for k in EDGE_LABELS) == 1
    c = small.crossover(a, small.smallest(), rng)
    assert all(c[k] in (a[k], "none") for k in EDGE_LABELS)
    with pytest.raises(InvalidValue, match="nb201 ops"):
        small.from_ops(["none"] * 5)


def test_network_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidValue, match="NB201 cell ops.*conv_5x5"):
        NB201Network(["conv_5x5"] + ["none"] * 5)
    with pytest.raises(InvalidValue, match="NB201 cell ops"):
        NB201Network(["none"] * 4)
    with pytest.raises(InvalidValue, match="NB201 reduction_strides: got \\[2, 3\\]"):
        NB201Network(["none"] * 6, reduction_strides=(2, 3))
