"""Search configs: the shipped YAML files, --set overrides, one-line errors, builders."""
from __future__ import annotations

from pathlib import Path

import pytest

from nasforge.eval import TabularEvaluatorConfig, TrainEvaluatorConfig
from nasforge.config import (SearchConfig, apply_overrides,
                             build_evaluator, build_space, build_strategy, config_from_dict, dump_config,
                             load_config, resolved_budget)
from nasforge.errors import DataError, InvalidValue, NasforgeError, ParseError
from nasforge.strategies import list_strategies
from nasforge.study import QUICKSTART

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: search configs (supernet-training configs have a top-level ``method`` and are tested with the supernet CLI)
SHIPPED = sorted(p for p in CONFIGS.glob("*.yaml") if "method" not in (__import__("yaml").safe_load(p.read_text()) or {}))


def test_every_strategy_has_a_shipped_config():
    assert {p.stem for p in SHIPPED} >= {"nb201", "quickstart", *list_strategies()}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_configs_validate_and_build(path):
    config = load_config(path)
    space = build_space(config)
    if isinstance(config.evaluator, TabularEvaluatorConfig):
        evaluator = build_evaluator(config, space)
        strategy = build_strategy(config, space, evaluator)
        assert resolved_budget(config, strategy) >= 1
        cands = strategy.ask(3)
        assert all(space.contains(c.arch) for c in cands)
        for c in config.constraints:  # asks respect the config's constraints
            assert all(c.min <= evaluator.evaluate(x.arch).costs[c.name] <= c.max for x in cands)
    else:
        assert isinstance(config.evaluator, TrainEvaluatorConfig)  # data is not loaded here (paper configs name
        # a dataset folder the user provides)
    assert config_from_dict(__import__("yaml").safe_load(dump_config(config))) == config  # YAML round trip


def test_quickstart_yaml_is_the_builtin_quickstart():
    assert load_config(CONFIGS / "quickstart.yaml") == config_from_dict(QUICKSTART)


def test_overrides_parse_yaml_values_and_create_nested_keys():
    raw = {"space": "nb201", "strategy": {"name": "random"}}
    out = apply_overrides(raw, ["budget=50", "strategy.params.sample_size=5", "seed=3", "mode=min",
                                "space.kwargs.C=8", "constraints=[{name: flops, max: 1.0e+8}]", "device=cuda:1", "name=1e-3",
                                "evaluator=train", "evaluator.epochs=0.5", "executor.workers=null"])
    assert out["budget"] == 50 and out["seed"] == 3 and out["mode"] == "min" and out["device"] == "cuda:1"
    assert out["space"] == {"name": "nb201", "kwargs": {"C": 8}}
    assert out["strategy"] == {"name": "random", "params": {"sample_size": 5}}
    assert out["constraints"] == [{"name": "flops", "max": 1.0e8}] and out["name"] == 1e-3
    assert out["evaluator"] == {"kind": "train", "epochs": 0.5} and out["executor"] == {"workers": None}
    assert raw == {"space": "nb201", "strategy": {"name": "random"}}  # the input is not modified
    config = config_from_dict(raw, ["strategy=nsga2", "strategy.params.cost=flops", "evaluator.dataset=cifar100"])
    assert config.strategy.name == "nsga2" and config.evaluator.dataset == "cifar100"
    assert config.evaluator.kind == "tabular"


