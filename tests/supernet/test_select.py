"""BigNAS coarse-to-fine selection and the model family (nasforge.supernet.select; BigNAS Sec. 3.2 / 4.4).

The API is exercised on a tiny reduced BigNAS table at 3x16x16 (real CIFAR-10 JPEG images) with two supernets:
the elastic MBConv supernet (weight sharing) when it is importable, and a test double that builds one network per
child (same activate / extract contract, no sharing), so the selection logic is tested on its own too.
"""
from __future__ import annotations

import copy
import importlib.util
import itertools
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from nasforge.arch import Architecture
from nasforge.cost import AnalyticCost
from nasforge.data.load import DataConfig, DataSplits, load_data
from nasforge.device import seeded_torch
from nasforge.errors import InvalidValue, NasforgeError
from nasforge.registry import get_space
from nasforge.spaces.bignas import BigNASSpace, BigNASStage
from nasforge.spaces.mbconv_common import layer_label, stage_label
from nasforge.supernet.select import (ChildEvaluator, Family, coarse_grid, coarse_to_fine, evaluate_child,
                                      export_member, fine_search, mutate_neighbour)
from nasforge.train.bn import bn_layers, calibrate_bn
from nasforge.train.loop import evaluate

CIFAR = Path("cifar10_jpeg") / "cifar10_jpeg_train_subset_10k.npz"  # in the shared data folder (conftest.py)
SHAPE = (3, 16, 16)


def tiny_space() -> BigNASSpace:
    """Three stages, every gene with at least two choices except stage 3's expand ratio."""
    return BigNASSpace(stages=(BigNASStage((8, 16), (1, 2), (3, 5), (1,), 1),
                               BigNASStage((16, 24), (1, 2, 3), (3, 5), (3, 6), 2),
                               BigNASStage((24, 32), (1, 2), (3, 5), (6,), 2)),
                       resolutions=(24, 32), stem_widths=(8, 16), head_widths=(32, 48))


