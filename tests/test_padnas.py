"""PAD-NAS (nasforge.methods.padnas, padnas.txt Algorithm 1): the operation-pruning rule on hand-made rank tables,
a tiny end-to-end run (NB201 C=4 N=1 on scikit-learn's digits, M=3, CES population 6 x 2 iterations) through the
command line, resume after interruptions, export of a final-front member and the config's one-line errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nasforge import get_space
from nasforge.cli import main
from nasforge.errors import InvalidValue
from nasforge.eval.oneshot import fixed_batches
from nasforge.export import load_exported
from nasforge.io import load_checkpoint
from nasforge.methods.padnas import (
    STORE,
    load_padnas_config,
    padnas_config_from_dict,
    run_padnas,
)
from nasforge.pareto import fast_non_dominated_sort
from nasforge.report import plot_op_heatmap
from nasforge.store import SQLiteStore
from nasforge.supernet.lut import load_lut
from nasforge.supernet.opsets import op_frequencies, prune_op_sets, ranked_op_frequencies
from nasforge.trial import Result, Trial, TrialState

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# the second stage fine-tunes at a negligible rate, so its supernet must hold exactly the inherited weights
CONFIG = {"name": "padnas-tiny", "method": "padnas", "space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}},
          "data": {"source": "digits", "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0},
          "train": {"batch_size": 64, "lr_reference_batch": None, "warmup_epochs": 0},
          "M": 3, "epochs": [1.0, 0.5], "lr": [0.2, 1e-9], "P_th": 0.1,
          "population_size": 6, "max_iterations": 2, "Lat_min": 3.0, "Lat_max": 15.0, "latency_lut": "help:pixel3",
          "calib_images": 128, "score_images": 128, "eval_batch_size": 64, "kendall_n": 5,
          "checkpoint_every": None, "seed": 0, "device": "cpu", "threads": 1, "progress": False}


# ============================================================================================ pruning rule
def _trial(i: int, arch, rank_table: dict, rank: int) -> Trial:
    rank_table[i] = rank
    return Trial(id=i, arch=arch, state=TrialState.COMPLETE, result=Result({"accuracy": 0.0}))


def test_frequencies_count_distinct_architectures_below_rank_10_and_prune_at_or_below_p_th():
    space = get_space("nb201", C=4, N=1)
    ranks: dict[int, int] = {}
    e0 = ["nor_conv_3x3"] * 97 + ["skip_connect"] * 2 + ["avg_pool_3x3"]
    trials = [_trial(i, space.from_ops([op, *(OPS[int(d)] for d in np.base_repr(i, 5).zfill(5))]), ranks, 1 + i % 9)
              for i, op in enumerate(e0)]
    trials.append(_trial(100, trials[99].arch, ranks, 3))  # a repeat of the only avg_pool_3x3 one: counts once
    trials += [_trial(101 + i, space.from_ops(["nor_conv_1x1"] * 6), ranks, 10 + i) for i in range(3)]  # rank >= 10
    freqs, counted = ranked_op_frequencies(space.op_sets(), trials, ranks, 10)
    assert counted == 100
    assert freqs["e0"] == {"none": 0.0, "skip_connect": 0.02, "nor_conv_1x1": 0.0, "nor_conv_3x3": 0.97,
                           "avg_pool_3x3": 0.01}
    assert all(math.isclose(sum(row.values()), 1.0) for row in freqs.values())
    kept, pruned = prune_op_sets(space.op_sets(), freqs, 0.01)
    assert kept["e0"] == ("skip_connect", "nor_conv_3x3")  # 0.01 <= P_th: removed (the tie); 0.02 stays
    assert pruned["e0"] == ["none", "nor_conv_1x1", "avg_pool_3x3"]
    assert set(kept) == set(space.op_sets()) and all(set(kept[k]) | set(pruned[k]) == set(OPS) for k in kept)
    # rank 9 is the last counted one: with rank_limit 9 the rank-9 architectures drop out
    assert ranked_op_frequencies(space.op_sets(), trials, ranks, 9)[1] == 100 - sum(1 for i in range(100) if i % 9 == 8)


def test_pruning_never_empties_a_layer_and_keeps_every_tied_maximum():
    op_sets = {"a": ("x", "y", "z"), "b": ("x", "y", "z"), "c": ("x", "y")}
    freqs = {"a": {"x": 0.3, "y": 0.3, "z": 0.4}, "b": {"x": 0.4, "y": 0.4, "z": 0.2}, "c": {"x": 0.0, "y": 0.0}}
    kept, pruned = prune_op_sets(op_sets, freqs, 0.5)
    assert kept == {"a": ("z",), "b": ("x", "y"), "c": ("x", "y")}
    assert pruned == {"a": ["x", "y"], "b": ["z"], "c": []}
    assert prune_op_sets(op_sets, freqs, 0.0)[0] == {"a": ("x", "y", "z"), "b": ("x", "y", "z"), "c": ("x", "y")}
    with pytest.raises(InvalidValue, match="P_th"):
        prune_op_sets(op_sets, freqs, 1.0)
    with pytest.raises(InvalidValue, match="operation of 'a'"):
        op_frequencies({"a": ("x",)}, [{"a": "q"}])


def test_op_heatmap_draws_layers_with_different_op_sets(tmp_path):
    freqs = {"l1.op": {"k3_e3": 1.0}, "l2.op": {"identity": 0.25, "k3_e3": 0.0, "k7_e6": 0.75}}
    path = plot_op_heatmap(freqs, tmp_path / "h.png", pruned={"l2.op": ["k3_e3"]}, ops=["identity", "k3_e3"])
    assert path.stat().st_size > 1000


# ============================================================================================ end to end
def _cli_run(tmp_path: Path, out: Path, *extra: str) -> None:
    path = tmp_path / "padnas.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    assert main(["supernet", "train", str(path), "--out", str(out), "--format", "json", *extra]) == 0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("padnas")
    _cli_run(tmp, tmp / "run")
    return tmp / "run"


def _stage_trials(store: SQLiteStore, k: int) -> list[Trial]:
    return [t for t in store.trials(TrialState.COMPLETE) if t.info.get("stage") == k]


def test_stages_search_count_prune_and_inherit(run_dir):
    out = json.loads((run_dir / "padnas.json").read_text())
    stages = out["stages"]
    assert [s["stage"] for s in stages] == [1, 2, 3] and stages[0]["front"] is None
    lut = load_lut("help:pixel3")
    with SQLiteStore(run_dir / STORE) as store:
        for k in (2, 3):
            trials = _stage_trials(store, k)
            assert len(trials) == 12 and store.get_meta(f"stage/{k}")["frequencies"] == stages[k - 1]["frequencies"]
            # the ranks, recomputed from the stored objectives, give the recorded frequencies
            objs = np.array([[-t.result.metrics["accuracy"], t.result.costs["latency_ms"]] for t in trials])
            ranks = {trials[i].id: r for r, front in enumerate(fast_non_dominated_sort(objs), 1) for i in front}
            prev = stages[k - 2]["op_sets"]
            assert ranked_op_frequencies(prev, trials, ranks, 10)[0] == stages[k - 1]["frequencies"]
            assert all(3.0 <= t.result.costs["latency_ms"] <= 15.0 for t in trials)
            assert all(t.result.costs["latency_ms"] == lut.latency_ms(t.arch) for t in trials)
            front = {m["arch"] for m in stages[k - 1]["front"]}
            assert front == {get_space("nb201").format(trials[i].arch) for i in fast_non_dominated_sort(objs)[0]}
    two = stages[1]
    for label, ops in stages[0]["op_sets"].items():
        removed = [op for op in ops if two["frequencies"][label][op] <= 0.1]
        if len(removed) < len(ops):
            assert two["pruned"][label] == removed
        assert two["op_sets"][label] == [op for op in ops if op not in two["pruned"][label]]
    assert stages[1]["size"] < stages[0]["size"] and stages[2]["op_sets"] == stages[1]["op_sets"]
    assert stages[2]["pruned"] == {} and out["final_front"] == stages[2]["front"]
    assert all(isinstance(s["kendall_tau"], float) for s in stages[:2])
    # stage 2's supernet: the pruned ops' modules are gone, the kept ones hold the inherited weights
    one = load_checkpoint(run_dir / stages[0]["training"]["checkpoint"])["model"]
    two_w = load_checkpoint(run_dir / stages[1]["training"]["checkpoint"])["model"]
    gone = [k for k in one if k not in two_w]
    assert gone and all(any(f".{label}.{op}." in k for label, ops in two["pruned"].items() for op in ops)
                        for k in gone)
    assert all(torch.allclose(two_w[k].float(), one[k].float(), atol=1e-6) for k in two_w if "weight" in k)
    for k in (2, 3):
        assert (run_dir / f"heatmap_stage{k}.png").stat().st_size > 0 and (run_dir / f"front_stage{k}.png").is_file()
    info = json.loads((run_dir / "supernet.json").read_text())
    assert info["method"] == "padnas" and info["op_sets"] == stages[-1]["op_sets"]


def test_a_final_front_member_exports_with_its_search_accuracy(run_dir, tmp_path, capsys):
    out = json.loads((run_dir / "padnas.json").read_text())
    member = out["final_front"][-1]
    assert main(["export", str(run_dir), "--arch", member["name"], "--out", str(tmp_path / "e"), "--format",
                 "json"]) == 0
    assert member["arch"] in capsys.readouterr().out
    model, arch = load_exported(tmp_path / "e")
    assert get_space("nb201").format(arch) == member["arch"] and (tmp_path / "e" / "model.onnx").is_file()
    config = load_padnas_config(run_dir / "config.yaml")
    from nasforge.data import load_data

    scored = fixed_batches(load_data(config.data), "val", 128, 64, torch.device("cpu"), seed=0, train=False)
    with torch.no_grad():
        correct = sum(int((model(x.float()).argmax(1) == y).sum()) for x, y in scored)
    assert abs(100.0 * correct / 128 - member["accuracy"]) <= 100.0 / 128  # at most one image apart


class Stop(Exception):
    pass


def _stop(event: str, stage: int, n: int | None = None):
    def hook(ev, info):
        if ev == event and info["stage"] == stage and (n is None or info["n"] == n):
            raise Stop
    return hook


def _comparable(out: dict) -> list[dict]:
    keep = ("stage", "op_sets", "frequencies", "pruned", "front", "kendall_tau", "counted", "evaluated", "size")
    return [{k: s.get(k) for k in keep} for s in out["stages"]]


def test_a_run_interrupted_anywhere_resumes_to_the_same_op_sets_and_fronts(run_dir, tmp_path):
    config = padnas_config_from_dict(CONFIG)
    out = tmp_path / "run"
    for hook in (_stop("stage", 1), _stop("ces_trial", 2, 5), _stop("ces_trial", 3, 7)):
        with pytest.raises(Stop):
            run_padnas(config, out, resume=True, hook=hook)
    with SQLiteStore(out / STORE) as store:
        assert store.get_meta("stage/2") is not None and store.get_meta("stage/3") is None
        assert len(_stage_trials(store, 3)) == 7
    _cli_run(tmp_path, out, "--resume")
    resumed, reference = (json.loads((d / "padnas.json").read_text()) for d in (out, run_dir))
    assert _comparable(resumed) == _comparable(reference) and resumed["final_front"] == reference["final_front"]
    with SQLiteStore(out / STORE) as store:
        assert len(store) == 24  # nothing evaluated twice


def test_a_used_folder_needs_resume_and_the_same_config(run_dir):
    with pytest.raises(InvalidValue, match="--resume to continue"):
        run_padnas(padnas_config_from_dict(CONFIG), run_dir)
    needle = r"^P_th of the run in .*\(--resume keeps its config\): got 0.2; allowed: 0.1$"
    with pytest.raises(InvalidValue, match=needle):
        run_padnas(padnas_config_from_dict({**CONFIG, "P_th": 0.2}), run_dir, resume=True)


# ============================================================================================ config
@pytest.mark.parametrize("change, message", [
    ({"epochs": [1.0]}, "epochs: got [1.0]; allowed: 2 positive numbers, one per training stage (M - 1, M = 3)"),
    ({"lr": [0.1, 0.0]}, "lr: got [0.1, 0.0]; allowed: 2 positive numbers"),
    ({"M": 1}, "M: got 1; allowed: greater than or equal to 2"),
    ({"P_th": 1.0}, "P_th: got 1.0; allowed: less than 1"),
    ({"Lat_min": 20.0}, "Lat_min: got 20.0; allowed: at most Lat_max (15.0)"),
    ({"train": {"lr": 0.1}}, "train.lr: got 0.1; allowed: unset (the list 'lr' gives each stage's rate)"),
    ({"train": {"optimizer": "adam"}}, "optimizer"),
    ({"space": "bignas"}, "space: got 'bignas'; allowed: a choice space"),
    ({"space": "proxyless-basic"}, "latency_lut: got 'help:pixel3'; allowed: build or a lut.json"),
    ({"latency_lut": "help:phone"}, "latency_lut: got 'help:phone'"),
    ({"latency_lut": "nowhere.json"}, "latency_lut: got 'nowhere.json'; allowed: build, help:DEVICE or an existing"),
    ({"kendall_n": 2}, "kendall_n: got 2; allowed: 0, or >= 3 for space nb201"),
    ({"data": {"source": "digits", "val_fraction": 0.0}}, "data.val_fraction: got 0.0; allowed: a fraction > 0"),
    ({"population_size": True}, "population_size: got True; allowed: an integer, not true/false"),
    ({"method": "spos"}, "method: got 'spos'"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_config_values_are_one_line_errors(change, message):
    with pytest.raises(InvalidValue) as err:
        padnas_config_from_dict({**CONFIG, **change})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_shipped_configs_are_the_paper_settings_and_the_cpu_one_shrinks_by_set():
    paper = load_padnas_config(CONFIGS / "padnas.yaml")
    assert (paper.M, paper.epochs, paper.lr, paper.P_th, paper.rank_limit) == (4, [120, 80, 40], [0.5, 0.1, 0.1],
                                                                               0.01, 10)
    assert (paper.population_size, paper.max_iterations, paper.Lat_min, paper.Lat_max) == (64, 40, 60.0, 70.0)
    assert paper.space.name == "proxyless-basic" and paper.train_config(0).schedule == "linear"
    large = load_padnas_config(CONFIGS / "padnas-large.yaml")
    assert (large.space.name, large.Lat_min, large.Lat_max) == ("proxyless-large", 50.0, 100.0)
    cpu = load_padnas_config(CONFIGS / "padnas-nb201-cpu.yaml", ["M=2", "epochs=[0.1]", "lr=[0.5]"])
    assert cpu.M == 2 and cpu.space.kwargs == {"C": 8, "N": 1}