@pytest.mark.parametrize("raw, overrides, message", [
    ({"space": "nb201", "budjet": 3}, [], "budjet: got 3; allowed: no such field; fields here: budget,"),
    ({"space": "nb201", "executor": "gpu"}, [], "executor.kind: got 'gpu'; allowed: 'local', 'pool' or 'ray'"),
    ({"space": "nb201"}, ["strategy.name=nope"], "strategy.name: got 'nope'; allowed: one of local-search,"),
    ({"space": "nb2O1"}, [], "space.name: got 'nb2O1'; allowed: one of"),
    ({"space": "nb201", "evaluator": {"kind": "train", "epochs": -1}}, [], "evaluator.epochs: got -1; allowed"),
    ({"space": "nb201", "evaluator": {"kind": "tabular", "bogus": 1}}, [],
     "evaluator.bogus: got 1; allowed: no such field; fields here: arch_column, dataset"),
    ({"space": "nb201", "evaluator": {"kind": "tabular", "protocol": "hp200"}}, [],
     "evaluator.protocol: got 'hp200'; allowed: 'hp12-valid' or 'hp200-test'"),
    ({"space": "nb201", "evaluator": "oracle"}, [], "evaluator: got {'kind': 'oracle'}; allowed: kind 'menas', 'one-shot', 'tabular' or 'train'"),
    ({"space": "nb201", "budget": 0}, [], "budget: got 0; allowed: greater than or equal to 1"),
    ({"space": "nb201", "constraints": [{"name": "flops"}]}, [], "constraints.0: got {'name': 'flops'}; allowed: at least"),
    ({"space": "nb201", "input_shape": [3, 0, 32]}, [], "input_shape: got [3, 0, 32]; allowed: three positive ints"),
    ({}, [], "space: got '<missing>'; allowed: a value (this field is required)"),
    ({"space": "nb201", "evaluator": "train", "data": {"source": "embedded", "val_fraction": 2}}, [],
     "data.val_fraction: got 2"),
    ({"space": "nb201", "data": {"source": "embedded"}}, [], "no 'data' block with a tabular evaluator"),
    ({"space": "nb201"}, ["budget"], "--set: got 'budget'; allowed: KEY=VALUE"),
    ({"space": "nb201", "seed": 1}, ["seed.value=2"], "--set seed.value: got 'seed = 1'; allowed: a key inside a mapping"),
    ([1, 2], [], "config: got 'list'; allowed: a mapping"),
])
def test_errors_are_one_line_naming_field_value_and_allowed(raw, overrides, message):
    with pytest.raises(NasforgeError) as info:
        config_from_dict(raw, overrides)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_strategy_hyper_parameters_are_checked_when_built():
    config = config_from_dict({"space": "nb201", "strategy": {"name": "regularized-evolution",
                                                              "params": {"sample_size": 0}}})
    with pytest.raises(InvalidValue, match="sample_size"):
        build_strategy(config, build_space(config))
    config = config_from_dict({"space": "nb201", "strategy": {"name": "random", "params": {"population": 3}}})
    with pytest.raises(InvalidValue, match="hyper-parameter.*population"):
        build_strategy(config, build_space(config))
    config = config_from_dict({"space": {"name": "nb201", "kwargs": {"channels": 3}}})
    with pytest.raises(InvalidValue, match="space.kwargs"):
        build_space(config)


def test_budget_comes_from_the_config_or_a_generational_strategy():
    config = config_from_dict({"space": "nb201", "strategy": {"name": "spos-evolution", "params": {
        "population_size": 8, "max_iterations": 3, "top_k": 2, "mutation_num": 4, "crossover_num": 4}}})
    strategy = build_strategy(config, build_space(config))
    assert resolved_budget(config, strategy) == 24
    random = config_from_dict({"space": "nb201", "strategy": "random"})
    with pytest.raises(InvalidValue, match="budget: got None"):
        resolved_budget(random, build_strategy(random, build_space(random)))


def test_load_config_file_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: nb201\nstrategy: {name: random\n")
    with pytest.raises(ParseError, match=r"config bad.yaml \(line 3\)"):
        load_config(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("space: nb201\nbudget: 7\n")
    config = load_config(ok, ["budget=9"])
    assert isinstance(config, SearchConfig) and config.budget == 9


@pytest.mark.parametrize("evaluator, overrides, needle", [
    ({"kind": "train", "epochs": 0.5}, [], "evaluator.kind"),
    (None, ["strategy.params.lottery_tickets=50", "evaluator.proposals=4"], "strategy.params.lottery_tickets: got 50"),
    (None, ["evaluator.proposals=0"], "strategy.params.lottery_tickets: got 2"),
])
def test_menas_needs_its_evaluator_and_k_at_least_top_k(evaluator, overrides, needle):
    raw = __import__("yaml").safe_load((CONFIGS / "menas-cpu.yaml").read_text())
    if evaluator is not None:
        raw["evaluator"] = evaluator
    with pytest.raises(NasforgeError) as err:
        config_from_dict(raw, overrides)
    assert needle in str(err.value)