class BuiltSupernet(nn.Module):
    """Test double of the supernet contract: each child is a separately built ``space.build`` network (created on
    first activation, weights seeded from the architecture key) and only the active one is a submodule;
    ``activate`` is scoped, ``extract`` copies."""

    def __init__(self, space: BigNASSpace, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.space, self.input_shape, self.num_classes = space, input_shape, num_classes
        self.built: dict[str, nn.Module] = {}
        self.register_module("active", None)

    @contextmanager
    def activate(self, arch: Architecture) -> Iterator["BuiltSupernet"]:
        key = self.space.validate(arch).key()
        if key not in self.built:
            with seeded_torch(int(key[:8], 16)):
                self.built[key] = self.space.build(arch, self.input_shape, self.num_classes)
        prior, self.active = self.active, self.built[key]
        try:
            yield self
        finally:
            self.active = prior

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            raise RuntimeError("no active child")
        return self.active(x)

    def extract(self, arch: Architecture) -> nn.Module:
        with self.activate(arch):
            return copy.deepcopy(self.active)


def _elastic(space: BigNASSpace, shape: tuple[int, int, int], classes: int) -> nn.Module:
    from nasforge.supernet.mbconv import ElasticMBConvSupernet

    return ElasticMBConvSupernet(space, shape, classes, generator=torch.Generator().manual_seed(0))


KINDS = ["built"] + (["elastic"] if importlib.util.find_spec("nasforge.supernet.mbconv") else [])


@pytest.fixture(scope="module")
def splits(shared_data: Path) -> DataSplits:
    path = shared_data / CIFAR
    if not path.is_file():
        pytest.skip(f"real data {path} not found")
    return load_data(DataConfig(source=str(path), limit=600, image_size=16, val_fraction=0.2, test_fraction=0.1))


@pytest.fixture(scope="module")
def batches(splits: DataSplits) -> tuple[list, list]:
    calib = list(itertools.islice(iter(splits.loader("train", 32, seed=1, train=False)), 4))
    return calib, list(splits.loader("val", 60, train=False))


@pytest.fixture(scope="module", params=KINDS)
def supernet(request: pytest.FixtureRequest) -> tuple[nn.Module, BigNASSpace]:
    """A supernet with random weights (enough for the API: accuracies are compared with each other, not with a
    target)."""
    space = tiny_space()
    with seeded_torch(0):
        net = BuiltSupernet(space, SHAPE, 10) if request.param == "built" else _elastic(space, SHAPE, 10)
    return net, space


# ------------------------------------------------------------------------------------------------ coarse grid
def test_table1_grid_has_the_papers_160_skeletons() -> None:
    space = get_space("bignas")
    grid = coarse_grid(space)
    assert len(grid) == len({a.key() for a in grid}) == 5 * 4 * 2 * 4 == 160
    assert space.smallest() in grid and space.largest() in grid
    assert {a["resolution"] for a in grid} == {192, 224, 256, 288, 320}
    depth_configs = {tuple(a[stage_label(k, "depth")] for k in range(1, 8)) for a in grid}
    # d = 0, 1/3, 2/3, 1 -> index round(d * (n - 1)) of each stage's depth choices (Table 1)
    assert depth_configs == {(1, 2, 2, 2, 2, 2, 1), (1, 2, 2, 3, 3, 3, 1), (2, 3, 3, 3, 5, 5, 2),
                             (2, 3, 3, 4, 6, 6, 2)}
    widths = {(a["stem.width"], a["s1.width"], a["s4.width"], a["s7.width"], a["head.width"]) for a in grid}
    assert widths == {(32, 16, 80, 320, 1280), (40, 24, 88, 352, 1408)}
    kernels = {tuple(a[layer_label(k, 0, "kernel")] for k in range(1, 8)) for a in grid}
    assert kernels == {(3,) * 7, (3, 3, 5, 5, 5, 5, 5), (3, 3, 3, 5, 5, 5, 5), (3, 3, 5, 3, 3, 3, 3)}


def test_tiny_grid_contents_follow_the_documented_mapping() -> None:
    space = tiny_space()
    grid = coarse_grid(space)
    assert len(grid) == 2 * 4 * 2 * 4 == len({a.key() for a in grid})
    for a in grid:
        g = a.to_dict()
        for k in (1, 2, 3):  # one kernel per stage, expand ratio tied to the width multiplier
            assert len({g[layer_label(k, j, "kernel")] for j in range(g[stage_label(k, "depth")])}) == 1
        thin = g["stem.width"] == 8
        assert (g["s1.width"], g["s2.width"], g["s3.width"], g["head.width"]) == \
            ((8, 16, 24, 32) if thin else (16, 24, 32, 48))
        assert g["s2.l0.expand"] == (3 if thin else 6)
    # fewer, coinciding configurations are deduplicated; explicit per-stage kernel multipliers are accepted
    small = coarse_grid(space, resolutions=(32,), depth_multipliers=(0.0, 0.1), width_multipliers=(1.0,),
                        kernel_configs=("small", (0.0, 0.0, 0.0)))
    assert small == [space.make({**space.largest().to_dict(), **{
        "s1.depth": 1, "s2.depth": 1, "s3.depth": 1, "s1.l0.kernel": 3, "s2.l0.kernel": 3, "s3.l0.kernel": 3}})]


@pytest.mark.parametrize("kwargs, match", [
    ({"resolutions": (20,)}, "resolutions"),
    ({"depth_multipliers": (0.0, 1.5)}, "depth_multipliers"),
    ({"width_multipliers": ()}, "width_multipliers"),
    ({"kernel_configs": ("huge",)}, "kernel_configs entry.*huge.*small"),
    ({"kernel_configs": ((0.0, 1.0),)}, "kernel_configs entry length"),
])
def test_grid_rejects_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidValue, match=match):
        coarse_grid(tiny_space(), **kwargs)
    with pytest.raises(InvalidValue, match="BigNASSpace"):
        coarse_grid(get_space("nb201"))


# ------------------------------------------------------------------------------------------------ evaluation
def test_evaluate_child_uses_calibrated_bn(supernet: tuple[nn.Module, BigNASSpace], batches: tuple) -> None:
    net, space = supernet
    calib, val = batches
    arch = space.largest()
    child = net.extract(arch)
    calibrate_bn(child, calib, 4)
    child.eval()
    with torch.no_grad():  # labels = the calibrated child's own predictions: 100% iff evaluated calibrated
        relabelled = [(x, child(x).argmax(1)) for x, _ in val]
    before = [b.clone() for bn in bn_layers(net) for b in bn.buffers()]
    acc = evaluate_child(net, arch, calib, relabelled, calib_steps=4, device="cpu")
    after = [b for bn in bn_layers(net) for b in bn.buffers()]
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after))  # restored
    assert acc >= 99.0
    with net.activate(arch):
        uncalibrated = evaluate(net, relabelled)["accuracy"]
    assert uncalibrated < 80.0, uncalibrated
    assert evaluate_child(net, arch, calib, relabelled, calib_steps=1) < 100.0  # other statistics, other outputs
    with pytest.raises(InvalidValue, match="supernet"):
        evaluate_child(child, arch, calib, val, calib_steps=4)


