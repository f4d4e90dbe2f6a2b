"""Tabular evaluation: look an architecture's metrics up in a benchmark table (NAS-Bench-201 and user tables).

A table is any CSV file (optionally gzip-compressed) with a header row, one column holding architecture strings
in the compact format of a registered search space, and numeric metric columns. :class:`TabularEvaluator` parses
every architecture once, when it is constructed, so an evaluation is a dictionary look-up; the parsed tables are
cached per (file, modification time), so building many evaluators over one table (one per seed and strategy in a
benchmark) costs milliseconds after the first.

The packaged NAS-Bench-201 table (Dong & Yang, ICLR 2020; NATS-Bench TSS) is available through
:meth:`TabularEvaluator.nb201`, with the two protocols used to report NB201 searches:

* ``"hp12-valid"`` — search on the 12-epoch validation accuracy, report the 200-epoch test accuracy
  (NATS-Bench's fair protocol: the search never sees a test number);
* ``"hp200-test"`` — search directly on the 200-epoch test accuracy (the NB201 paper's oracle setting).

Either way ``Result.metrics`` holds ``"accuracy"`` (the search metric, to optimise) and ``"test_accuracy"`` (the
200-epoch test accuracy, to report), in percent. Table values are means over the benchmark's training seeds, so
the ``seed`` of :meth:`TabularEvaluator.evaluate` has no effect.

Costs (``Result.costs``): ``params`` and ``flops`` from the search space's analytic cost model, computed once per
architecture and cached; optionally ``latency_ms`` from a latency table with the same architecture column and one
column per device, e.g. HELP's NB201 latencies (``shared/data/nb201_latency_help/nb201_latency_ms.csv.gz``, columns
``arch_str`` and devices such as ``gold_6226``, ``fpga``, ``pixel3``, ``titan_rtx_1``), chosen with
``latency_device``.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Sequence

from pydantic import Field, model_validator

from ..arch import Architecture
from ..data.tables import Table, file_key, read_cached, read_table, require_columns
from ..errors import DataError, InvalidArchitecture, InvalidValue, NasforgeError
from ..registry import get_space
from ..spaces.base import InputShape, SearchSpace
from ..spaces.nb201 import TABLE_PATH
from ..trial import Result
from .base import Evaluator, EvaluatorConfig, register_evaluator

__all__ = ["read_table", "TabularEvaluator", "TabularEvaluatorConfig", "NB201_DATASETS", "NB201_PROTOCOLS"]

NB201_DATASETS: dict[str, int] = {"cifar10": 10, "cifar100": 100}  # dataset -> number of classes
#: protocol -> column template of the search metric (the reported metric is always ``{dataset}_test_hp200``)
NB201_PROTOCOLS: dict[str, str] = {"hp12-valid": "{dataset}_valid_hp12", "hp200-test": "{dataset}_test_hp200"}


@functools.lru_cache(maxsize=65536)
def _parse_one(space: SearchSpace, text: str) -> Architecture:
    """``space.parse(text)``, memoised: tables of one space (accuracy, latency...) share their strings."""
    return space.parse(text)


@functools.lru_cache(maxsize=32)
def _parse_archs(key: tuple[str, int, int], column: str, space: SearchSpace) -> dict[Architecture, int]:
    """Architecture -> row number for ``column`` of table ``key``, parsed with ``space`` (cached)."""
    strings = read_cached(key)[column]
    out: dict[Architecture, int] = {}
    for row, text in enumerate(strings):
        try:
            arch = _parse_one(space, text)
        except NasforgeError as exc:
            raise DataError(f"table {Path(key[0]).name}, column {column!r}, row {row}: {exc}") from None
        if arch in out:
            raise DataError(f"table {Path(key[0]).name}, column {column!r}, row {row}: got {text!r} again "
                            f"(first in row {out[arch]}); allowed: one row per architecture")
        out[arch] = row
    return out


def _numbers(table: Table, column: str, path: Any) -> list[float]:
    values = []
    for row, text in enumerate(table[column]):
        try:
            values.append(float(text))
        except ValueError:
            raise DataError(f"table {Path(path).name}, column {column!r}, row {row}: got {text!r}; "
                            "allowed: a number") from None
    return values


def _info_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class TabularEvaluator(Evaluator):
    """Evaluate architectures by looking them up in a table (NAS-Bench-201 style tabular benchmark).

    ``table``: a CSV(.gz) path, or ``None`` for the packaged NAS-Bench-201 table. ``metric``: the column returned as
    ``metrics[metric_key]`` (default key ``"accuracy"``). ``extra_metrics``: more columns to return, either column
    names (returned under their own name) or a ``{key: column}`` mapping. ``arch_column`` holds architecture strings
    of ``space`` (a name or a :class:`SearchSpace`). ``info_columns`` are copied into ``Result.info``.
    ``costs``: add the space's analytic ``params`` and ``flops`` for ``input_shape`` / ``num_classes`` (space
    defaults when ``None``). ``latency_table`` + ``latency_device``: add ``costs["latency_ms"]`` from that
    device column (architectures matched on ``latency_arch_column``, default ``arch_column``).
    """

    def __init__(self, table: str | os.PathLike[str] | None, metric: str, *, arch_column: str = "arch_str",
                 space: str | SearchSpace = "nb201", extra_metrics: Sequence[str] | Mapping[str, str] = (),
                 metric_key: str = "accuracy", info_columns: Sequence[str] = (), costs: bool = True,
                 input_shape: InputShape | None = None, num_classes: int | None = None,
                 latency_table: str | os.PathLike[str] | None = None, latency_device: str | None = None,
                 latency_arch_column: str | None = None, name: str | None = None) -> None:
        self.space = get_space(space) if isinstance(space, str) else space
        if not isinstance(self.space, SearchSpace) or getattr(self.space, "__hash__", None) is None:
            raise InvalidValue("space", space, "a registered space name or a hashable SearchSpace")
        self.path = Path(TABLE_PATH if table is None else table)
        extra = dict(extra_metrics) if isinstance(extra_metrics, Mapping) else {c: c for c in extra_metrics}
        self.metric_columns = {metric_key: metric, **extra}
        self.name = name or f"tabular:{self.path.name}:{metric}"
        self._with_costs = costs
        self._cost_args = (input_shape, num_classes)
        self.space.resolve_input(input_shape, num_classes)  # validate early
        self._rows = self._load_rows(arch_column, tuple(info_columns))
        self._costs: dict[Architecture, dict[str, float]] = {}
        self._latency = self._load_latency(latency_table, latency_device, latency_arch_column or arch_column)

    def _load_rows(self, arch_column: str, info_columns: tuple[str, ...]
                   ) -> dict[Architecture, tuple[dict[str, float], dict[str, Any]]]:
        key = file_key(self.path)
        table = read_cached(key)
        require_columns(table, (arch_column, *self.metric_columns.values(), *info_columns), self.path)
        values = {k: _numbers(table, col, self.path) for k, col in self.metric_columns.items()}
        rows = {}
        for arch, r in _parse_archs(key, arch_column, self.space).items():
            info = {"table": self.path.name, "row": r, **{c: _info_value(table[c][r]) for c in info_columns}}
            rows[arch] = ({k: v[r] for k, v in values.items()}, info)
        return rows

    def _load_latency(self, path: str | os.PathLike[str] | None, device: str | None,
                      arch_column: str) -> dict[Architecture, float] | None:
        if path is None:
            if device is not None:
                raise InvalidValue("latency_table", None, "a CSV(.gz) path when latency_device is given")
            return None
        if device is None:
            raise InvalidValue("latency_device", None, "a device column of the latency table")
        key = file_key(path)
        table = read_cached(key)
        require_columns(table, (arch_column,), path)
        if device not in table:
            devices = [c for c in table if c not in (arch_column, "arch_index")]
            raise InvalidValue("latency_device", device, devices, where=f"table {Path(path).name}")
        ms = _numbers(table, device, path)
        return {arch: ms[r] for arch, r in _parse_archs(key, arch_column, self.space).items()}

    @classmethod
    def nb201(cls, dataset: str = "cifar10", protocol: str = "hp12-valid", *, costs: bool = True,
              latency_table: str | os.PathLike[str] | None = None,
              latency_device: str | None = None) -> "TabularEvaluator":
        """The packaged NAS-Bench-201 table for ``dataset`` (``cifar10`` | ``cifar100``) under ``protocol``.

        ``metrics["accuracy"]`` is the search metric (``hp12-valid``: 12-epoch validation accuracy;
        ``hp200-test``: 200-epoch test accuracy) and ``metrics["test_accuracy"]`` the 200-epoch test accuracy
        (CIFAR-10 ``ori-test``, CIFAR-100 ``x-test``), in percent. ``info["arch_index"]`` is the official index.
        """
        if dataset not in NB201_DATASETS:
            raise InvalidValue("dataset", dataset, list(NB201_DATASETS), where="nb201 table")
        if protocol not in NB201_PROTOCOLS:
            raise InvalidValue("protocol", protocol, list(NB201_PROTOCOLS), where="nb201 table")
        return cls(None, NB201_PROTOCOLS[protocol].format(dataset=dataset), space="nb201",
                   extra_metrics={"test_accuracy": f"{dataset}_test_hp200"}, info_columns=("arch_index",),
                   costs=costs, num_classes=NB201_DATASETS[dataset], latency_table=latency_table,
                   latency_device=latency_device, name=f"tabular:nb201-{dataset}-{protocol}")

    # ---------------------------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, arch: object) -> bool:
        return isinstance(arch, Architecture) and arch in self._rows

    def architectures(self) -> list[Architecture]:
        """Every architecture of the table, in row order."""
        return list(self._rows)

    def best(self, key: str = "accuracy", *, maximize: bool = True) -> tuple[Architecture, float]:
        """The table's best architecture by metric ``key`` and its value (e.g. for regret curves)."""
        if key not in self.metric_columns:
            raise InvalidValue("metric", key, list(self.metric_columns), where=self.name)
        pick = max if maximize else min
        arch = pick(self._rows, key=lambda a: self._rows[a][0][key])
        return arch, self._rows[arch][0][key]

    def _arch_costs(self, arch: Architecture) -> dict[str, float]:
        costs = self._costs.get(arch)
        if costs is None:
            costs = {}
            if self._with_costs:
                costs["params"] = self.space.params(arch, *self._cost_args)
                costs["flops"] = self.space.flops(arch, *self._cost_args)
            if self._latency is not None:
                if arch not in self._latency:
                    raise InvalidArchitecture("architecture", str(arch), "one present in the latency table")
                costs["latency_ms"] = self._latency[arch]
            self._costs[arch] = costs
        return costs

    def lookup_costs(self, arch: Architecture) -> dict[str, float] | None:
        """The costs of ``arch`` when the table holds it (for strategy constraints), else ``None``."""
        return dict(self._arch_costs(arch)) if arch in self else None

    def evaluate(self, arch: Architecture, *, seed: int | None = None,
                 context: Mapping[str, Any] | None = None) -> Result:
        """The table row of ``arch``: metrics, costs and info (``seed`` and ``context`` are not used)."""
        row = self._rows.get(arch) if isinstance(arch, Architecture) else None
        if row is None:
            raise InvalidArchitecture("architecture", str(arch),
                                      f"one of the {len(self._rows)} architectures of table {self.path.name}",
                                      where=self.name)
        return Result(metrics=dict(row[0]), costs=dict(self._arch_costs(arch)), info=dict(row[1]))


