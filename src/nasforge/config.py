"""Search configs: pydantic models of a YAML file, ``--set`` overrides, and the builders that turn a config into
the parts a :class:`~nasforge.study.Study` composes (space, strategy, evaluator, executor, cost function).

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

Every error is ONE line naming the field, the value and what is allowed (extra fields are forbidden), e.g.
``executor.kind: got 'gpu'; allowed: 'local', 'pool' or 'ray'``. Shorthands: ``space: NAME``,
``strategy: NAME``, ``evaluator: KIND`` and ``executor: KIND`` stand for ``{name: ...}`` / ``{kind: ...}``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Mapping, Optional, Sequence, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .arch import Architecture
from .errors import DataError, InvalidValue, NasforgeError, ParseError

ModelT = TypeVar("ModelT", bound=BaseModel)

if TYPE_CHECKING:
    from .execute.base import Executor
    from .spaces.base import SearchSpace
    from .strategies.base import Strategy

__all__ = ["SearchConfig", "SpaceConfig", "StrategyConfig", "TabularEvaluatorConfig", "TrainEvaluatorConfig",
           "MenasEvaluatorConfig", "ExecutorConfig", "ConstraintConfig", "load_config", "config_from_dict",
           "apply_overrides", "dump_config", "build_space", "build_evaluator", "build_strategy", "build_executor",
           "CostFunction"]

_STRICT = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class SpaceConfig(BaseModel):
    """A registered search space and its constructor arguments (e.g. ``nb201`` with ``C``, ``N``)."""

    model_config = _STRICT
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from .registry import list_spaces

        if v not in list_spaces():
            raise ValueError(f"one of {', '.join(list_spaces())}")
        return v


class StrategyConfig(BaseModel):
    """A registered strategy and its hyper-parameters (named as in its paper; see ``nasforge.strategies``)."""

    model_config = _STRICT
    name: str = "local-search"  # nasforge.strategies.DEFAULT_STRATEGY (best on the NB201 benchmark)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from .strategies import list_strategies

        if v not in list_strategies():
            raise ValueError(f"one of {', '.join(list_strategies())}")
        return v


class TabularEvaluatorConfig(BaseModel):
    """Table look-up (:class:`~nasforge.eval.tabular.TabularEvaluator`).

    ``table: null`` is the packaged NAS-Bench-201 table with ``dataset`` / ``protocol`` (``hp12-valid``: search on
    the 12-epoch validation accuracy; ``hp200-test``: on the 200-epoch test accuracy; both also report
    ``test_accuracy``). A user table (CSV or CSV.gz) needs ``metric_column`` (returned as ``accuracy``);
    ``extra_metrics`` maps more result names to columns.
    """

    model_config = _STRICT
    kind: Literal["tabular"] = "tabular"
    table: str | None = None
    dataset: Literal["cifar10", "cifar100"] = "cifar10"
    protocol: Literal["hp12-valid", "hp200-test"] = "hp12-valid"
    metric_column: str | None = None
    arch_column: str = "arch_str"
    extra_metrics: dict[str, str] = Field(default_factory=dict)
    latency_table: str | None = None
    latency_device: str | None = None


class TrainEvaluatorConfig(BaseModel):
    """Train each candidate from scratch (:class:`~nasforge.eval.train_eval.TrainEvaluator`) on ``data``.

    ``recipe`` names a :data:`nasforge.train.RECIPES` entry and ``train`` overrides its fields (e.g.
    ``{batch_size: 128, lr: 0.05}``); ``epochs`` may be fractional for quick CPU searches.
    """

    model_config = _STRICT
    kind: Literal["train"] = "train"
    epochs: float = Field(1.0, gt=0)
    recipe: str = "nb201"
    train: dict[str, Any] = Field(default_factory=dict)
    eval_batch_size: int = Field(512, ge=1)
    checkpoints: bool = True
    threads: int | None = Field(None, ge=1)


class MenasEvaluatorConfig(TrainEvaluatorConfig):
    """MENAS's evaluator (:class:`~nasforge.eval.menas.MenasEvaluator`): epochs by trial kind, weight inheritance,
    lottery-ticket exploration (menas.txt "Overview" steps 2 and 4; defaults are the paper's).

    ``epochs_init`` (E_init 30), ``epochs_child`` (E_child 20), ``epochs_finetune`` (tickets, 3); ``proposals``
    pruning proposals per trained net (40; 0 disables the exploration), ``calib_batches`` BN re-calibration
    batches (the paper's "a few iterations"; 20), ``rank_images`` validation images that rank the proposals
    (``null``: all), ``weight_sharing`` (children inherit their parent's weights; ``false`` is the ablation that
    trains them from scratch). ``recipe`` defaults to ``menas``. ``epochs`` does not apply (use the three above)
    and ``checkpoints`` must stay on: tickets and children inherit from them.
    """

    kind: Literal["menas"] = "menas"  # type: ignore[assignment]
    epochs: Optional[float] = Field(None, exclude=True)  # type: ignore[assignment]  # not used: epochs by kind
    recipe: str = "menas"
    epochs_init: float = Field(30.0, gt=0)
    epochs_child: float = Field(20.0, gt=0)
    epochs_finetune: float = Field(3.0, gt=0)
    proposals: int = Field(40, ge=0)
    calib_batches: int = Field(20, ge=1)
    rank_images: int | None = Field(None, ge=1)
    weight_sharing: bool = True

    @model_validator(mode="after")
    def _menas_fields(self) -> "MenasEvaluatorConfig":
        if self.epochs is not None:
            raise InvalidValue("evaluator.epochs", self.epochs, "not set for kind 'menas' (use epochs_init, "
                               "epochs_child, epochs_finetune)")
        if not self.checkpoints:
            raise InvalidValue("evaluator.checkpoints", False, "true for kind 'menas' (lottery tickets and children "
                               "inherit weights from the checkpoints)")
        return self


EvaluatorConfig = Annotated[Union[TabularEvaluatorConfig, TrainEvaluatorConfig, MenasEvaluatorConfig],
                            Field(discriminator="kind")]


class ConstraintConfig(BaseModel):
    """Bounds on one cost (``params``, ``flops``, ``latency_ms``...): ``min <= cost <= max``."""

    model_config = _STRICT
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


class ExecutorConfig(BaseModel):
    """Where trials run: ``local`` (in-process), ``pool`` (``workers`` processes) or ``ray`` (``address``)."""

    model_config = _STRICT
    kind: Literal["local", "pool", "ray"] = "local"
    workers: int | None = Field(None, ge=1)
    address: str = "local"
    fresh_process: bool = False
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float | None = Field(None, ge=0)


_SHORTHANDS = {"space": "name", "strategy": "name", "evaluator": "kind", "executor": "kind"}


def _expand_shorthands(raw: dict[str, Any]) -> dict[str, Any]:
    """``space: nb201`` -> ``space: {name: nb201}`` (and likewise for strategy / evaluator / executor)."""
    out = dict(raw)
    for key, sub in _SHORTHANDS.items():
        if isinstance(out.get(key), str):
            out[key] = {sub: out[key]}
    if isinstance(out.get("evaluator"), dict) and "kind" not in out["evaluator"]:
        out["evaluator"] = {"kind": "tabular", **out["evaluator"]}
    return out


class SearchConfig(BaseModel):
    """One search: what to search (space), how (strategy), how to score (evaluator), for how long (budget)."""

    model_config = _STRICT
    name: str = "search"
    space: SpaceConfig
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = Field(None, ge=1)
    data: dict[str, Any] | None = None
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    evaluator: EvaluatorConfig = Field(default_factory=TabularEvaluatorConfig)
    budget: int | None = Field(None, ge=1)
    metric: str = "accuracy"
    mode: Literal["max", "min"] = "max"
    constraints: list[ConstraintConfig] = Field(default_factory=list)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    out: str | None = None
    progress: bool = True
    report: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        return _expand_shorthands(data) if isinstance(data, dict) else data

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError("three positive ints (channels, height, width)")
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from .data import DataConfig

            DataConfig.from_dict(v)  # raises InvalidValue naming the data field
        return v

    @model_validator(mode="after")
    def _cross(self) -> "SearchConfig":
        if isinstance(self.evaluator, TrainEvaluatorConfig) and self.data is None:
            object.__setattr__(self, "data", {"source": "embedded"})
        if isinstance(self.evaluator, TabularEvaluatorConfig) and self.data is not None:
            raise InvalidValue("data", self.data, "no 'data' block with a tabular evaluator (the table holds the results)")
        if self.strategy.name == "menas":  # MENAS needs its evaluator: inheritance and lottery tickets live there
            if not isinstance(self.evaluator, MenasEvaluatorConfig):
                raise InvalidValue("evaluator.kind", self.evaluator.kind, "'menas' with strategy 'menas' (the "
                                   "evaluator inherits parent weights and explores the lottery tickets)")
            tickets = self.strategy.params.get("lottery_tickets", 2)
            if isinstance(tickets, int) and tickets > self.evaluator.proposals:
                raise InvalidValue("strategy.params.lottery_tickets", tickets,
                                   f"an int <= evaluator.proposals ({self.evaluator.proposals}): the top-k of K "
                                   "pruning proposals")
        return self


# ============================================================================================== errors and loading
_EVALUATOR_TAGS: dict[str, type[BaseModel]] = {"tabular": TabularEvaluatorConfig, "train": TrainEvaluatorConfig,
                                               "menas": MenasEvaluatorConfig}


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names of the (sub-)model that the raw pydantic ``loc`` points into, for 'extra field' errors."""
    current: Any = model
    for part in loc[:-1]:
        if part in _EVALUATOR_TAGS:  # the union tag pydantic puts after "evaluator"
            current = _EVALUATOR_TAGS[part]
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            continue
        ann = field.annotation
        subs = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = subs[0] if subs else None
    return sorted(getattr(current, "model_fields", {}))


def _clean_loc(loc: Sequence[Any]) -> list[Any]:
    """Drop pydantic's union tags (``evaluator.train.epochs`` -> ``evaluator.epochs``)."""
    out = list(loc)
    if len(out) > 1 and out[0] == "evaluator" and out[1] in _EVALUATOR_TAGS:
        del out[1]
    return out


def validation_error(exc: ValidationError, root: type[BaseModel] | None = None, prefix: str = "") -> NasforgeError:
    """The first error of a pydantic ``ValidationError`` as one :class:`InvalidValue` line naming the field."""
    err = exc.errors()[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, NasforgeError):
        return original
    raw_loc = list(err.get("loc", ()))
    loc = _clean_loc(raw_loc)
    field = prefix + (".".join(str(p) for p in loc) or "config")
    msg = str(err.get("msg", "a valid value"))
    if err["type"] == "extra_forbidden":
        return InvalidValue(field, err.get("input"), "no such field; fields here: "
                            + ", ".join(_fields_at(root or SearchConfig, raw_loc)))
    if err["type"] == "missing":
        return InvalidValue(field, "<missing>", "a value (this field is required)")
    for head in ("Input should be ", "Value error, ", "Input tag "):
        if msg.startswith(head):
            msg = msg[len(head):]
    if err["type"] == "union_tag_invalid":
        msg = "kind " + msg.split("expected tags:")[-1].strip() if "expected tags" in msg else msg
    return InvalidValue(field, err.get("input"), msg)


def _parse_scalar(text: str) -> Any:
    """A ``--set`` value as YAML; plain numbers YAML 1.1 leaves as strings (``1e8``, ``1.0e-3``) become floats."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML: ``3``, ``0.5``, ``true``, ``[1, 2]``, ``null``)."""
    out = _expand_shorthands(_deep_copy(raw))
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise InvalidValue("--set", item, "KEY=VALUE with a dotted key, e.g. strategy.params.sample_size=5")
        node: dict[str, Any] = out
        for depth, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise InvalidValue(f"--set {key}", ".".join(parts[: depth + 1]) + f" = {nxt!r}",
                                   "a key inside a mapping (this one holds a plain value)")
            node = nxt
        node[parts[-1]] = _parse_scalar(value)
        if len(parts) == 1:
            out = _expand_shorthands(out)
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def validated(model: type[ModelT], raw: Mapping[str, Any], overrides: Sequence[str] = (),
              root: type[BaseModel] | None = None) -> ModelT:
    """``model`` (a pydantic config class) from a mapping plus ``--set`` overrides, with one-line errors."""
    if not isinstance(raw, Mapping):
        raise InvalidValue("config", type(raw).__name__, "a mapping of config fields (YAML key: value pairs)")
    data = apply_overrides(raw, overrides)
    try:
        return model(**data)
    except ValidationError as exc:
        raise validation_error(exc, root=root) from None
    except TypeError as exc:  # non-string keys
        raise InvalidValue("config", str(exc), "string keys") from None


def config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> SearchConfig:
    """A validated :class:`SearchConfig` from a mapping plus ``--set`` overrides (one-line errors)."""
    return validated(SearchConfig, raw, overrides)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The parsed YAML file of a config (``{}`` when empty); a missing file or bad YAML is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"config: file {str(p)!r} does not exist; allowed: a YAML file (see configs/)")
    text = p.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ParseError(f"config {p.name}{where}", " ".join(text.split())[:80], "valid YAML") from None
    return raw if raw is not None else {}


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SearchConfig:
    """Read a YAML search config and apply ``--set`` style ``overrides`` (``["budget=50", "seed=3"]``)."""
    return config_from_dict(read_yaml(path), overrides)


def dump_config(config: SearchConfig | Mapping[str, Any]) -> str:
    """YAML text of a config (JSON-compatible values, fields in declaration order)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


# ============================================================================================== builders
def build_space(config: SearchConfig) -> "SearchSpace":
    """The configured search space (shared default instance when it has no kwargs)."""
    from .registry import get_space

    try:
        return get_space(config.space.name, **config.space.kwargs)
    except TypeError as exc:
        raise InvalidValue("space.kwargs", config.space.kwargs, f"constructor arguments of {config.space.name!r} "
                           f"({exc})") from None


def _data_splits(config: SearchConfig) -> Any:
    from .data import load_data

    return load_data(config.data)


def build_evaluator(config: SearchConfig, space: "SearchSpace") -> Any:
    """The configured evaluator: a :class:`TabularEvaluator`, a :class:`TrainEvaluator` or a
    :class:`~nasforge.eval.menas.MenasEvaluator`."""
    ev = config.evaluator
    if isinstance(ev, TabularEvaluatorConfig):
        from .eval.tabular import TabularEvaluator

        if ev.table is None:
            if space.name != "nb201":
                raise InvalidValue("evaluator.table", None, f"a CSV path (the packaged table is for space 'nb201', "
                                   f"not {space.name!r})")
            return TabularEvaluator.nb201(ev.dataset, ev.protocol, latency_table=ev.latency_table,
                                          latency_device=ev.latency_device)
        if ev.metric_column is None:
            raise InvalidValue("evaluator.metric_column", None, "the table column holding the metric")
        return TabularEvaluator(ev.table, ev.metric_column, arch_column=ev.arch_column, space=space,
                                extra_metrics=ev.extra_metrics, input_shape=config.input_shape,
                                num_classes=config.num_classes, latency_table=ev.latency_table,
                                latency_device=ev.latency_device)
    from .eval.train_eval import TrainEvaluator
    from .train import TrainConfig

    train_config = TrainConfig.from_recipe(ev.recipe, **ev.train)
    if isinstance(ev, MenasEvaluatorConfig):
        from .eval.menas import MenasEvaluator

        return MenasEvaluator(space, config.data, epochs_init=ev.epochs_init, epochs_child=ev.epochs_child,
                              epochs_finetune=ev.epochs_finetune, proposals=ev.proposals,
                              calib_batches=ev.calib_batches, rank_images=ev.rank_images,
                              weight_sharing=ev.weight_sharing, train_config=train_config, device=config.device,
                              eval_batch_size=ev.eval_batch_size, input_shape=config.input_shape,
                              num_classes=config.num_classes, threads=ev.threads)
    return TrainEvaluator(space, config.data, epochs=ev.epochs, train_config=train_config, device=config.device,
                          eval_batch_size=ev.eval_batch_size, input_shape=config.input_shape,
                          num_classes=config.num_classes, checkpoints=ev.checkpoints, threads=ev.threads)


class CostFunction:
    """``arch -> {cost: value}`` for strategy constraints and cost objectives (picklable).

    Analytic ``params`` / ``flops`` from the space (:class:`~nasforge.cost.AnalyticCost`), plus the costs a
    tabular evaluator knows (e.g. ``latency_ms`` from a latency table; a dict look-up), plus, when ``latency`` is
    set and nothing else provides it, a measured ``latency_ms`` (:class:`~nasforge.cost.MeasuredLatency`).
    """

    def __init__(self, space: "SearchSpace", input_shape: tuple[int, int, int] | None, num_classes: int | None,
                 tabular: Any = None, latency: bool = False) -> None:
        from .cost import AnalyticCost, MeasuredLatency

        self.analytic = AnalyticCost(space, input_shape, num_classes)
        self.tabular = tabular
        self.latency = MeasuredLatency(space, input_shape, num_classes) if latency else None

    def __call__(self, arch: Architecture) -> dict[str, float]:
        out: dict[str, float] = dict(self.analytic.cost(arch))
        if self.tabular is not None and arch in self.tabular:
            out.update(self.tabular.evaluate(arch).costs)
        if self.latency is not None and "latency_ms" not in out:
            out.update(self.latency.cost(arch))
        return out


def _cost_shape(config: SearchConfig, evaluator: Any) -> tuple[tuple[int, int, int] | None, int | None]:
    shape, classes = config.input_shape, config.num_classes
    splits = getattr(evaluator, "input_spec", None)
    if splits is not None:
        shape, classes = shape or splits[0], classes or splits[1]
    elif isinstance(config.evaluator, TabularEvaluatorConfig) and config.evaluator.table is None:
        classes = classes or {"cifar10": 10, "cifar100": 100}[config.evaluator.dataset]
    return shape, classes


def build_strategy(config: SearchConfig, space: "SearchSpace", evaluator: Any = None,
                   params: Mapping[str, Any] | None = None) -> "Strategy":
    """The configured strategy, with a :class:`CostFunction` when constraints or a cost objective need one."""
    from .strategies import get_strategy

    params = dict(config.strategy.params if params is None else params)
    needed = {c.name for c in config.constraints} | ({str(params.get("cost", "latency_ms"))}
                                                       if config.strategy.name == "nsga2" else set())
    cost_fn: Callable[[Architecture], Mapping[str, float]] | None = None
    if needed:
        shape, classes = _cost_shape(config, evaluator)
        tabular = evaluator if isinstance(config.evaluator, TabularEvaluatorConfig) else None
        cost_fn = CostFunction(space, shape, classes, tabular, latency="latency_ms" in needed and tabular is None)
    constraints = [c.model_dump() for c in config.constraints]
    return get_strategy(config.strategy.name, space, seed=config.seed, metric=config.metric, mode=config.mode,
                        constraints=constraints, cost_fn=cost_fn, **params)


def build_executor(config: SearchConfig) -> "Executor":
    """The configured executor."""
    from .execute import make_executor

    ex = config.executor
    options: dict[str, Any] = {}
    if ex.kind == "pool":
        options["fresh_process"] = ex.fresh_process
    elif ex.kind == "ray":
        options.update(num_cpus=ex.num_cpus, num_gpus=ex.num_gpus)
    return make_executor(ex.kind, workers=ex.workers, address=ex.address, **options)


def resolved_budget(config: SearchConfig, strategy: Any) -> int:
    """``config.budget``, or the strategy's nominal budget (generational strategies), else an error."""
    if config.budget is not None:
        return config.budget
    nominal = getattr(strategy, "budget", None)
    if isinstance(nominal, int) and not isinstance(nominal, bool) and nominal > 0 and not math.isinf(nominal):
        return nominal
    raise InvalidValue("budget", None, f"a positive int (strategy {config.strategy.name!r} has no nominal budget)")
