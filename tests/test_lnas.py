"""DARTS and LNAS pipelines (nasforge.methods.darts / lnas): tiny end-to-end runs through the command line on
scikit-learn's digits (NB201 C=4 N=1, 2 search epochs of 2 steps), the run folder's contents (alpha history + plot,
genotype, NB201 table accuracy, sparse costs, exported model with masks), resume of a finished run, the alpha
pruning schedule, and the configs' one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from nasforge.cli import main
from nasforge.errors import InvalidValue
from nasforge.eval.tabular import TabularEvaluator
from nasforge.export import load_exported
from nasforge.io import load_checkpoint
from nasforge.methods.darts import load_darts_config
from nasforge.methods.lnas import alpha_round_epochs, lnas_config_from_dict, load_lnas_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = {"space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}},
        "data": {"source": "digits", "val_fraction": 0.0, "test_fraction": 0.2, "seed": 0, "limit": 400},
        "search": {"epochs": 2, "batch_size": 32, "steps_per_epoch": 1}, "retrain": {"batch_size": 64},
        "seed": 0, "device": "cpu", "threads": 1, "progress": False}


def _train(tmp_path: Path, config: dict, out: Path, *extra: str) -> dict:
    path = tmp_path / f"{config['method']}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["supernet", "train", str(path), "--out", str(out), "--format", "json", *extra]) == 0
    return json.loads((out / "result.json").read_text())


def test_darts_run_folder_holds_alpha_history_plot_genotype_and_its_nb201_accuracy(tmp_path, capsys):
    out = tmp_path / "darts"
    result = _train(tmp_path, {**BASE, "name": "darts-tiny", "method": "darts", "retrain_epochs": 0,
                               "search": {**BASE["search"], "order": 2}}, out)
    capsys.readouterr()
    assert (out / "alpha_history.png").stat().st_size > 0 and (out / "search.pt").is_file()
    hist = json.loads((out / "alpha_history.json").read_text())
    assert len(hist["epochs"]) == 2 and hist["ops"][1] == "skip_connect"
    table = TabularEvaluator.nb201("cifar10", "hp200-test", costs=False)
    from nasforge import get_space
    arch = get_space("nb201").parse(result["arch"])
    assert result["nb201"]["test_accuracy"] == table.evaluate(arch).metrics["test_accuracy"]
    assert result["arch"] == hist["epochs"][-1]["arch"] and result["order"] == 2
    assert "retrain" not in result
    # a finished run resumes to the same result; a new run into the same folder is refused
    assert main(["supernet", "train", "--resume", "--out", str(out), "--format", "json"]) == 0
    assert json.loads((out / "result.json").read_text())["arch"] == result["arch"]
    capsys.readouterr()
    assert main(["supernet", "train", str(tmp_path / "darts.yaml"), "--out", str(out)]) != 0
    assert "--resume" in capsys.readouterr().err


def test_lnas_generalized_prunes_alpha_during_search_and_weights_during_retraining(tmp_path, capsys):
    out = tmp_path / "lnas"
    p = 0.75
    result = _train(tmp_path, {**BASE, "name": "lnas-tiny", "method": "lnas", "variant": "generalized",
                               "sparsity": p, "n_weights": 2, "k": 1, "retrain_epochs": 3}, out)
    capsys.readouterr()
    epochs = json.loads((out / "alpha_history.json").read_text())["epochs"]
    masked = [int(sum(1 - m for row in e["mask"] for m in row)) for e in epochs]
    assert masked == [15, 22] == [e["alpha_masked"] for e in epochs]  # 30 paths: 1 - 0.25^(r/2) of them
    assert all(sum(row) >= 1 for row in epochs[-1]["mask"])
    last = torch.tensor(epochs[-1]["mask"], dtype=torch.bool)
    from nasforge import get_space
    ops = get_space("nb201").cell_ops(get_space("nb201").parse(result["arch"]))
    names = json.loads((out / "alpha_history.json").read_text())["ops"]
    assert all(last[e, names.index(op)] for e, op in enumerate(ops))  # the genotype uses surviving paths only
    assert result["retrain"]["weight_sparsity"] == pytest.approx(p, abs=2e-3)
    assert len(result["retrain"]["rounds"]) == 2 and len(result["retrain"]["timeline"]) == 3
    net, arch = load_exported(out / "model")
    masks = load_checkpoint(out / "model" / "masks.pt")
    state = net.state_dict()
    assert all((state[k][~m] == 0).all() for k, m in masks.items())
    assert main(["cost", str(out / "model"), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["nonzero_flops"] == result["costs"]["nonzero_flops"] < row["flops"]
    assert row["weight_sparsity"] == pytest.approx(p, abs=2e-3)
    assert main(["cost", "nb201"]) != 0 and "ARCH" in capsys.readouterr().err  # no folder, no architecture


def test_variant_2_retrains_densely_and_variant_1_searches_without_masks(tmp_path):
    from nasforge.methods.lnas import run_lnas
    v2 = run_lnas(lnas_config_from_dict({**BASE, "variant": 2, "sparsity": 0.5, "retrain_epochs": 1}), tmp_path / "a")
    assert v2["alpha_sparsity"] == 0.5 and v2["retrain"]["rounds"] == [] and v2["costs"]["weight_sparsity"] == 0
    v1 = run_lnas(lnas_config_from_dict({**BASE, "variant": 1, "sparsity": 0.5, "k": 1, "retrain_epochs": 2}),
                  tmp_path / "b")
    assert v1["alpha_sparsity"] == 0 and v1["costs"]["weight_sparsity"] == pytest.approx(0.5, abs=2e-3)


def test_lnas_searches_the_darts_space_and_exports_its_derived_network(tmp_path):
    from nasforge import get_space
    from nasforge.methods.lnas import run_lnas
    config = lnas_config_from_dict({**BASE, "space": {"name": "darts", "kwargs": {"C": 4, "layers": 3}},
                                    "search": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 1},
                                    "variant": 2, "sparsity": 0.5, "retrain_epochs": 1})
    result = run_lnas(config, tmp_path / "d")
    space = get_space("darts", C=4, layers=3)
    arch = space.parse(result["arch"])
    assert result["nb201"] is None and result["alpha_sparsity"] == 0.5  # 224 paths, 112 masked
    net, got = load_exported(tmp_path / "d" / "model")
    assert got == arch and sum(p.numel() for p in net.parameters()) == space.params(arch, (1, 8, 8), 10)


def test_alpha_rounds_are_spread_over_the_search_epochs():
    assert alpha_round_epochs(10, 10) == list(range(10))
    assert alpha_round_epochs(10, 3) == [3, 6, 9]
    assert alpha_round_epochs(4, 1) == [3]


@pytest.mark.parametrize("change,field", [({"sparsity": 0.3}, "sparsity"), ({"variant": 3}, "variant"),
                                          ({"variant": 1, "k": 10, "retrain_epochs": 10}, "retrain_epochs"),
                                          ({"n_alpha": 5}, "n_alpha"), ({"space": "proxyless-basic"}, "space"),
                                          ({"search": {"order": 3}}, "search.order"), ({"bogus": 1}, "bogus")])
def test_lnas_config_errors_are_one_line_and_name_the_field(change, field):
    with pytest.raises(InvalidValue) as err:
        lnas_config_from_dict({**BASE, **change})
    assert field in str(err.value) and "\n" not in str(err.value)


def test_shipped_configs_load():
    assert load_darts_config(CONFIGS / "darts-nb201-cpu.yaml").search.order == 1
    lnas = load_lnas_config(CONFIGS / "lnas-nb201-cpu.yaml", ["variant=generalized"])
    assert lnas.variant == "generalized" and lnas.final_epochs == 2
