"""Contract checks for every entry of every registry (nasforge.registry): a new space, strategy, evaluator,
executor, store or method gets these checks for free. Spaces, strategies and stores have their own contract
suites (tests/spaces/test_contract.py, tests/strategies/test_strategy_contract.py, tests/store/test_store_contract.py),
which parametrize over the registry; this file checks that they do, and holds the suites of the other kinds."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel

from nasforge.config import config_from_dict, dump_config, load_config
from nasforge.errors import InvalidValue, NasforgeError
from nasforge.eval.base import Evaluator, EvaluatorConfig
from nasforge.execute.base import Executor, evaluate_trial
from nasforge.methods.base import Method, get_method
from nasforge.registry import EVALUATORS, EXECUTORS, METHODS, STORES, all_registries, get_space
from nasforge.schema import read_yaml
from nasforge.trial import Result

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_registry_lists_its_built_ins_and_rejects_unknown_names():
    expected = {"space": {"nb201", "bignas", "menas-mt", "menas-ws", "proxyless-basic", "proxyless-large"},
                "strategy": {"random", "regularized-evolution", "spos-evolution", "nsga2", "menas", "local-search"},
                "evaluator": {"tabular", "train", "menas"}, "executor": {"local", "pool", "ray"},
                "store": {"memory", "sqlite"}, "method": {"menas", "bignas", "spos"}}
    registries = all_registries()
    assert set(registries) == set(expected)
    for kind, registry in registries.items():
        assert expected[kind] <= set(registry.names()), kind
        with pytest.raises(NasforgeError, match=f"{kind}: got 'no-such-entry'; allowed: "):
            registry.factory("no-such-entry")


# ---------------------------------------------------------------------------------------------- evaluators
EVALUATOR_KINDS = EVALUATORS.names()
#: the search around each evaluator in these checks: a small space it accepts, tiny data, short training
_SETTINGS = {"space": [{"name": "nb201", "kwargs": {"C": 4, "N": 1}},
                       {"name": "menas-mt", "kwargs": {"base_channels": [8, 16, 24], "depths": [1], "kernels": [3],
                                                       "widths": [0.5], "expands": [1]}}],
             "data": {"source": "digits", "limit": 300, "val_fraction": 0.3, "test_fraction": 0.0, "seed": 0}}
_SHORT = {"epochs": 0.2, "epochs_init": 0.2, "proposals": 2, "calib_batches": 1, "train": {"batch_size": 32}}


def _fields(model: type[BaseModel]) -> dict[str, object]:
    """The short-training values of ``_SHORT`` for the fields ``model`` uses (a field defaulting to None is one a
    kind does not use, e.g. ``epochs`` of ``menas``)."""
    return {k: v for k, v in _SHORT.items() if k in model.model_fields and model.model_fields[k].default is not None}


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    """Values for the required fields of evaluator kinds that read a resource: ``run`` (a supernet run folder),
    here a tiny SPOS supernet over nb201 cells (C=4, N=1) trained for one epoch on digits."""
    from nasforge.methods.bignas import run_supernet, supernet_config_from_dict

    out = tmp_path_factory.mktemp("resources") / "supernet"
    run_supernet(supernet_config_from_dict({
        "method": "spos", "space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}},
        "data": {"source": "digits", "limit": 300, "val_fraction": 0.3, "test_fraction": 0.0},
        "recipe": "padnas", "train": {"batch_size": 50}, "epochs": 1, "calib_batches": 1, "eval_batch_size": 50,
        "checkpoint_every": None, "device": "cpu", "threads": 1, "progress": False}), out)
    return {"run": str(out)}


def _required(model: type[BaseModel], resources: dict[str, str]) -> dict[str, str]:
    """The resource values for the fields ``model`` requires (a new required field: add a resource above)."""
    needed = [name for name, f in model.model_fields.items() if f.is_required() and name != "kind"]
    assert set(needed) <= set(resources), f"no contract resource for required fields {needed}"
    return {name: resources[name] for name in needed}


@pytest.mark.parametrize("kind", EVALUATOR_KINDS)
def test_evaluator_config_is_registered_strict_and_round_trips(kind, resources):
    model = EVALUATORS.factory(kind)
    assert inspect.isclass(model) and issubclass(model, EvaluatorConfig)
    assert model.model_fields["kind"].default == kind
    raw = {"space": "nb201", "evaluator": {"kind": kind, **_required(model, resources)}}
    if model.uses_data:
        raw["data"] = {"source": "embedded"}
    config = config_from_dict(raw)
    assert type(config.evaluator) is model
    import yaml

    assert config_from_dict(yaml.safe_load(dump_config(config))) == config
    with pytest.raises(InvalidValue) as info:
        config_from_dict({**raw, "evaluator": {**raw["evaluator"], "no_such_field": 1}})
    assert str(info.value).startswith("evaluator.no_such_field: got 1; allowed: no such field") \
        and "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("kind", EVALUATOR_KINDS)
def test_evaluator_builds_and_scores_an_architecture_reproducibly(kind, tmp_path, resources):
    model = EVALUATORS.factory(kind)
    built = None
    for space in _SETTINGS["space"]:
        raw = {"space": space, "evaluator": {"kind": kind, **_fields(model), **_required(model, resources)}}
        if model.uses_data:
            raw["data"] = _SETTINGS["data"]
        elif space["name"] == "nb201":
            raw["space"] = "nb201"  # the packaged table holds the default C / N only
        config = config_from_dict(raw)
        space_obj = get_space(config.space.name, **config.space.kwargs)
        try:
            built = config.evaluator.build(space_obj, data=config.data, device="cpu", input_shape=None,
                                           num_classes=None)
            break
        except InvalidValue:  # not an evaluator for this space: try the next one
            continue
    assert built is not None, f"evaluator {kind!r} built for none of the contract spaces"
    assert isinstance(built, Evaluator) and isinstance(built.name, str) and built.name
    arch = space_obj.smallest()
    first = evaluate_trial(built, arch, 7, {"trial_dir": str(tmp_path / "a")}, ("accuracy",))
    again = evaluate_trial(built, arch, 7, {"trial_dir": str(tmp_path / "b")}, ("accuracy",))
    assert first.ok, first.reason
    assert first.result.metrics == again.result.metrics  # same seed, same score
    # the score is the accuracy of what the evaluator trained (its checkpoint, on the scored split) or, for a
    # table, the architecture's row whatever the seed
    ckpt = first.result.artifacts.get("checkpoint")
    if ckpt is None:
        assert built.evaluate(arch, seed=123).metrics == first.result.metrics
    else:
        from nasforge.io import load_checkpoint
        from nasforge.train.loop import evaluate

        splits = built.splits()
        net = space_obj.build(arch, splits.input_shape, splits.num_classes)
        net.load_state_dict(load_checkpoint(ckpt)["model"])
        scored = splits.loader(built.split, built.eval_batch_size, train=False)
        assert first.result.metrics["accuracy"] == pytest.approx(evaluate(net.eval(), scored)["accuracy"])
    with pytest.raises(NasforgeError):
        built.evaluate(get_space("bignas").smallest())  # an architecture of another space: a clear error


# ---------------------------------------------------------------------------------------------- executors
class _Square:
    """A picklable evaluator: accuracy = a function of the seed."""

    name = "square"

    def evaluate(self, arch, *, seed=None, context=None):
        return Result({"accuracy": float((seed or 0) % 97)})


@pytest.mark.slow
@pytest.mark.parametrize("kind", EXECUTORS.names())
def test_executor_runs_trials_and_returns_what_a_local_call_returns(kind):
    if kind == "ray":
        pytest.importorskip("ray")
    import concurrent.futures as cf

    executor = EXECUTORS.create(kind, workers=2)
    assert isinstance(executor, Executor) and executor.max_workers >= 1
    assert isinstance(executor.describe(), (str, dict))
    arch = get_space("nb201").smallest()
    try:
        futures = {executor.submit(evaluate_trial, _Square(), arch, s, {}, ("accuracy",)): s for s in (3, 5, 11)}
        pending = set(futures)
        while pending:
            done, pending = executor.wait_first(pending)
            assert done
        for future, seed in futures.items():
            outcome = future.result()
            assert outcome.ok and outcome.result.metrics == {"accuracy": float(seed % 97)}
    finally:
        executor.shutdown()
    assert all(isinstance(f, cf.Future) for f in futures)


# ---------------------------------------------------------------------------------------------- stores
@pytest.mark.parametrize("kind", STORES.names())
def test_store_factory_opens_a_store_that_records_a_trial(kind, tmp_path):
    from nasforge.store import TrialStore
    from nasforge.trial import Candidate

    params = inspect.signature(STORES.factory(kind)).parameters
    store = STORES.create(kind, **({"path": tmp_path / "t.sqlite"} if "path" in params else {}))
    assert isinstance(store, TrialStore)
    with store:
        t = store.create_trial(Candidate(get_space("nb201").smallest()), seed=1)
        store.complete_trial(t.id, Result({"accuracy": 1.0}))
        assert store.get(t.id).metric("accuracy") == 1.0


# ---------------------------------------------------------------------------------------------- methods
@pytest.mark.parametrize("name", METHODS.names())
def test_method_entry_is_complete_and_its_shipped_configs_load(name):
    method = get_method(name)
    assert isinstance(method, Method) and method.name == name and method.kind in ("search", "supernet")
    assert inspect.isclass(method.config_model) and issubclass(method.config_model, BaseModel)
    assert method.paper and callable(method.load_config) and callable(method.run)
    cpu = [p for p in [CONFIGS / f"{name}-cpu.yaml"] if p.is_file()] or sorted(CONFIGS.glob(f"{name}-*-cpu.yaml"))
    shipped = [p for p in [CONFIGS / f"{name}.yaml"] if p.is_file()] + cpu
    assert len(shipped) >= 2 and cpu, (f"method {name!r} ships configs/{name}.yaml (paper) and a CPU config "
                                       f"configs/{name}-cpu.yaml (or {name}-SPACE-cpu.yaml)")
    for path in shipped:
        config = method.load_config(path)
        assert isinstance(config, method.config_model), path
        raw = read_yaml(path)
        if method.kind == "supernet":
            assert raw.get("method", "bignas") == name and config.method == name
            assert callable(method.summary)
        else:
            assert method.check(config) is config
    if method.kind == "search":
        with pytest.raises(InvalidValue):
            method.check(load_config(CONFIGS / "nb201.yaml"))  # a plain search is not this method's


def test_a_supernet_step_a_method_lacks_names_the_methods_that_have_it():
    method = get_method("bignas")
    bare = Method(name="bare", kind="supernet", paper="-", config_model=BaseModel, load_config=lambda *a: None,
                  run=lambda *a, **k: None)
    with pytest.raises(InvalidValue, match="method: got 'bare'; allowed: a method with 'supernet select': bignas"):
        bare.step("select", "supernet select")
    assert method.step("select", "supernet select") is method.select
    with pytest.raises(InvalidValue, match="method: got 'menas'; allowed: "):
        get_method("menas", kind="supernet")
