"""Search configs: the pydantic model of a search's YAML file and the builders that turn it into the parts a
:class:`~nasforge.study.Study` composes (space, strategy, evaluator, executor, cost function).

A config names everything a search needs (DESIGN.md, "Study / method pipelines"; ``configs/*.yaml``)::

    space: nb201                      # or {name: nb201, kwargs: {C: 8, N: 1}}
    strategy: {name: regularized-evolution, params: {population_size: 10, sample_size: 3}}
    evaluator: {kind: tabular, dataset: cifar10, protocol: hp12-valid}
    budget: 100
    metric: accuracy
    mode: max
    constraints: [{name: flops, max: 2.0e8}]
    executor: {kind: local}
    seed: 0

This module knows no strategy, evaluator or method by name: each ``name`` / ``kind`` is looked up in its registry
(:mod:`nasforge.registry`), an evaluator block is validated with the config model its kind registered
(:class:`~nasforge.eval.base.EvaluatorConfig`), and cross-field rules come from the parts themselves (an evaluator's
and a strategy's ``check_search`` hooks). Every error is ONE line naming the field, the value and what is allowed
(:mod:`nasforge.schema`). Shorthands: ``space: NAME``, ``strategy: NAME``, ``evaluator: KIND`` and
``executor: KIND`` stand for ``{name: ...}`` / ``{kind: ...}``; an evaluator block without ``kind`` is ``tabular``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from .cost import CostFunction
from .data import DataConfig
from .errors import InvalidValue
from .eval.base import EvaluatorConfig
from .registry import EVALUATORS, EXECUTORS, SPACES, STRATEGIES
from .schema import (
    ConfigModel,
    RunName,
    dump_config,
    read_yaml,
    validated,
    validation_error,
)
from .schema import apply_overrides as apply
from .strategies import get_strategy
from .supernet.lut import HELP_DEVICES, load_lut

if TYPE_CHECKING:
    from .execute.base import Executor
    from .spaces.base import SearchSpace
    from .strategies.base import Strategy

__all__ = ["SearchConfig", "SpaceConfig", "StrategyConfig", "ExecutorConfig", "ConstraintConfig", "load_config",
           "config_from_dict", "apply_overrides", "dump_config", "build_space", "build_evaluator", "build_strategy",
           "build_executor", "resolved_budget", "SHORTHANDS", "DEFAULT_EVALUATOR"]

#: a plain string at these keys stands for ``{field: string}``
SHORTHANDS = {"space": "name", "strategy": "name", "evaluator": "kind", "executor": "kind"}
#: the evaluator kind of a block that names none
DEFAULT_EVALUATOR = "tabular"


def quoted_choices(names: Sequence[str]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


class SpaceConfig(ConfigModel):
    """A registered search space and its constructor arguments (e.g. ``nb201`` with ``C``, ``N``)."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in SPACES:
            raise ValueError(f"one of {', '.join(SPACES.names())}")
        return v


class StrategyConfig(ConfigModel):
    """A registered strategy and its hyper-parameters (named as in its paper; see ``nasforge.strategies``)."""

    name: str = "local-search"  # nasforge.strategies.DEFAULT_STRATEGY (best on the NB201 benchmark)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in STRATEGIES:
            raise ValueError(f"one of {', '.join(STRATEGIES.names())}")
        return v


class ConstraintConfig(ConfigModel):
    """Bounds on one cost (``params``, ``flops``, ``latency_ms``...): ``min <= cost <= max``."""

    name: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "ConstraintConfig":
        if self.min is None and self.max is None:
            raise ValueError("at least one of min, max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min <= max (got min {self.min} > max {self.max})")
        return self


class ExecutorConfig(ConfigModel):
    """Where trials run: ``local`` (in-process), ``pool`` (``workers`` processes) or ``ray`` (``address``)."""

    kind: str = "local"
    workers: int | None = Field(None, ge=1)
    address: str = "local"
    fresh_process: bool = False
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float | None = Field(None, ge=0)

    @field_validator("kind")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in EXECUTORS:
            raise ValueError(quoted_choices(EXECUTORS.names()))
        return v


