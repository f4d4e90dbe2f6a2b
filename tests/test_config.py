"""Search configs: the shipped YAML files, --set overrides, one-line errors, builders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nasforge.eval import TabularEvaluatorConfig
from nasforge.config import (SearchConfig, apply_overrides,
                             build_evaluator, build_space, build_strategy, config_from_dict, dump_config,
                             load_config, resolved_budget)
from nasforge.errors import DataError, InvalidValue, NasforgeError, ParseError
from nasforge.strategies import list_strategies
from nasforge.train import TrainConfig
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
        assert resolved_budget(config, strategy) == (config.budget or strategy.budget)
        cands = strategy.ask(3)
        assert all(space.contains(c.arch) for c in cands)
        for c in config.constraints:  # asks respect the config's constraints
            assert all(c.min <= evaluator.evaluate(x.arch).costs[c.name] <= c.max for x in cands)
    elif Path(str(config.data["source"])).is_absolute() and not Path(str(config.data["source"])).exists():
        # a paper config naming a dataset folder the user provides: building stops at once, naming data.source
        with pytest.raises(DataError, match=r"^data.source: path '/path/to/.*does not exist"):
            build_evaluator(config, space).input_spec  # noqa: B018 (the data is loaded on first use)
    else:  # data that ships (embedded): the evaluator builds, and asks respect the constraints
        evaluator = build_evaluator(config, space)
        strategy = build_strategy(config, space, evaluator)
        shape, classes = evaluator.input_spec
        for c in config.constraints:
            assert all(c.min <= space.flops(x.arch, shape, classes) <= c.max for x in strategy.ask(3))
    assert config_from_dict(__import__("yaml").safe_load(dump_config(config))) == config  # YAML round trip


def _flops_sample(space, shape, classes, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([space.flops(space.sample(rng), shape, classes) for _ in range(n)], dtype=float)


def test_menas_yaml_is_the_papers_search_setting():
    """configs/menas.yaml against menas.txt ("Overview", "Experimental Details", Table 4): schedule and budget,
    epochs, the FLOPs window, and the batch size against the recipe's learning rate."""
    config = load_config(CONFIGS / "menas.yaml")
    p = config.strategy.params
    P, C, G, T = p["population_size"], p["num_children"], p["generations"], p["lottery_tickets"]
    assert (P, p["parent_size"], C, G, T, p["large_model_ratio"]) == (60, 30, 30, 5, 2, 0.2)
    space = build_space(config)
    strategy = build_strategy(config, space)  # costs at the config's input_shape / num_classes
    # budget null = every net of every generation plus its tickets: P (1 + T) + (G - 1) C (1 + T) = N = 540
    assert config.budget is None and resolved_budget(config, strategy) == P * (1 + T) + (G - 1) * C * (1 + T) == 540
    ev = config.evaluator
    assert (ev.epochs_init, ev.epochs_child, ev.epochs_finetune, ev.proposals, ev.weight_sharing) == \
        (30.0, 20.0, 3.0, 40, True)
    # "RMSProp ... 0.9 momentum, a total batch size of 1024 ... warmed up from 0 to 0.064, then decayed by 0.97 every
    # 2.4 epochs": the recipe's rate is per lr_reference_batch images, so the batch must be the paper's 1024
    tc = TrainConfig.from_recipe(ev.recipe, **ev.train)
    assert (tc.optimizer, tc.momentum, tc.batch_size) == ("rmsprop", 0.9, 1024)
    assert tc.effective_lr == pytest.approx(0.064) and tc.warmup_epochs > 0
    assert (tc.schedule, tc.decay_rate, tc.decay_epochs) == ("exponential", 0.97, 2.4)
    # tickets follow the recipe too (issue 16): warm-up from 0 over the recipe's share of E_init, 5 * 3 / 30 epochs
    assert build_evaluator(config, space).ticket_warmup_epochs == pytest.approx(tc.warmup_epochs * 3 / 30) == 0.5
    assert space.build(space.largest(), (3, 32, 32), 10).head.dropout.p == 0.2  # "dropout rate ... last layer 0.2"
    # FLOPs window: the paper's 1 ~ 1.6 G multiply-adds at 224x224 / 1000 classes, 2 FLOPs per multiply-add here;
    # step 1 samples random nets within it, so it must hold a fair share of the space (it holds the median)
    assert (tuple(config.input_shape), config.num_classes) == ((3, 224, 224), 1000)
    (flops,) = config.constraints
    assert (flops.name, flops.min, flops.max) == ("flops", 2 * 1.0e9, 2 * 1.6e9)
    sample = _flops_sample(space, (3, 224, 224), 1000)
    assert flops.min <= np.median(sample) <= flops.max and np.mean((sample >= flops.min) & (sample <= flops.max)) > 0.1
    assert all(flops.min <= strategy.costs(c.arch)["flops"] <= flops.max for c in strategy.ask(3))


