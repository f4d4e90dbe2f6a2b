"""The :class:`Evaluator` contract: turn an architecture into a :class:`~nasforge.trial.Result`.

Every way of scoring a candidate — a NAS-Bench-201 table look-up, training from scratch, inheriting a parent's
weights and fine-tuning (MENAS), slicing a supernet and re-calibrating BatchNorm (BigNAS, DCNAS, PAD-NAS) — is an
evaluator with one method::

    result = evaluator.evaluate(arch, seed=trial.seed, context={"trial_dir": ..., "parent_checkpoint": ...})

Results are return values, never globals: an evaluator keeps no per-trial state that another call could see.
``seed`` makes stochastic evaluations reproducible (deterministic evaluators ignore it). ``context`` carries what
an evaluation may need from the study that is not part of the architecture; the keys nasforge uses are listed in
:class:`EvalContext` (all optional), and evaluators ignore keys they do not know.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Mapping,
    Protocol,
    TypedDict,
    TypeVar,
    runtime_checkable,
)

from ..arch import Architecture
from ..registry import EVALUATORS
from ..schema import ConfigModel
from ..trial import Result

if TYPE_CHECKING:
    from ..spaces.base import SearchSpace

__all__ = ["EvalContext", "Evaluator", "SupportsEvaluate", "EvaluatorConfig", "register_evaluator"]

C = TypeVar("C", bound=type)


class EvalContext(TypedDict, total=False):
    """Optional per-trial information passed to :meth:`Evaluator.evaluate`."""

    trial_id: int
    trial_dir: str  #: a folder the evaluator may write artifacts (checkpoints, logs) into
    parent_checkpoint: str  #: weights to inherit (MENAS individual weight sharing)
    parent_arch: Architecture  #: the architecture those weights belong to
    device: str  #: torch device string, e.g. "cpu" or "cuda:0"


@runtime_checkable
class SupportsEvaluate(Protocol):
    """Structural type of an evaluator, for code that accepts any object with ``name`` and ``evaluate``."""

    name: str

    def evaluate(self, arch: Architecture, *, seed: int | None = None,
                 context: Mapping[str, Any] | None = None) -> Result: ...


class Evaluator(ABC):
    """Base class of evaluators: a ``name`` and :meth:`evaluate`."""

    #: short identifier recorded with results (e.g. ``"tabular:nb201-cifar10-hp12-valid"``)
    name: str = "evaluator"

    @abstractmethod
    def evaluate(self, arch: Architecture, *, seed: int | None = None,
                 context: Mapping[str, Any] | None = None) -> Result:
        """Score ``arch``: ``Result(metrics, costs, artifacts, info)``.

        ``seed`` seeds any randomness of this one evaluation (``None``: the evaluator's default); ``context`` is an
        optional :class:`EvalContext`-like mapping. Raises a :class:`~nasforge.errors.NasforgeError` for an
        architecture the evaluator cannot score.
        """

    def __call__(self, arch: Architecture, *, seed: int | None = None,
                 context: Mapping[str, Any] | None = None) -> Result:
        return self.evaluate(arch, seed=seed, context=context)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class EvaluatorConfig(ConfigModel):
    """Base of every evaluator's config block (``evaluator:`` of a search config), registered by ``kind`` in
    :data:`nasforge.registry.EVALUATORS` with :func:`register_evaluator`.

    A subclass declares its fields (named as in its paper) and implements :meth:`build`; the class variables say
    what the search around it must provide. The search config (:mod:`nasforge.config`) knows no evaluator by name:
    it validates the block with the registered model and calls these hooks. :meth:`reported` declares the names in
    the evaluator's results, so a search's ``metric``, constraints and cost objectives are checked before any trial.
    """

    kind: str

    #: whether the evaluator reads the search's ``data`` block (default ``{source: embedded}`` when it does)
    uses_data: ClassVar[bool] = False
    #: whether the evaluator writes per-trial checkpoints that ``nasforge export`` can rebuild a network from
    exportable: ClassVar[bool] = False
    #: whether the built evaluator has ``lookup_costs(arch)`` (a table's costs): a search's cost function then takes
    #: the costs it knows from there and measures no latency (:func:`nasforge.config.build_strategy`)
    cost_lookup: ClassVar[bool] = False

    def build(self, space: "SearchSpace", *, data: Mapping[str, Any] | None, device: str,
              input_shape: tuple[int, int, int] | None, num_classes: int | None) -> Evaluator:
        """The evaluator for ``space`` with the search's data block, device and requested input / classes."""
        raise NotImplementedError

    def reported(self) -> tuple[set[str], set[str]] | None:
        """``(metric names, cost names)`` that every result of the built evaluator holds (``Result.metrics`` /
        ``Result.costs``), or ``None`` when undeclared (then a search's metric and cost names are not checked
        before the run)."""
        return None

    def cost_classes(self) -> int | None:
        """The number of classes the networks are costed for when the evaluator reads no data (``None``: the
        space's default)."""
        return None

    def check_search(self, search: Any) -> None:
        """Cross-field checks against the whole search config (raise :class:`~nasforge.errors.InvalidValue`)."""


def register_evaluator(kind: str) -> Callable[[C], C]:
    """Class decorator registering an :class:`EvaluatorConfig` subclass as evaluator ``kind``."""

    def deco(cls: C) -> C:
        EVALUATORS.register(kind)(cls)
        return cls

    return deco
