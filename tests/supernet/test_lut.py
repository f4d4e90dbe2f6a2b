"""Latency lookup tables (nasforge.supernet.lut): what is timed, how an architecture's latency is summed, the
packaged HELP tables, and their use by `nasforge cost --lut` and search constraints."""
from __future__ import annotations

import gzip
import csv
import json

import numpy as np
import pytest

from nasforge import get_space
from nasforge.cli import main
from nasforge.config import build_space, build_strategy, config_from_dict
from nasforge.errors import InvalidValue
from nasforge.supernet.lut import HELP_PATH, LatencyLUT, build_lut, load_lut


@pytest.fixture(scope="module")
def nb201_lut(tmp_path_factory):
    out = tmp_path_factory.mktemp("lut") / "lut.json"
    space = get_space("nb201", C=4, N=1)
    return space, build_lut(space, (3, 16, 16), 10, fidelity=4, repeats=2, out=out), out


def test_table_times_each_unique_op_and_shape_once_and_sums_per_architecture(nb201_lut):
    space, lut, out = nb201_lut
    # nb201 C=4 N=1 at 16x16: three cells (4x16x16, 8x8x8, 16x4x4) x four ops with a module
    shapes = ("4x16x16->4x16x16", "8x8x8->8x8x8", "16x4x4->16x4x4")
    assert set(lut.entries) == {f"{op}@{s}" for op in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
                                for s in shapes}
    assert all(v >= 0 for v in lut.entries.values()) and lut.fixed_ms > 0
    arch = space.from_ops(["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1"])
    expected = lut.fixed_ms + sum(lut.entries[f"{op}@{s}"] for op in ("nor_conv_3x3", "skip_connect", "avg_pool_3x3",
                                                                        "nor_conv_1x1")
                                  for s in shapes)
    assert lut.latency_ms(arch) == pytest.approx(expected)
    assert lut.latency_ms(space.smallest()) == pytest.approx(lut.fixed_ms)  # all-none: fixed parts only
    saved = json.loads(out.read_text())
    assert saved["space"] == {"name": "nb201", "kwargs": {"C": 4, "N": 1}} and saved["torch"]
    assert saved["threads"] == 1 and saved["backend"] == "torch" and saved["device"] == "cpu"
    fid = saved["fidelity"]
    assert fid["n"] == 4 and len(fid["measured_ms"]) == 4 and -1 <= fid["spearman_rho"] <= 1 and fid["mape"] >= 0
    assert load_lut(out).latency_ms(arch) == pytest.approx(lut.latency_ms(arch))


def test_proxyless_table_covers_every_layer_op():
    space = get_space("proxyless-basic").restrict({f"l{i}.op": ["identity", "k3_e3"] for i in range(1, 22)
                                                   if "identity" in get_space("proxyless-basic").op_sets()[f"l{i}.op"]})
    lut = build_lut(space, (3, 32, 32), 10, fidelity=0, repeats=1)
    assert set(lut.positions) == set(space.op_sets())
    arch = space.sample(np.random.default_rng(0))
    ops = {label: str(arch[label]) for label in space.op_sets()}
    assert lut.latency_ms(arch) == pytest.approx(lut.fixed_ms + sum(lut.entries[s] for label, op in ops.items()
                                                                    for s in lut.positions[label][op]))
    assert all(lut.positions[label]["identity"] == [] for label in lut.positions if "identity" in lut.positions[label])
    # a stage's strided first layer and the stride-1 layer before it see the same input: two entries, not one
    assert lut.positions["l5.op"]["k3_e3"] != lut.positions["l4.op"]["k3_e3"]
    with pytest.raises(InvalidValue, match="latency table op"):
        lut.latency_ms(get_space("proxyless-basic").largest())  # k7_e6 was never timed


def test_help_tables_serve_nb201_latency():
    with gzip.open(HELP_PATH, "rt") as fh:
        first = next(csv.DictReader(fh))
    lut = load_lut("help:gold_6226")
    assert lut.latency_ms(get_space("nb201").parse(first["arch_str"])) == pytest.approx(float(first["gold_6226"]))
    with pytest.raises(InvalidValue, match="help:DEVICE: got 'nope'"):
        load_lut("help:nope")
    with pytest.raises(InvalidValue, match="--lut"):
        load_lut("missing.json")
    with pytest.raises(InvalidValue, match="latency table"):
        LatencyLUT({"space": {}})


def test_cost_command_and_search_constraints_read_a_table(nb201_lut, capsys):
    space, lut, out = nb201_lut
    arch = space.from_ops(["nor_conv_3x3"] * 6)
    assert main(["cost", "nb201", space.format(arch), "--input", "3x16x16", "--lut", str(out)]) == 2
    assert "--lut: got \"nb201 {'C': 4, 'N': 1} at 3x16x16\"" in capsys.readouterr().err  # built for another net
    config = config_from_dict({"space": "nb201", "strategy": "random", "budget": 4, "latency_lut": "help:pixel3",
                               "constraints": [{"name": "latency_ms", "max": 30}]})
    strategy = build_strategy(config, build_space(config))
    help_lut = load_lut("help:pixel3")
    for cand in strategy.ask(4):
        latency = strategy.costs(cand.arch)["latency_ms"]
        assert latency == pytest.approx(help_lut.latency_ms(cand.arch)) and latency <= 30


def test_latency_table_command(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["latency-table", "build", "nb201", "--input", "1x8x8", "--out", str(out), "--fidelity", "2",
                 "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["entries"] == len(json.loads(out.read_text())["entries"]) > 0 and row["fidelity_n"] == 2
    space = get_space("nb201")
    arch = space.from_ops(["nor_conv_3x3"] * 6)
    assert main(["cost", "nb201", space.format(arch), "--input", "1x8x8", "--lut", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] == pytest.approx(load_lut(out).latency_ms(arch))
    assert main(["latency-table", "build", "bignas", "--out", str(out)]) == 2
    assert "SPACE: got 'bignas'" in capsys.readouterr().err