def test_menas_cpu_yaml_is_menas_scaled_down_consistently():
    config = load_config(CONFIGS / "menas-cpu.yaml")
    p = config.strategy.params
    P, C, G, T = p["population_size"], p["num_children"], p["generations"], p["lottery_tickets"]
    space = build_space(config)
    strategy = build_strategy(config, space, build_evaluator(config, space))
    assert config.budget is None and resolved_budget(config, strategy) == P * (1 + T) + (G - 1) * C * (1 + T) == 48
    ev = config.evaluator
    assert ev.epochs_init > ev.epochs_child > ev.epochs_finetune  # 30 / 20 / 3 scaled down, in the same order
    tc = TrainConfig.from_recipe(ev.recipe, **ev.train)
    assert tc.effective_lr == pytest.approx(0.064 * tc.batch_size / 1024)  # the paper's rate, linearly scaled
    (flops,) = config.constraints  # "about 5-12 MFLOPs": around the median of the reduced space at 28x28
    sample = _flops_sample(space, (1, 28, 28), 10)
    assert flops.min <= np.median(sample) <= flops.max and np.mean((sample >= flops.min) & (sample <= flops.max)) > 0.2


def test_supernet_paper_configs_scale_the_recipe_to_their_batch():
    """bignas.yaml: lr 0.016 per 256 images = 0.256 at batch 4096, held at 5% (0.0128), 5 warm-up epochs;
    spos.yaml: the PAD-NAS / SPOS setting, lr 0.5 at batch 1024, 120 epochs, linear decay."""
    from nasforge.methods.bignas import load_supernet_config, train_config_of

    bignas = load_supernet_config(CONFIGS / "bignas.yaml")
    tc = train_config_of(bignas)
    assert tc.batch_size == 4096 and tc.effective_lr == pytest.approx(0.256)
    assert tc.effective_lr * tc.min_lr_ratio == pytest.approx(0.0128) and tc.warmup_epochs == 5.0
    assert (bignas.value("epochs"), bignas.sandwich_n, bignas.dropout) == (350.0, 2, 0.2)
    spos = load_supernet_config(CONFIGS / "spos.yaml")
    tc = train_config_of(spos)
    assert (tc.batch_size, tc.optimizer, tc.schedule, spos.value("epochs")) == (1024, "sgd", "linear", 120.0)
    assert tc.effective_lr == pytest.approx(0.5) and tc.weight_decay == pytest.approx(4e-5)


def test_spos_evolution_yaml_budget_is_population_times_iterations():
    config = load_config(CONFIGS / "spos-evolution.yaml")
    p = config.strategy.params
    strategy = build_strategy(config, build_space(config))
    assert config.budget is None and resolved_budget(config, strategy) == p["population_size"] * p["max_iterations"]
    assert resolved_budget(config, strategy) == 1000 and p["mutation_num"] + p["crossover_num"] == p["population_size"]


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
