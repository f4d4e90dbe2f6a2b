"""Cost models: what an architecture costs, without building a supernet.

* :class:`AnalyticCost` — parameters and FLOPs from the space's own closed-form formulas
  (``space.params`` / ``space.flops``; no network is built). Those formulas are checked against
  :func:`count_flops` / :func:`count_params` on the built network (DESIGN.md, "analytic FLOPs == counted FLOPs").
* :class:`MeasuredLatency` — builds the standalone network and measures it with :func:`measure_latency`
  (the on-device latency the hardware-aware methods constrain: PAD-NAS Sec. 3.1-3.2, BigNAS Sec. 3.2), cached per
  architecture key.
* :func:`costs` — both in one dict, ``{"params": int, "flops": int[, "latency_ms": float]}``.

FLOPs count one multiply-add as 2 (the ``FlopCounterMode`` convention); see :mod:`nasforge.cost.counted`.
A cost model never mutates anything shared: not the space, not the architecture, not a supernet.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

from ..arch import Architecture
from ..errors import InvalidValue, UnknownName
from ..registry import get_space
from ..spaces.base import SearchSpace
from .counted import count_flops, count_params
from .latency import BACKENDS, LatencyResult, measure_latency
from .sparse import nonzero_flops, nonzero_params, sparse_costs

if TYPE_CHECKING:
    from ..spaces.base import InputShape, SearchSpace

__all__ = ["CostModel", "AnalyticCost", "MeasuredLatency", "CostFunction", "costs", "count_flops", "count_params",
           "measure_latency", "LatencyResult", "nonzero_params", "nonzero_flops", "sparse_costs"]


@runtime_checkable
class CostModel(Protocol):
    """Anything with ``cost(arch) -> {name: value}`` (e.g. ``{"params": ..., "flops": ...}``)."""

    def cost(self, arch: Architecture) -> dict[str, float]:
        ...


def _space(space: "SearchSpace | str") -> "SearchSpace":
    if isinstance(space, str):
        return get_space(space)
    if not isinstance(space, SearchSpace):
        raise InvalidValue("space", type(space).__name__, "a SearchSpace or a registered space name")
    return space


class AnalyticCost:
    """Parameters and FLOPs (batch 1) of ``space.build(arch, input_shape, num_classes)``, computed analytically."""

    def __init__(self, space: "SearchSpace | str", input_shape: "InputShape | None" = None,
                 num_classes: int | None = None) -> None:
        self.space = _space(space)
        self.input_shape, self.num_classes = self.space.resolve_input(input_shape, num_classes)

    def cost(self, arch: Architecture) -> dict[str, float]:
        """``{"params": int, "flops": int}`` for ``arch`` (validated against the space first)."""
        arch = self.space.validate(arch)
        return {"params": int(self.space.params(arch, self.input_shape, self.num_classes)),
                "flops": int(self.space.flops(arch, self.input_shape, self.num_classes))}


class MeasuredLatency:
    """Median latency (ms) of the standalone network of ``arch``, measured on ``device`` and cached by arch key.

    Keyword arguments are those of :func:`measure_latency` (``batch_size``, ``threads``, ``warmup``,
    ``repeats``, ``min_run_time``, ``backend``, ``seed``). The cache belongs to this instance only.
    """

    def __init__(self, space: "SearchSpace | str", input_shape: "InputShape | None" = None,
                 num_classes: int | None = None, *, device: str = "cpu", backend: str = "torch",
                 **measure_kwargs: Any) -> None:
        if backend not in BACKENDS:
            raise UnknownName("backend", backend, BACKENDS)
        allowed = {"batch_size", "threads", "warmup", "repeats", "min_run_time", "seed"}
        for k in measure_kwargs:
            if k not in allowed:
                raise InvalidValue("MeasuredLatency option", k, sorted(allowed))
        self.space = _space(space)
        self.input_shape, self.num_classes = self.space.resolve_input(input_shape, num_classes)
        self.device, self.backend, self.measure_kwargs = device, backend, dict(measure_kwargs)
        self._cache: dict[str, LatencyResult] = {}

    def measure(self, arch: Architecture) -> LatencyResult:
        """The full :class:`LatencyResult` for ``arch`` (measured once, then served from the cache)."""
        arch = self.space.validate(arch)
        key = arch.key()
        if key not in self._cache:
            net = self.space.build(arch, self.input_shape, self.num_classes)
            self._cache[key] = measure_latency(net, self.input_shape, device=self.device, backend=self.backend,
                                               **self.measure_kwargs)
        return self._cache[key]

    def cost(self, arch: Architecture) -> dict[str, float]:
        """``{"latency_ms": median}`` for ``arch``."""
        return {"latency_ms": self.measure(arch).median_ms}


def costs(space: "SearchSpace | str", arch: Architecture, input_shape: "InputShape | None" = None,
          num_classes: int | None = None, latency: bool = False, **latency_kwargs: Any) -> dict[str, float]:
    """``{"params": int, "flops": int}`` of ``arch`` (analytic), plus ``"latency_ms"`` when ``latency`` is true
    (measured; ``latency_kwargs`` go to :class:`MeasuredLatency`, e.g. ``device``, ``backend``, ``threads``)."""
    out = AnalyticCost(space, input_shape, num_classes).cost(arch)
    if latency:
        out.update(MeasuredLatency(space, input_shape, num_classes, **latency_kwargs).cost(arch))
    return out


class CostFunction:
    """``arch -> {cost: value}`` for strategy constraints and cost objectives (picklable).

    Analytic ``params`` / ``flops`` from the space (:class:`AnalyticCost`), plus the costs ``lookup(arch)`` knows
    (e.g. a tabular evaluator's ``latency_ms`` from a latency table; ``None`` for an architecture it does not
    hold), plus, when ``latency`` is set and nothing else provides it, a measured ``latency_ms``
    (:class:`MeasuredLatency`).
    """

    def __init__(self, space: "SearchSpace", input_shape: "InputShape | None", num_classes: int | None,
                 lookup: Callable[[Architecture], Mapping[str, float] | None] | None = None,
                 latency: bool = False) -> None:
        self.analytic = AnalyticCost(space, input_shape, num_classes)
        self.lookup = lookup
        self.latency = MeasuredLatency(space, input_shape, num_classes) if latency else None

    def __call__(self, arch: Architecture) -> dict[str, float]:
        out: dict[str, float] = dict(self.analytic.cost(arch))
        known = self.lookup(arch) if self.lookup is not None else None
        if known:
            out.update(known)
        if self.latency is not None and "latency_ms" not in out:
            out.update(self.latency.cost(arch))
        return out
