"""One-shot evaluation (nasforge.eval.oneshot), the rank harness (nasforge.eval.rank) and SPOS training of a
choice-block supernet, on a tiny NB201 supernet trained on scikit-learn's digits."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from scipy import stats

from nasforge import get_space
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.errors import InvalidValue
from nasforge.eval.oneshot import OneShotEvaluator
from nasforge.eval.rank import rank_consistency
from nasforge.methods.bignas import run_supernet, supernet_config_from_dict
from nasforge.study import run_search
from nasforge.train import bn_layers

CONFIG = {"name": "spos-nb201-tiny", "method": "spos", "space": {"name": "nb201", "kwargs": {"C": 8, "N": 1}},
          "data": {"source": "digits", "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0},
          "recipe": "padnas", "train": {"batch_size": 64, "lr": 0.2, "lr_reference_batch": None, "warmup_epochs": 0},
          "epochs": 15,
          "dropout": 0.0, "calib_batches": 4, "eval_batch_size": 100, "checkpoint_every": None, "seed": 0,
          "device": "cpu", "threads": 1, "progress": False}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("spos") / "run"
    result = run_supernet(supernet_config_from_dict(CONFIG), out)
    assert result.steps == result.total_steps
    return out


@pytest.fixture(scope="module")
def evaluator(run_dir):
    return OneShotEvaluator(run_dir, calib_images=300, score_images=300, batch_size=100, device="cpu")


def test_spos_trains_a_choice_supernet_whose_children_beat_chance(run_dir, evaluator):
    info = json.loads((run_dir / "supernet.json").read_text())
    assert info["supernet"] == "choice" and info["method"] == "spos" and len(info["op_sets"]) == 6
    space = evaluator.space
    conv_cell = space.from_ops(["nor_conv_3x3"] * 6)
    accuracy = evaluator.evaluate(conv_cell).metrics["accuracy"]
    assert accuracy > 50.0  # 10 classes: chance is 10 %
    assert evaluator.evaluate(space.smallest()).metrics["accuracy"] < 20.0  # all-none: the cell output is zero


def test_bn_is_recalibrated_per_child_and_restored(evaluator):
    space, net = evaluator.space, evaluator.run.net
    buffers = [b.running_mean.clone() for b in bn_layers(net)]
    arch = space.from_ops(["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3",
                           "skip_connect"])
    first = evaluator.evaluate(arch)
    assert [torch.equal(a, b.running_mean) for a, b in zip(buffers, bn_layers(net))] == [True] * len(buffers)
    assert evaluator.evaluate(arch).metrics == first.metrics  # the same images, the same statistics
    assert first.info["calib_images"] == 300 and first.info["score_images"] == 300
    assert first.costs["params"] == space.params(arch, tuple(evaluator.run.info["input_shape"]), 10)
    # scored with the supernet's stale running statistics instead, the same child does differently
    with net.activate(arch), torch.no_grad():
        net.eval()
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in evaluator.scored)
    assert abs(100.0 * correct / evaluator.score_images - first.metrics["accuracy"]) > 1.0


def test_rank_consistency_matches_scipy_on_its_own_rows(evaluator, tmp_path):
    summary = rank_consistency(evaluator, n=12, seed=3, out_dir=tmp_path)
    saved = json.loads((tmp_path / "rank.json").read_text())
    rows = saved["architectures"]
    assert len({r["arch"] for r in rows}) == 12 and (tmp_path / "rank.png").stat().st_size > 0
    one_shot, truth = [r["one_shot"] for r in rows], [r["truth"] for r in rows]
    assert summary["kendall_tau"] == pytest.approx(stats.kendalltau(one_shot, truth).statistic)
    assert summary["params_tau"] == pytest.approx(stats.kendalltau([r["params"] for r in rows], truth).statistic)
    table = {a.strip(): None for a in []}
    nb201 = get_space("nb201")
    from nasforge.eval.tabular import TabularEvaluator

    table = TabularEvaluator.nb201("cifar10", "hp200-test")
    assert truth[0] == pytest.approx(table.evaluate(nb201.parse(rows[0]["arch"])).metrics["accuracy"])


def test_rank_against_a_user_truth_csv(evaluator, tmp_path):
    rng, space = np.random.default_rng(0), evaluator.space
    archs = {space.format(space.sample(rng)) for _ in range(60)}
    path = tmp_path / "truth.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "trained"])
        for a in sorted(archs):  # truth = parameter count: params_tau must be exactly 1
            w.writerow([a, space.params(space.parse(a), (1, 8, 8), 10)])
    summary = rank_consistency(evaluator, n=10, seed=1, metric="trained", truth=path)
    assert summary["params_tau"] == pytest.approx(1.0) and summary["truth_metric"] == "trained"
    with pytest.raises(InvalidValue, match="column"):
        rank_consistency(evaluator, n=10, seed=1, metric="nope", truth=path)


def test_cli_rank_prints_the_statistics(run_dir, capsys):
    code = main(["supernet", "rank", str(run_dir), "--n", "5", "--calib-images", "100", "--score-images", "100",
                 "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and set(out) == {"n", "kendall_tau", "spearman_rho", "params_tau", "flops_tau", "truth_metric",
                                      "seconds"}
    assert out["n"] == 5 and -1 <= out["kendall_tau"] <= 1 and out["truth_metric"] == "cifar10_test_hp200"
    assert main(["supernet", "rank", str(run_dir), "--truth", "x.csv", "--n", "5", "--budgets", "1"]) == 2
    assert "--budgets" in capsys.readouterr().err


def test_a_search_scores_with_the_one_shot_evaluator(run_dir, tmp_path):
    config = config_from_dict({"name": "os", "space": "nb201", "strategy": "regularized-evolution",
                               "evaluator": {"kind": "one-shot", "run": str(run_dir), "calib_images": 100,
                                             "score_images": 100},
                               "budget": 6, "device": "cpu", "progress": False, "report": False})
    study = run_search(config, tmp_path / "search")
    try:
        done = study.trials("complete")
        assert len(done) == 6 and all(t.result.info["supernet"] == str(run_dir) for t in done)
        declared = config.evaluator.reported()  # what the config promises is what every result holds
        assert all((set(t.result.metrics), set(t.result.costs)) == declared for t in done)
        assert config.evaluator.cost_lookup is hasattr(study.evaluator, "lookup_costs")
        assert study.best_value() > 20.0
    finally:
        study.close()
    bad = config_from_dict({"space": "proxyless-basic", "evaluator": {"kind": "one-shot", "run": str(run_dir)}})
    from nasforge.config import build_evaluator, build_space

    with pytest.raises(InvalidValue, match="space: got 'proxyless-basic'; allowed: 'nb201'"):
        build_evaluator(bad, build_space(bad))


def test_spos_config_rules_for_choice_spaces():
    with pytest.raises(InvalidValue, match="method: got 'bignas'; allowed: 'spos' for space 'nb201'"):
        supernet_config_from_dict({**CONFIG, "method": "bignas"})
    with pytest.raises(InvalidValue, match="sandwich"):
        supernet_config_from_dict({**CONFIG, "sandwich": True, "inplace_distillation": False})


def test_export_of_a_child_of_a_small_nb201_supernet_rebuilds_its_network(run_dir, tmp_path):
    from nasforge.export import load_exported

    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert main(["export", str(run_dir), "--arch", arch, "--out", str(tmp_path / "x"), "--no-onnx"]) == 0
    net, loaded = load_exported(tmp_path / "x")
    assert get_space("nb201").format(loaded) == arch
    assert sum(p.numel() for p in net.parameters()) == get_space("nb201", C=8, N=1).params(loaded, (1, 8, 8), 10)