def test_fine_search_stays_within_budget_and_never_loses_the_skeleton(
        supernet: tuple[nn.Module, BigNASSpace], batches: tuple) -> None:
    net, space = supernet
    calib, val = batches
    ev = ChildEvaluator(net, space, calib, val, calib_steps=2, input_shape=SHAPE, num_classes=10)
    skeleton = coarse_grid(space, resolutions=(24,), depth_multipliers=(1 / 3,), width_multipliers=(0.0,),
                           kernel_configs=("large",))[0]
    cap = 1.1 * ev.costs(skeleton)["flops"]
    res = fine_search(ev, skeleton, ("flops", cap), 6, np.random.default_rng(0), max_genes=2)
    assert res.evaluated[0] is res.skeleton and res.skeleton.arch == skeleton
    assert 2 <= len(res.evaluated) <= 7 and len({e.arch.key() for e in res.evaluated}) == len(res.evaluated)
    assert all(e.costs["flops"] <= cap for e in res.evaluated) and res.rejected > 0
    assert all(e.costs == AnalyticCost(space, SHAPE, 10).cost(e.arch) for e in res.evaluated)
    assert res.best is _best_of(res.evaluated)
    again = fine_search(ev, skeleton, ("flops", cap), 6, np.random.default_rng(0), max_genes=2)
    assert [e.arch for e in again.evaluated] == [e.arch for e in res.evaluated]  # seeded
    with pytest.raises(InvalidValue, match="skeleton.*budget"):
        fine_search(ev, space.largest(), ("flops", cap), 2, np.random.default_rng(0))
    with pytest.raises(InvalidValue, match="rng"):
        fine_search(ev, skeleton, ("flops", cap), 2, 0)  # type: ignore[arg-type]


def _steps(space: BigNASSpace, a: Architecture, b: Architecture) -> dict[str, int]:
    """Genes active in both ``a`` and ``b`` that differ -> how many positions apart in the gene's choices."""
    dims, ga, gb = {d.label: d for d in space.dimensions()}, a.to_dict(), b.to_dict()
    return {k: abs(dims[k].index(gb[k]) - dims[k].index(ga[k])) for k in ga.keys() & gb.keys() if ga[k] != gb[k]}


def _scripted_evaluator(space: BigNASSpace, monkeypatch: pytest.MonkeyPatch) -> ChildEvaluator:
    """A ChildEvaluator on ``space`` whose accuracies are scripted (no network is built or run)."""
    from nasforge.supernet import select

    monkeypatch.setattr(select, "evaluate_child", lambda supernet, arch, *a, **k: float(int(arch.key()[:4], 16) % 97))
    calib = [(torch.zeros(2, *SHAPE), torch.zeros(2, dtype=torch.long))]
    return ChildEvaluator(BuiltSupernet(space, SHAPE, 10), space, calib, [], calib_steps=1, input_shape=SHAPE,
                          num_classes=10)