def _evaluator_config(raw: Any) -> EvaluatorConfig:
    """The registered config model of ``raw["kind"]`` validated from ``raw`` (errors prefixed ``evaluator.``)."""
    if isinstance(raw, EvaluatorConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidValue("evaluator", raw, "a mapping with a 'kind' (or a kind name)")
    kind = raw.get("kind", DEFAULT_EVALUATOR)
    if kind not in EVALUATORS:
        raise InvalidValue("evaluator", dict(raw), "kind " + quoted_choices(EVALUATORS.names()))
    model = EVALUATORS.factory(kind)
    try:
        return model(**{**raw, "kind": kind})
    except ValidationError as exc:
        raise validation_error(exc, root=model, prefix="evaluator.") from None


class SearchConfig(ConfigModel):
    """One search: what to search (space), how (strategy), how to score (evaluator), for how long (budget).

    ``name`` is a slug (the default run folder is ``runs/<name>-<time>``; ``out`` / ``--out`` choose any folder).
    Names are checked against what the evaluator declares it reports (:meth:`reported_names`): ``metric``, each
    constraint's ``name`` and a strategy's cost objective.
    """

    name: RunName = "search"
    space: SpaceConfig
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = Field(None, ge=1)
    data: dict[str, Any] | None = None
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    evaluator: SerializeAsAny[EvaluatorConfig] = Field(default_factory=lambda: _evaluator_config({}))
    budget: int | None = Field(None, ge=1)
    metric: str = "accuracy"
    mode: Literal["max", "min"] = "max"
    constraints: list[ConstraintConfig] = Field(default_factory=list)
    #: ``latency_ms`` of constraints and cost objectives from a lookup table instead of measuring each network:
    #: a ``lut.json`` of ``nasforge latency-table build``, or ``help:DEVICE`` (HELP's NB201 latencies)
    latency_lut: str | None = None
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    out: str | None = None
    progress: bool = True
    report: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key, sub in SHORTHANDS.items():
                if isinstance(data.get(key), str):
                    data[key] = {sub: data[key]}
        return data

    @field_validator("evaluator", mode="before")
    @classmethod
    def _evaluator(cls, v: Any) -> EvaluatorConfig:
        return _evaluator_config(v)

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError("three positive ints (channels, height, width)")
        return v

    @field_validator("latency_lut")
    @classmethod
    def _lut(cls, v: str | None) -> str | None:
        if v is not None:
            if v.startswith("help:"):
                if v[5:] not in HELP_DEVICES():
                    raise ValueError(f"help:DEVICE with DEVICE one of {', '.join(HELP_DEVICES())}")
            elif not Path(v).is_file():
                raise ValueError("an existing lut.json (nasforge latency-table build) or help:DEVICE")
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            DataConfig.from_dict(v)  # raises InvalidValue naming the data field
        return v

    @model_validator(mode="after")
    def _cross(self) -> "SearchConfig":
        ev = self.evaluator
        if ev.uses_data and self.data is None:
            object.__setattr__(self, "data", {"source": "embedded"})
        if not ev.uses_data and self.data is not None:
            raise InvalidValue("data", self.data, f"no 'data' block with a {ev.kind} evaluator (it reads no data)")
        ev.check_search(self)
        self._check_names()
        check = getattr(STRATEGIES.factory(self.strategy.name), "check_search", None)
        if callable(check):
            check(self)
        return self

    def reported_names(self) -> tuple[set[str], set[str], set[str]] | None:
        """``(metrics, costs, cost function)``: the metric and cost names in every trial's result (what the
        evaluator declares, :meth:`~nasforge.eval.base.EvaluatorConfig.reported`) and the costs the strategy's cost
        function gives (:func:`build_strategy`: analytic ``params`` / ``flops``, the costs a table looks up, else a
        measured ``latency_ms``); ``None`` when the evaluator declares nothing."""
        ev = self.evaluator
        declared = ev.reported()
        if declared is None:
            return None
        metrics, costs = set(declared[0]), set(declared[1])
        cost_fn = {"params", "flops"} | (costs if ev.cost_lookup else {"latency_ms"})
        if self.latency_lut is not None:
            cost_fn.add("latency_ms")
        return metrics, costs, cost_fn

    def _check_names(self) -> None:
        """``metric`` is in every result (a metric or a cost: :meth:`nasforge.trial.Trial.metric`), constraints name
        a cost of the cost function, a cost objective (``strategy.params.cost`` of nsga2) is in the results or the
        cost function."""
        names = self.reported_names()
        if names is None:
            return
        metrics, costs, cost_fn = names
        what = f"what evaluator kind {self.evaluator.kind!r} reports"
        if self.metric not in metrics | costs:
            raise InvalidValue("metric", self.metric, f"{quoted_choices(sorted(metrics | costs))} ({what})")
        for i, c in enumerate(self.constraints):
            if c.name not in cost_fn:
                raise InvalidValue(f"constraints.{i}.name", c.name, f"{quoted_choices(sorted(cost_fn))} (costs "
                                   f"of the search's cost function with evaluator kind {self.evaluator.kind!r})")
        objective = getattr(STRATEGIES.factory(self.strategy.name), "cost_objective", None)
        if objective:
            name = self.strategy.params.get("cost", objective)
            if not isinstance(name, str) or name not in metrics | costs | cost_fn:
                raise InvalidValue("strategy.params.cost", name,
                                   f"{quoted_choices(sorted(metrics | costs | cost_fn))} ({what}, or a cost of the "
                                   "search's cost function)")


# ============================================================================================== loading
def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a search config mapping (shorthands expanded; values as YAML)."""
    return apply(raw, overrides, SHORTHANDS)


def config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> SearchConfig:
    """A validated :class:`SearchConfig` from a mapping plus ``--set`` overrides (one-line errors)."""
    return validated(SearchConfig, raw, overrides, SHORTHANDS)


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SearchConfig:
    """Read a YAML search config and apply ``--set`` style ``overrides`` (``["budget=50", "seed=3"]``)."""
    return config_from_dict(read_yaml(path), overrides)


# ============================================================================================== builders
def build_space(config: SearchConfig) -> "SearchSpace":
    """The configured search space (shared default instance when it has no kwargs)."""
    try:
        return SPACES.create(config.space.name, **config.space.kwargs)
    except TypeError as exc:
        raise InvalidValue("space.kwargs", config.space.kwargs, f"constructor arguments of {config.space.name!r} "
                           f"({exc})") from None


def build_evaluator(config: SearchConfig, space: "SearchSpace") -> Any:
    """The configured evaluator (its registered config model's ``build``)."""
    return config.evaluator.build(space, data=config.data, device=config.device, input_shape=config.input_shape,
                                  num_classes=config.num_classes)


def _cost_shape(config: SearchConfig, evaluator: Any) -> tuple[tuple[int, int, int] | None, int | None]:
    shape, classes = config.input_shape, config.num_classes
    spec = getattr(evaluator, "input_spec", None)
    if spec is not None:
        shape, classes = shape or spec[0], classes or spec[1]
    return shape, classes or config.evaluator.cost_classes()


def build_strategy(config: SearchConfig, space: "SearchSpace", evaluator: Any = None,
                   params: Mapping[str, Any] | None = None) -> "Strategy":
    """The configured strategy, with a :class:`~nasforge.cost.CostFunction` when constraints or a cost objective
    need one (costs the evaluator looks up, e.g. a latency table, are used before anything is measured)."""
    params = dict(config.strategy.params if params is None else params)
    objective = getattr(STRATEGIES.factory(config.strategy.name), "cost_objective", None)
    needed = {c.name for c in config.constraints} | ({str(params.get("cost", objective))} if objective else set())
    cost_fn = None
    if needed:
        shape, classes = _cost_shape(config, evaluator)
        lookup = getattr(evaluator, "lookup_costs", None)
        if config.latency_lut is not None:
            lut = load_lut(config.latency_lut)
            if callable(getattr(lut, "check", None)):  # a measured table: for this space and input only
                lut.check(space, space.resolve_input(shape, classes)[0])
            lookup = lut.cost
        cost_fn = CostFunction(space, shape, classes, lookup=lookup,
                               latency="latency_ms" in needed and lookup is None)
    constraints = [c.model_dump() for c in config.constraints]
    return get_strategy(config.strategy.name, space, seed=config.seed, metric=config.metric, mode=config.mode,
                        constraints=constraints, cost_fn=cost_fn, **params)


def build_executor(config: SearchConfig) -> "Executor":
    """The configured executor (registered in :data:`nasforge.registry.EXECUTORS`)."""
    ex = config.executor
    return EXECUTORS.create(ex.kind, workers=ex.workers, address=ex.address, fresh_process=ex.fresh_process,
                            num_cpus=ex.num_cpus, num_gpus=ex.num_gpus)


def resolved_budget(config: SearchConfig, strategy: Any) -> int:
    """``config.budget``, or the strategy's nominal budget (generational strategies), else an error."""
    if config.budget is not None:
        return config.budget
    nominal = getattr(strategy, "budget", None)
    if isinstance(nominal, int) and not isinstance(nominal, bool) and nominal > 0 and not math.isinf(nominal):
        return nominal
    raise InvalidValue("budget", None, f"a positive int (strategy {config.strategy.name!r} has no nominal budget)")