@register_evaluator("tabular")
class TabularEvaluatorConfig(EvaluatorConfig):
    """Table look-up (:class:`~nasforge.eval.tabular.TabularEvaluator`).

    ``table: null`` is the packaged NAS-Bench-201 table with ``dataset`` / ``protocol`` (``hp12-valid``: search on
    the 12-epoch validation accuracy; ``hp200-test``: on the 200-epoch test accuracy; both also report
    ``test_accuracy``). A user table (CSV or CSV.gz) needs ``metric_column`` (returned as ``accuracy``);
    ``extra_metrics`` maps more result names to columns.
    """

    kind: Literal["tabular"] = "tabular"
    table: str | None = None
    dataset: Literal["cifar10", "cifar100"] = "cifar10"
    protocol: Literal["hp12-valid", "hp200-test"] = "hp12-valid"
    metric_column: str | None = None
    arch_column: str = "arch_str"
    extra_metrics: dict[str, str] = Field(default_factory=dict)
    latency_table: str | None = None
    latency_device: str | None = None

    cost_lookup: ClassVar[bool] = True

    def reported(self) -> tuple[set[str], set[str]]:
        """``accuracy`` (+ ``test_accuracy`` for the packaged table, + the ``extra_metrics`` keys of a user table);
        ``params``, ``flops`` (+ ``latency_ms`` with a latency table)."""
        metrics = {"accuracy", "test_accuracy"} if self.table is None else {"accuracy", *self.extra_metrics}
        return metrics, {"params", "flops"} | ({"latency_ms"} if self.latency_table is not None else set())

    @model_validator(mode="after")
    def _table_fields(self) -> "TabularEvaluatorConfig":
        if self.table is not None and self.metric_column is None:
            raise InvalidValue("evaluator.metric_column", None, "the table column holding the metric")
        if (self.latency_table is None) != (self.latency_device is None):
            raise InvalidValue("evaluator.latency_device" if self.latency_device is None else "evaluator.latency_table",
                               None, "a value: latency_table (a CSV path) and latency_device (its column) go together")
        return self

    def check_search(self, search: Any) -> None:
        """The packaged table holds NAS-Bench-201 architectures: ``table: null`` needs space ``nb201``."""
        if self.table is None and search.space.name != "nb201":
            raise InvalidValue("evaluator.table", None, f"a CSV path (the packaged table is for space 'nb201', not "
                               f"{search.space.name!r})")

    def build(self, space: SearchSpace, *, data: Mapping[str, Any] | None, device: str,
              input_shape: tuple[int, int, int] | None, num_classes: int | None) -> "TabularEvaluator":
        if self.table is None:
            if space.name != "nb201":
                raise InvalidValue("evaluator.table", None, f"a CSV path (the packaged table is for space 'nb201', "
                                   f"not {space.name!r})")
            return TabularEvaluator.nb201(self.dataset, self.protocol, latency_table=self.latency_table,
                                          latency_device=self.latency_device)
        if self.metric_column is None:
            raise InvalidValue("evaluator.metric_column", None, "the table column holding the metric")
        return TabularEvaluator(self.table, self.metric_column, arch_column=self.arch_column, space=space,
                                extra_metrics=self.extra_metrics, input_shape=input_shape, num_classes=num_classes,
                                latency_table=self.latency_table, latency_device=self.latency_device)

    def cost_classes(self) -> int | None:
        return NB201_DATASETS[self.dataset] if self.table is None else None