def test_fine_search_mutates_slightly_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """BigNAS Sec. 4.4 varies the skeleton "slightly": every gene a mutant changes moved ONE step in its ordered
    choices (Table 1 has up to 5 per gene), 1..max_genes of them, and a layer a deeper stage adds repeats the stage's
    last one. The old redraw-to-any-value (still ``mutation="any"``) jumps further and fails this (issue 16)."""
    space = get_space("bignas")
    ev = _scripted_evaluator(space, monkeypatch)
    skeleton = coarse_grid(space, resolutions=(256,), depth_multipliers=(1 / 3,), width_multipliers=(0.0,),
                           kernel_configs=("small-early",))[0]
    res = fine_search(ev, skeleton, 1.0, 60, np.random.default_rng(0))
    assert len(res.evaluated) == 61
    deeper = 0
    for e in res.evaluated[1:]:
        moved = _steps(space, skeleton, e.arch)
        assert 1 <= len(moved) <= 3 and set(moved.values()) == {1}, moved
        g, sk = e.arch.to_dict(), skeleton.to_dict()
        for k in range(1, 8):  # a layer the mutant added: the stage's last one, or one step from it (moved too)
            last = sk[stage_label(k, "depth")] - 1
            for j in range(last + 1, g[stage_label(k, "depth")]):
                deeper += 1
                for name in ("kernel", "expand"):
                    d = next(d for d in space.dimensions() if d.label == layer_label(k, j, name))
                    assert abs(d.index(g[layer_label(k, j, name)]) - d.index(sk[layer_label(k, last, name)])) <= 1
    assert deeper > 0 and {k for e in res.evaluated[1:] for k in _steps(space, skeleton, e.arch)} >= \
        {"resolution", "s5.depth", "s6.width"} | {"head.width"}
    wide = fine_search(ev, skeleton, 1.0, 60, np.random.default_rng(0), mutation="any")
    assert max(d for e in wide.evaluated[1:] for d in _steps(space, skeleton, e.arch).values()) >= 2
    with pytest.raises(InvalidValue, match="^mutation: got 'far'; allowed: 'neighbour', 'any'"):
        fine_search(ev, skeleton, 1.0, 2, np.random.default_rng(0), mutation="far")


def test_mutate_neighbour_moves_inwards_at_the_ends_and_is_seeded() -> None:
    space = tiny_space()
    rng = np.random.default_rng(3)
    for arch in (space.smallest(), space.largest()):
        for _ in range(20):
            child = mutate_neighbour(space, arch, rng, n=2)
            moved = _steps(space, arch, child)
            assert child != arch and 1 <= len(moved) <= 2 and set(moved.values()) == {1}
    a = [mutate_neighbour(space, space.smallest(), np.random.default_rng(7), 3) for _ in range(2)]
    assert a[0] == a[1]
    base = space.make({**space.smallest().to_dict(), "s2.l0.kernel": 5})  # stage 2: one layer, kernel 5, expand 3
    added = 0
    for seed in range(60):  # one gene moved: when it is s2's depth, the new layer repeats layer 0 exactly
        child = mutate_neighbour(space, base, np.random.default_rng(seed), 1)
        if child["s2.depth"] == 2:
            added += 1
            assert (child["s2.l1.kernel"], child["s2.l1.expand"]) == (5, 3) and _steps(space, base, child) == \
                {"s2.depth": 1}
    assert added > 0
    with pytest.raises(InvalidValue, match="^n: got 0"):
        mutate_neighbour(space, space.smallest(), rng, 0)


def _best_of(entries: list) -> object:
    """The most accurate entry; ties: fewer FLOPs, then the earlier one (fine_search's documented order)."""
    return min(enumerate(entries), key=lambda ie: (-ie[1].accuracy, ie[1].costs["flops"], ie[0]))[1]


