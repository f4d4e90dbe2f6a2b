"""Bad input is caught before a run starts (issue 17): one line naming the field, the value and what is allowed,
exit status 2 on the command line, and no run folder written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nasforge.cli import main
from nasforge.config import config_from_dict, load_config
from nasforge.errors import DataError, InvalidValue, NasforgeError
from nasforge.registry import EVALUATORS, get_space
from nasforge.study import build_study

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICKSTART = CONFIGS / "quickstart.yaml"  # train evaluator
NB201 = CONFIGS / "nb201.yaml"  # tabular evaluator
BIGNAS_CPU = CONFIGS / "bignas-cpu.yaml"


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of ``nasforge ARGV`` (exit status 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasforge: error: ") and "\n" not in err and "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------ the issue's four cases
@pytest.mark.parametrize("config, override, needle", [
    (QUICKSTART, "metric=x", "metric: got 'x'; allowed: 'accuracy', 'flops' or 'params' (what evaluator kind "
                             "'train' reports)"),
    (NB201, "metric=x", "metric: got 'x'; allowed: 'accuracy', 'flops', 'params' or 'test_accuracy'"),
    (QUICKSTART, "data.val_fraction=0", "data.val_fraction: got 0.0; allowed: a fraction > 0 (evaluator kind "
                                        "'train' scores candidates on the validation split)"),
    (QUICKSTART, "budget=true", "budget: got True; allowed: an integer, not true/false"),
    (NB201, "name=../../../escaped", "name: got '../../../escaped'; allowed: a run name"),
])
def test_issue_cases_fail_at_validation_with_one_line(tmp_path, monkeypatch, capsys, config, override, needle):
    cwd = tmp_path / "a" / "b"  # the default run folder is runs/<name>-<time> here; ../../../escaped is tmp_path
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    err = _cli_error(["search", str(config), "--set", override, "--no-progress"], capsys)
    assert needle in err
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and not any(cwd.iterdir())  # nothing written


def test_out_still_chooses_any_folder(tmp_path, capsys):
    out = tmp_path / "a" / ".." / "anywhere"
    assert main(["search", str(NB201), "--set", "budget=3", "--set", "report=false", "--out", str(out),
                 "--no-progress"]) == 0
    assert (tmp_path / "anywhere" / "trials.sqlite").is_file()


@pytest.mark.parametrize("name", ["..", "a/b", "/abs", "a..b", ".hidden", "-x", "a b", "x" * 101, "", "ü"])
def test_run_names_are_slugs(name):
    with pytest.raises(InvalidValue, match="^name: got .*; allowed: a run name"):
        config_from_dict({"space": "nb201", "name": name})


@pytest.mark.parametrize("name", ["quickstart", "nb201-rea_2.1", "Run7", "1e-3"])
def test_slug_names_are_accepted(name):
    assert config_from_dict({"space": "nb201", "name": name}).name == name


# ------------------------------------------------------------------------------------ names an evaluator reports
@pytest.mark.parametrize("overrides, needle", [
    (["constraints=[{name: latency_ms, max: 5}]"], "constraints.0.name: got 'latency_ms'; allowed: 'flops' or "
                                                   "'params'"),
    (["constraints=[{name: flops, max: 1.0e+9}, {name: FLOPs, max: 5}]"], "constraints.1.name: got 'FLOPs'"),
    (["strategy=nsga2"], "strategy.params.cost: got 'latency_ms'; allowed: 'accuracy', 'flops', 'params' or "
                         "'test_accuracy'"),
    (["strategy=nsga2", "strategy.params.cost=[1]"], "strategy.params.cost: got [1]"),
    (["strategy=nsga2", "strategy.params.cost=flops", "constraints=[{name: test_accuracy, min: 90}]"],
     "constraints.0.name: got 'test_accuracy'; allowed: 'flops' or 'params'"),  # a metric is no cost bound
    (["metric=test_acc"], "metric: got 'test_acc'"),
])
def test_names_are_checked_against_what_the_evaluator_reports(overrides, needle):
    with pytest.raises(InvalidValue) as info:
        load_config(NB201, overrides)
    assert needle in str(info.value)


@pytest.mark.parametrize("overrides", [
    ["metric=test_accuracy"], ["metric=flops", "mode=min"], ["strategy=nsga2", "strategy.params.cost=flops"],
    ["strategy=nsga2", "strategy.params.cost=test_accuracy"],
    ["evaluator.latency_table=t.csv", "evaluator.latency_device=cpu", "constraints=[{name: latency_ms, max: 5}]"],
])
def test_names_the_evaluator_reports_are_accepted(overrides):
    load_config(NB201, overrides)


@pytest.mark.parametrize("override, needle", [
    ("evaluator.latency_table=t.csv", "evaluator.latency_device: got None; allowed: a value: latency_table"),
    ("evaluator.latency_device=pixel3", "evaluator.latency_table: got None; allowed: a value: latency_table"),
    ("evaluator.table=t.csv", "evaluator.metric_column: got None; allowed: the table column holding the metric"),
    ("space=menas-mt", "evaluator.table: got None; allowed: a CSV path (the packaged table is for space 'nb201', "
                       "not 'menas-mt')"),
])
def test_tabular_blocks_are_complete_before_the_run(override, needle):
    with pytest.raises(InvalidValue) as info:
        load_config(NB201, [override])
    assert needle in str(info.value)


def test_train_evaluator_allows_measured_latency_constraints_and_user_table_metrics():
    load_config(QUICKSTART, ["constraints=[{name: latency_ms, max: 5}]"])
    raw = {"space": "nb201", "evaluator": {"table": "t.csv", "metric_column": "acc", "extra_metrics": {"loss": "l"}},
           "metric": "loss", "mode": "min"}
    assert config_from_dict(raw).metric == "loss"
    with pytest.raises(InvalidValue, match="^metric: got 'test_accuracy'; allowed: 'accuracy', 'flops', 'loss'"):
        config_from_dict({**raw, "metric": "test_accuracy"})


def test_menas_size_metric_is_a_reported_cost():
    menas = CONFIGS / "menas-cpu.yaml"
    load_config(menas, ["strategy.params.size_metric=flops"])
    load_config(menas, ["strategy.params.size_metric=latency_ms"])  # measured by the constraints' cost function
    with pytest.raises(InvalidValue, match="^strategy.params.size_metric: got 'latency_ms'; allowed: 'flops', "
                                           "'params'"):
        load_config(menas, ["strategy.params.size_metric=latency_ms", "constraints=[]"])
    with pytest.raises(InvalidValue, match="^metric: got 'test_accuracy'"):
        load_config(menas, ["metric=test_accuracy"])


def test_declared_names_match_the_results():
    """What each evaluator kind declares (reported, cost_lookup) is what its built evaluator returns / has."""
    space = get_space("nb201", C=4, N=1)
    arch = space.sample(np.random.default_rng(0))
    # a new kind: add it here (one-shot is checked in tests/eval/test_oneshot.py, on a trained supernet)
    assert set(EVALUATORS.names()) == {"tabular", "train", "menas", "one-shot"}
    tabular = load_config(NB201).evaluator
    result = tabular.build(get_space("nb201"), data=None, device="cpu", input_shape=None,
                           num_classes=None).evaluate(arch)
    assert (set(result.metrics), set(result.costs)) == tabular.reported()
    train = config_from_dict({"space": "nb201", "data": {"limit": 200, "val_fraction": 0.2},
                              "evaluator": {"kind": "train", "epochs": 0.05, "train": {"batch_size": 32}}})
    evaluator = train.evaluator.build(space, data=train.data, device="cpu", input_shape=None, num_classes=None)
    result = evaluator.evaluate(arch, seed=0)
    assert (set(result.metrics), set(result.costs)) == train.evaluator.reported()
    menas = load_config(CONFIGS / "menas-cpu.yaml").evaluator
    assert menas.reported() == train.evaluator.reported()  # MenasEvaluator returns TrainEvaluator's result
    for cfg, built in ((tabular, True), (train.evaluator, hasattr(evaluator, "lookup_costs")), (menas, False)):
        assert cfg.cost_lookup is built


# ------------------------------------------------------------------------------------ data splits
@pytest.mark.parametrize("override, needle", [
    ("data.val_fraction=0.0", "data.val_fraction: got 0.0; allowed: a fraction > 0"),
    ("data.val_fraction=0.0001", "data.val_fraction: got 0.0001; allowed: a fraction > 0.000167, giving at least "
                                 "one of data.limit 3000 examples"),
])
def test_train_evaluator_needs_a_validation_split(override, needle):
    with pytest.raises(InvalidValue) as info:
        load_config(QUICKSTART, [override])
    assert needle in str(info.value)
    with pytest.raises(InvalidValue, match="^data.val_fraction: got 0.0; allowed: a fraction > 0 .*'menas'"):
        load_config(CONFIGS / "menas-cpu.yaml", ["data.val_fraction=0"])


def test_an_empty_validation_split_found_when_the_data_loads_fails_before_any_trial(tmp_path):
    config = load_config(QUICKSTART, ["data.limit=null", "data.val_fraction=0.00001"])  # 10,000 * 1e-5 rounds to 0
    with pytest.raises(DataError, match="^split 'val': empty because data.val_fraction gives no example"):
        build_study(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()



@pytest.mark.parametrize("config", [QUICKSTART, CONFIGS / "menas-cpu.yaml"], ids=["train", "menas"])
@pytest.mark.parametrize("classes", [1000, 11, 9])
def test_num_classes_other_than_the_datas_fails_before_any_trial(tmp_path, capsys, config, classes):
    """Issue 16: a head wider than the data's classes (a 1000-way head on the 10-class embedded set) was accepted
    silently; fewer classes were already refused. Both stop before a run folder exists, in one line."""
    run = tmp_path / "run"
    err = _cli_error(["search", str(config), "--set", f"num_classes={classes}", "--set", "budget=1",  # budget:
                      "--out", str(run), "--no-progress"], capsys)  # a regression fails after one trial, not a search
    assert f"num_classes: got {classes}; allowed: the data's 10 classes (or leave it unset)" in err
    assert not run.exists()


# ------------------------------------------------------------------------------------ booleans and numbers
@pytest.mark.parametrize("override, needle", [
    ("seed=true", "seed: got True; allowed: an integer, not true/false"),
    ("executor.workers=false", "executor.workers: got False; allowed: an integer, not true/false"),
    ("executor.num_cpus=true", "executor.num_cpus: got True; allowed: a number, not true/false"),
    ("evaluator.epochs=true", "evaluator.epochs: got True; allowed: a number, not true/false"),
    ("evaluator.train.lr=true", "evaluator.train.lr: got True; allowed: a number, not true/false"),
    ("data.limit=true", "data.limit: got True; allowed: an integer, not true/false"),
    ("input_shape=[true, 28, 28]", "input_shape: got [True, 28, 28]; allowed: items that are each an integer"),
    ("constraints=[{name: flops, max: true}]", "constraints.0.max: got True; allowed: a number, not true/false"),
    ("progress=1", "progress: got 1; allowed: true or false"),
    ("executor.fresh_process=0", "executor.fresh_process: got 0; allowed: true or false"),
    ("evaluator.epochs=.inf", "evaluator.epochs: got inf; allowed: a finite number"),
    ("constraints=[{name: flops, max: .nan}]", "constraints.0.max: got nan; allowed: a finite number"),
    ("evaluator.recipe=nb-201", "evaluator.recipe: got 'nb-201'; allowed: 'bignas',"),
    ("evaluator.train.lrr=0.1", "evaluator.train: got 'lrr'; allowed: a TrainConfig field: accumulate_steps,"),
])
def test_booleans_numbers_and_recipes_are_checked_up_front(override, needle):
    with pytest.raises(NasforgeError) as info:
        load_config(QUICKSTART, [override])
    assert needle in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------ supernet configs
@pytest.mark.parametrize("overrides, needle", [
    (["name=../../../escaped"], "name: got '../../../escaped'; allowed: a run name"),
    (["epochs=true"], "epochs: got True; allowed: a number, not true/false"),
    (["sandwich=1"], "sandwich: got 1; allowed: true or false"),
    (["dropout=.nan"], "dropout: got nan; allowed: a finite number"),
    (["data.val_fraction=0"], "data.val_fraction: got 0.0; allowed: a fraction > 0 (eval_split 'val' scores the "
                              "children on it; or set eval_split: test)"),
    (["train.batch_size=true"], "batch_size of TrainConfig: got True; allowed: an integer, not true/false"),
])
def test_supernet_train_configs_fail_before_training(tmp_path, monkeypatch, capsys, overrides, needle):
    monkeypatch.chdir(tmp_path)
    argv = ["supernet", "train", str(BIGNAS_CPU)] + [a for o in overrides for a in ("--set", o)]
    assert needle in _cli_error(argv, capsys)
    assert not any(tmp_path.iterdir())


def test_supernet_scored_on_test_needs_no_validation_split():
    from nasforge.methods.bignas import load_supernet_config

    assert load_supernet_config(BIGNAS_CPU, ["data.val_fraction=0", "eval_split=test"]).eval_split == "test"