def test_fine_search_returns_the_best_mutant_when_it_beats_the_skeleton(
        supernet: tuple[nn.Module, BigNASSpace], batches: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """With scripted accuracies (the skeleton the worst, mutants on a coarse scale with ties) the result must be the
    best mutant, ties to the cheaper: a search that kept the skeleton, or the last / first better mutant, fails."""
    from nasforge.supernet import select

    net, space = supernet
    calib, val = batches
    skeleton = coarse_grid(space, resolutions=(24,), depth_multipliers=(1 / 3,), width_multipliers=(0.0,),
                           kernel_configs=("large",))[0]

    def scripted(supernet, arch, *args, **kwargs) -> float:
        return 5.0 if arch == skeleton else 10.0 * (int(arch.key()[:6], 16) % 3 + 1)

    monkeypatch.setattr(select, "evaluate_child", scripted)
    ev = ChildEvaluator(net, space, calib, val, calib_steps=1, input_shape=SHAPE, num_classes=10)
    res = fine_search(ev, skeleton, ("flops", 2.0 * ev.costs(skeleton)["flops"]), 8, np.random.default_rng(1))
    assert len(res.evaluated) == 9 and res.skeleton.accuracy == 5.0
    top = [e for e in res.evaluated if e.accuracy == 30.0]
    assert len(top) >= 2 and len({e.costs["flops"] for e in top}) >= 2  # a tie the FLOPs must break
    assert res.best is _best_of(res.evaluated) and res.best.accuracy == 30.0
    assert res.best.costs["flops"] == min(e.costs["flops"] for e in top)


# ------------------------------------------------------------------------------------------------ family
GRID = {"resolutions": (32,), "depth_multipliers": (0.0, 1.0), "kernel_configs": ("small", "large")}


def test_coarse_to_fine_family_is_ordered_within_budgets_and_round_trips(
        supernet: tuple[nn.Module, BigNASSpace], splits: DataSplits, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    net, space = supernet
    from nasforge.supernet import select

    searches = []  # every fine search coarse_to_fine ran, with its result
    real = select.fine_search
    monkeypatch.setattr(select, "fine_search", lambda *a, **k: searches.append(real(*a, **k)) or searches[-1])
    # seed 1: with one-step mutations a mutant beats its skeleton on both supernets (the last assert needs one)
    kwargs = dict(seed=1, n_fine=3, calib_steps=2, batch_size=32, max_batches=1, grid=GRID)
    fam = coarse_to_fine(net, space, splits, [1.0, 0.3, 0.6], **kwargs)
    largest = AnalyticCost(space, SHAPE, 10).cost(space.largest())["flops"]
    assert len(fam.coarse) == 1 * 2 * 2 * 2 and fam.space == "bignas"
    assert [m.name for m in fam.members] == ["S", "M", "L"]
    assert [m.budget.fraction for m in fam.members] == [0.3, 0.6, 1.0]
    assert len(searches) == 3
    for m, search in zip(fam.members, searches):
        assert m.budget.max == pytest.approx(m.budget.fraction * largest)
        assert m.entry.costs["flops"] <= m.budget.max and m.skeleton.costs["flops"] <= m.budget.max
        # the member is the best of ITS fine search (skeleton + n_fine mutants), not the skeleton by default
        assert search.skeleton == m.skeleton and m.fine_evaluated == len(search.evaluated) - 1 == 3
        assert m.entry is _best_of(search.evaluated)
        feasible = [e for e in fam.coarse if e.costs["flops"] <= m.budget.max]
        assert m.skeleton is _best_of(feasible)
    assert any(m.entry != m.skeleton for m in fam.members)  # a mutant won somewhere: the fine phase mattered
    assert fam.info["input_shape"] == list(SHAPE) and fam.info["num_classes"] == 10
    assert fam.info["select_split"] == "val"
    assert fam.info["mutation"] == "neighbour"  # the default: one-step fine-grained mutations
    data = json.loads(json.dumps(fam.to_dict()))
    assert data["members"][0]["arch"] == space.format(fam.members[0].arch)
    assert {"arch", "flops", "params", "accuracy"} <= set(data["coarse"][0])
    assert Family.from_dict(data, space) == fam
    fam.save(tmp_path / "family.json")
    assert Family.load(tmp_path / "family.json", space) == fam


def test_coarse_to_fine_is_seeded(supernet: tuple[nn.Module, BigNASSpace], splits: DataSplits) -> None:
    net, space = supernet
    grid = {"resolutions": (32,), "depth_multipliers": (1.0,), "width_multipliers": (1.0,),
            "kernel_configs": ("small",)}
    kwargs = dict(n_fine=3, calib_steps=1, batch_size=32, max_batches=1, grid=grid)
    first, again = (coarse_to_fine(net, space, splits, [1.0], seed=5, **kwargs) for _ in range(2))
    assert first == again and first.info["seed"] == 5 and first.members[0].fine_evaluated == 3


def test_coarse_to_fine_rejects_impossible_or_mixed_budgets(supernet: tuple[nn.Module, BigNASSpace],
                                                            batches: tuple) -> None:
    net, space = supernet
    kwargs = dict(seed=0, n_fine=0, calib_steps=1, grid=GRID)
    with pytest.raises(InvalidValue, match="budget S.*flops >="):
        coarse_to_fine(net, space, batches, [("flops", 10.0)], **kwargs)
    with pytest.raises(InvalidValue, match="single cost"):
        coarse_to_fine(net, space, batches, [("flops", 1e9), ("params", 1e9)], **kwargs)
    with pytest.raises(InvalidValue, match="budget cost.*latency_ms"):
        coarse_to_fine(net, space, batches, [("latency_ms", 5.0)], **kwargs)
    with pytest.raises(InvalidValue, match="data"):
        coarse_to_fine(net, space, "cifar", [0.5], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="^mutation: got 'far'"):
        coarse_to_fine(net, space, batches, [0.5], mutation="far", **kwargs)


class _FlopsTable:
    """A deterministic latency table for the tests: 1 ms per 100k FLOPs; counts its look-ups."""

    def __init__(self, space: BigNASSpace) -> None:
        self.costs, self.calls = AnalyticCost(space, SHAPE, 10), 0

    def cost(self, arch: Architecture) -> dict[str, float]:
        self.calls += 1
        return {"latency_ms": self.costs.cost(arch)["flops"] / 1e5}


def test_latency_budgets_use_the_latency_model(supernet: tuple[nn.Module, BigNASSpace], splits: DataSplits) -> None:
    """Issue 12: budgets on latency_ms, from any model with cost(arch) -> {'latency_ms'} (a lookup table or a
    MeasuredLatency): members ordered by budget, each within its own, on the latency the model gave."""
    net, space = supernet
    table = _FlopsTable(space)
    lat = sorted({table.cost(a)["latency_ms"] for a in coarse_grid(space, **GRID)})
    budgets = [("latency_ms", lat[-1] * 2), ("latency_ms", lat[len(lat) // 2])]
    fam = coarse_to_fine(net, space, splits, budgets, seed=0, n_fine=2, calib_steps=1, batch_size=32, max_batches=1,
                         grid=GRID, latency=table)
    assert [(m.name, m.budget.max) for m in fam.members] == [("S", lat[len(lat) // 2]), ("M", lat[-1] * 2)]
    for m in fam.members:
        assert m.entry.costs["latency_ms"] == table.cost(m.arch)["latency_ms"] <= m.budget.max
        assert m.skeleton.costs["latency_ms"] <= m.budget.max
    assert all("latency_ms" in e.costs for e in fam.coarse) and table.calls > len(fam.coarse)
    with pytest.raises(InvalidValue, match=r"^budget S: got 'latency_ms <= 0.001'; allowed: latency_ms >= "):
        coarse_to_fine(net, space, splits, [("latency_ms", 1e-3)], seed=0, n_fine=0, calib_steps=1, grid=GRID,
                       latency=table)
    with pytest.raises(InvalidValue, match="^latency: got 'str'"):
        coarse_to_fine(net, space, splits, [("latency_ms", 1.0)], seed=0, calib_steps=1, grid=GRID, latency="lut")


# ------------------------------------------------------------------------------------------------ export
def test_export_member_round_trip_and_onnx_parity(supernet: tuple[nn.Module, BigNASSpace], batches: tuple,
                                                  tmp_path: Path) -> None:
    net, space = supernet
    calib, val = batches
    arch = coarse_grid(space, resolutions=(24,), depth_multipliers=(2 / 3,), width_multipliers=(1.0,),
                       kernel_configs=("small-early",))[0]
    res = export_member(net, arch, tmp_path / "M", space=space, calib_batches=calib, calib_steps=3,
                        meta={"name": "M"})
    x = val[0][0][:16]
    with net.activate(arch):  # reference: the activated child, calibrated the same way
        saved = copy.deepcopy(net.state_dict())
        calibrate_bn(net, calib, 3)
        net.eval()
        with torch.no_grad():
            ref = net(x)
        net.load_state_dict(saved)
    built = space.build(arch, SHAPE, 10)
    built.load_state_dict(torch.load(res.files["model"], weights_only=True))
    built.eval()
    with torch.no_grad():
        torch.testing.assert_close(built(x), ref, atol=1e-5, rtol=1e-4)
    stored = json.loads(Path(res.files["arch"]).read_text())  # nasforge.export's layout
    assert Architecture.from_json(stored["arch"], validate=False) == arch and space.parse(stored["arch_str"]) == arch
    assert stored["input_shape"] == list(SHAPE) and stored["num_classes"] == 10
    meta = json.loads(Path(res.files["meta"]).read_text())
    assert meta["meta"]["name"] == "M" and meta["meta"]["calib_steps"] == 3
    assert meta["sha256"]["model.pt"] == res.sha256
    if importlib.util.find_spec("onnxruntime") is None:
        assert res.onnx_max_abs_diff is None and "onnx" not in res.files
        return
    import onnxruntime as ort

    assert res.onnx_max_abs_diff is not None and res.onnx_max_abs_diff <= 1e-4
    session = ort.InferenceSession(res.files["onnx"], providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]  # another batch size than the exported one
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(NasforgeError, match="arch|gene"):
        export_member(net, get_space("bignas").largest(), tmp_path / "bad", space=space, calib_batches=calib)
