"""BigNAS coarse-to-fine architecture selection and the model family (Yu et al., ECCV 2020, Sec. 3.2 and 4.4).

After the single-stage model is trained, BigNAS picks one child per resource budget in two phases:

1. **coarse** (:func:`coarse_grid`): benchmark every child of a grid of *skeletons*: 5 resolutions x 4 depth
   configurations (global depth multipliers) x 2 channel configurations (global width multipliers) x 4 stage-wise
   kernel configurations = 160 children on the Table 1 space (Sec. 4.4);
2. **fine** (:func:`fine_search`): mutate the most accurate skeleton within a budget ("randomly mutate its
   network-wise resolution, stage-wise depth, number of channels and kernel sizes", Sec. 3.2), keep the best.
   Sec. 4.4 varies them "slightly", so by default a mutation moves each chosen gene one step to a neighbouring
   choice (:func:`mutate_neighbour`, ``mutation="neighbour"``); ``mutation="any"`` redraws it to any other value.

Children are judged by accuracy with the shared weights after BatchNorm re-calibration, without retraining
(Sec. 3.1; :func:`evaluate_child`), and cost analytic FLOPs / parameters (optionally measured latency).
:func:`coarse_to_fine` returns a :class:`Family` (BigNASModel-S, -M, -L, ..., Sec. 4.2) that round-trips through
JSON (a run folder's ``family.json``); :func:`export_member` slices a member out for deployment.

Which split selects: BigNAS ranks children by accuracy on the *training* set, because its supernet was trained on
all of ImageNet's training data and ImageNet's validation set served as the test set (Sec. 4.4). nasforge defaults
to the user's *validation* split, held out from supernet training (a less biased ranking); pass
``select_split="train"`` for the paper's choice.

The supernet is any ``nn.Module`` with ``activate(arch)`` (a context manager under which ``supernet(x)`` runs the
child on a full-size input) and ``extract(arch) -> nn.Module`` (the standalone child, with the parameter names of
``space.build(arch)``), e.g. :class:`nasforge.supernet.mbconv.ElasticMBConvSupernet`. Nothing here uses a global
RNG: mutations draw from a ``numpy.random.Generator``, calibration batches from a seeded ``torch.Generator``.
"""
from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..arch import Architecture
from ..cost import AnalyticCost
from ..data.load import DataSplits
from ..data.loader import Batches
from ..device import resolve_device
from ..errors import DataError, InvalidArchitecture, InvalidValue
from ..export import export_model
from ..registry import get_space
from ..spaces.base import InputShape, SearchSpace
from ..spaces.bignas import BigNASSpace
from ..spaces.nb201 import NB201Space
from ..spaces.mbconv_common import layer_label, stage_label
from ..train.bn import bn_layers, calibrate_bn
from ..train.loop import evaluate
from .family import COST_NAMES, Budget, Entry, Family, Member, member_names

if TYPE_CHECKING:
    from ..data.load import DataSplits

__all__ = ["DEPTH_MULTIPLIERS", "WIDTH_MULTIPLIERS", "KERNEL_CONFIGS", "COST_NAMES", "coarse_grid", "Budget",
           "Entry", "ChildEvaluator", "evaluate_child", "FineResult", "fine_search", "Member", "Family",
           "member_names", "coarse_to_fine", "ExportResult", "export_member", "take_batches", "MUTATIONS",
           "mutate_neighbour"]

#: Sec. 4.4's four depth configurations: multiplier ``d`` picks, per stage, depth choice ``round(d * (n - 1))``
DEPTH_MULTIPLIERS: tuple[float, ...] = (0.0, 1 / 3, 2 / 3, 1.0)
#: Sec. 4.4's two channel configurations: the smallest / largest width (and expand ratio) of every stage, stem, head
WIDTH_MULTIPLIERS: tuple[float, ...] = (0.0, 1.0)
#: Sec. 4.4's four stage-wise kernel configurations: name -> (stage k of n -> multiplier on the kernel choices)
_KERNEL_RULES: dict[str, Callable[[int, int], float]] = {
    "small": lambda k, n: 0.0,                             # every stage at its smallest kernel
    "large": lambda k, n: 1.0,                             # every stage at its largest kernel
    "small-early": lambda k, n: 0.0 if k <= n // 2 else 1.0,  # small kernels in the first half, large later
    "large-early": lambda k, n: 1.0 if k <= n // 2 else 0.0,  # the reverse
}
KERNEL_CONFIGS: tuple[str, ...] = tuple(_KERNEL_RULES)
#: fine-grained mutation kinds: ``neighbour`` (one step in a gene's ordered choices; Sec. 4.4 "slightly", the
#: default) and ``any`` (redraw the gene to any other choice, :meth:`SearchSpace.mutate`)
MUTATIONS: tuple[str, ...] = ("neighbour", "any")
_LAYER_GENE = re.compile(r"(?P<stage>.+)\.l(?P<layer>\d+)\.(?P<name>[^.]+)")


# ================================================================================================= coarse grid
def _pick(choices: Sequence[Any], multiplier: float) -> Any:
    """``choices[round(multiplier * (len - 1))]`` (round half up): 0 -> smallest, 1 -> largest."""
    return choices[int(math.floor(multiplier * (len(choices) - 1) + 0.5))]


def _multipliers(field_name: str, values: Sequence[float]) -> tuple[float, ...]:
    vals = tuple(values) if isinstance(values, (list, tuple)) else ()
    if not vals or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in vals):
        raise InvalidValue(field_name, values, "a non-empty sequence of numbers in [0, 1]")
    return tuple(float(v) for v in vals)


def _kernel_multipliers(config: str | Sequence[float], n_stages: int) -> tuple[float, ...]:
    """Per-stage kernel multipliers of a named configuration (:data:`KERNEL_CONFIGS`) or an explicit sequence."""
    if isinstance(config, str):
        if config not in _KERNEL_RULES:
            raise InvalidValue("kernel_configs entry", config, KERNEL_CONFIGS + ("a per-stage sequence in [0, 1]",))
        return tuple(_KERNEL_RULES[config](k, n_stages) for k in range(1, n_stages + 1))
    fracs = _multipliers("kernel_configs entry", config)
    if len(fracs) != n_stages:
        raise InvalidValue("kernel_configs entry length", len(fracs), [n_stages])
    return fracs


def _skeleton(space: BigNASSpace, resolution: int, depth: float, width: float, kernels: Sequence[float]
              ) -> Architecture:
    """One coarse child: network-wise resolution, global depth / width multipliers, stage-wise kernel multipliers."""
    genes: dict[str, Any] = {"resolution": resolution, "stem.width": _pick(space.stem_widths, width),
                             "head.width": _pick(space.head_widths, width)}
    for k, (st, kfrac) in enumerate(zip(space.stages, kernels), 1):
        d = _pick(st.depths, depth)
        genes[stage_label(k, "depth")], genes[stage_label(k, "width")] = d, _pick(st.widths, width)
        for j in range(d):
            genes[layer_label(k, j, "kernel")] = _pick(st.kernels, kfrac)
            genes[layer_label(k, j, "expand")] = _pick(st.expands, width)
    return space.make(genes)


def coarse_grid(space: BigNASSpace, resolutions: Sequence[int] | None = None,
                depth_multipliers: Sequence[float] = DEPTH_MULTIPLIERS,
                width_multipliers: Sequence[float] = WIDTH_MULTIPLIERS,
                kernel_configs: Sequence[str | Sequence[float]] = KERNEL_CONFIGS) -> list[Architecture]:
    """The coarse skeletons of BigNAS Sec. 4.4: resolution x depth x width x kernel configuration, in that order.

    The paper gives only the counts (5 x 4 x 2 x 4 = 160); nasforge maps them onto the space's choice lists:

    * **resolution** (network-wise): every entry of ``resolutions`` (default: all of ``space.resolutions``, the
      five of Sec. 4.4 on Table 1);
    * **depth** (stage-wise via a global depth multiplier ``d`` in :data:`DEPTH_MULTIPLIERS` = {0, 1/3, 2/3, 1}):
      stage k gets depth choice ``round(d * (len(depths_k) - 1))`` (round half up);
    * **width** (global width multiplier ``w`` in :data:`WIDTH_MULTIPLIERS` = {0, 1}): the same index rule on the
      widths of the stem, every stage and the head, and on every layer's expand ratio (it scales the expanded
      channels too; Table 1 fixes the expand ratio);
    * **kernels** (stage-wise, :data:`KERNEL_CONFIGS`): ``small`` (all smallest), ``large`` (all largest),
      ``small-early`` (the first ``n_stages // 2`` stages smallest, the rest largest) and ``large-early`` (the
      reverse); every layer of a stage shares its kernel. A config may also be a per-stage sequence of
      multipliers in [0, 1]. Stages with a single kernel choice (Table 1 stages 1-2) keep it.

    Configurations that coincide on a small table give the same child; duplicates are dropped (first kept).
    """
    if not isinstance(space, BigNASSpace):
        raise InvalidValue("space", type(space).__name__, "a BigNASSpace (coarse-to-fine selection is BigNAS's)")
    res = space.resolutions if resolutions is None else tuple(resolutions)
    if not res or any(r not in space.resolutions or isinstance(r, bool) for r in res):
        raise InvalidValue("resolutions", resolutions, space.resolutions)
    depths = _multipliers("depth_multipliers", depth_multipliers)
    widths = _multipliers("width_multipliers", width_multipliers)
    if isinstance(kernel_configs, str) or not kernel_configs:
        raise InvalidValue("kernel_configs", kernel_configs, f"a non-empty sequence of {KERNEL_CONFIGS}")
    kernels = [_kernel_multipliers(c, len(space.stages)) for c in kernel_configs]
    out: dict[str, Architecture] = {}
    for r, d, w, k in itertools.product(res, depths, widths, kernels):
        arch = _skeleton(space, int(r), d, w, k)
        out.setdefault(arch.key(), arch)
    return list(out.values())


# ================================================================================================= evaluation
def _check_supernet(supernet: Any) -> nn.Module:
    if not (isinstance(supernet, nn.Module) and callable(getattr(supernet, "activate", None))
            and callable(getattr(supernet, "extract", None))):
        raise InvalidValue("supernet", type(supernet).__name__,
                           "an nn.Module with activate(arch) and extract(arch), e.g. ElasticMBConvSupernet")
    return supernet


def evaluate_child(supernet: nn.Module, arch: Architecture, calib_batches: Iterable[Any], val_batches: Iterable[Any],
                   *, calib_steps: int, device: str | torch.device = "cpu", max_batches: int | None = None) -> float:
    """Top-1 accuracy (%) of the child ``arch`` with the shared weights, after BatchNorm re-calibration.

    BigNAS does not accumulate BN statistics while training the single-stage model ("ill-defined with varying
    architectures"); each child is re-calibrated before it is evaluated (Sec. 3.1, "Batch Norm Calibration";
    :func:`~nasforge.train.bn.calibrate_bn` on ``calib_steps`` batches inside ``supernet.activate(arch)``), then
    evaluated on ``val_batches`` (at most ``max_batches``). The supernet's BN buffers are restored afterwards, so
    evaluating one child never changes what another sees.
    """
    _check_supernet(supernet)
    dev = resolve_device(device)
    supernet.to(dev)
    with supernet.activate(arch):
        saved = [(b, {k: v.clone() for k, v in b.named_buffers(recurse=False)}) for b in bn_layers(supernet)]
        try:
            calibrate_bn(supernet, calib_batches, calib_steps, dev)
            return float(evaluate(supernet, val_batches, dev, max_batches=max_batches)["accuracy"])
        finally:
            with torch.no_grad():
                for bn, buffers in saved:
                    for name, value in buffers.items():
                        getattr(bn, name).copy_(value)


def _x(batch: Any) -> torch.Tensor:
    """The images of a batch (``x`` or ``(x, y)``)."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def take_batches(batches: Iterable[Any], n: int, what: str) -> list[Any]:
    """The first ``n`` batches as a list, so every child is calibrated on the very same images."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValue("calib_steps", n, "a positive int")
    out = list(itertools.islice(iter(batches), n))
    if not out:
        raise DataError(f"{what}: got no batches; expected at least 1")
    return out


class ChildEvaluator:
    """Accuracy (:func:`evaluate_child`) and costs of supernet children, each computed once per architecture key.

    Costs are the analytic ``flops`` / ``params`` of ``space.build(arch, input_shape, num_classes)``
    (:class:`~nasforge.cost.AnalyticCost`; shapes default to the supernet's ``input_shape`` / ``num_classes``), plus
    ``latency_ms`` from ``latency``: any object whose ``cost(arch)`` returns ``{"latency_ms": ms}``, e.g. a
    :class:`~nasforge.cost.MeasuredLatency` or a lookup table (:func:`nasforge.supernet.lut.load_lut`). The first
    ``calib_steps`` calibration batches are kept, so every child sees the same ones.
    """

    def __init__(self, supernet: nn.Module, space: SearchSpace, calib_batches: Iterable[Any],
                 val_batches: Iterable[Any], *, calib_steps: int = 20, device: str | torch.device = "cpu",
                 input_shape: InputShape | None = None, num_classes: int | None = None,
                 latency: Any = None, max_batches: int | None = None) -> None:
        self.supernet = _check_supernet(supernet)
        if not isinstance(space, SearchSpace):
            raise InvalidValue("space", type(space).__name__, "a SearchSpace")
        if latency is not None and not callable(getattr(latency, "cost", None)):
            raise InvalidValue("latency", type(latency).__name__, "None, a nasforge.cost.MeasuredLatency or a "
                                                                  "latency table (cost(arch) -> {'latency_ms': ms})")
        self.space, self.latency, self.max_batches = space, latency, max_batches
        self.calib = take_batches(calib_batches, calib_steps, "calibration batches")
        self.val_batches, self.device = val_batches, resolve_device(device)
        self.cost_model = AnalyticCost(space, *_shapes(supernet, space, _x(self.calib[0]), input_shape, num_classes))
        self._costs: dict[str, dict[str, float]] = {}
        self._entries: dict[str, Entry] = {}

    @property
    def largest_flops(self) -> float:
        """Analytic FLOPs of the space's largest child: the reference of fractional budgets."""
        return float(self.cost_model.cost(self.space.largest())["flops"])

    @property
    def cost_names(self) -> tuple[str, ...]:
        return ("flops", "params") + (("latency_ms",) if self.latency is not None else ())

    def costs(self, arch: Architecture) -> dict[str, float]:
        """``{"flops", "params"[, "latency_ms"]}`` of ``arch`` (cached)."""
        key = arch.key()
        if key not in self._costs:
            c = dict(self.cost_model.cost(arch))
            if self.latency is not None:
                c.update(self.latency.cost(arch))
            self._costs[key] = c
        return self._costs[key]

    def entry(self, arch: Architecture) -> Entry:
        """The benchmarked child (accuracy after BN calibration, costs), evaluated on first request only."""
        arch = self.space.validate(arch)
        key = arch.key()
        if key not in self._entries:
            acc = evaluate_child(self.supernet, arch, self.calib, self.val_batches, calib_steps=len(self.calib),
                                 device=self.device, max_batches=self.max_batches)
            self._entries[key] = Entry(arch, self.space.format(arch), acc, self.costs(arch))
        return self._entries[key]

    @property
    def evaluated(self) -> int:
        """How many distinct children were evaluated so far."""
        return len(self._entries)


def _rank(e: Entry) -> tuple[float, float]:
    """Higher accuracy first; among equals the cheaper child (fewer FLOPs)."""
    return (e.accuracy, -float(e.costs.get("flops", 0.0)))


# ================================================================================================= fine search
def _complete(space: SearchSpace, genes: dict[str, Any], rng: np.random.Generator) -> None:
    """Give every active gene that ``genes`` lacks a value, in place: a layer gene ``s{k}.l{j}.x`` newly activated
    by a deeper stage copies ``s{k}.l{j-1}.x`` (the new layer repeats the stage's last one, the smallest change);
    any other missing gene is drawn at random."""
    for d in space.dimensions():
        if d.label in genes or not space.is_active(d.label, genes):
            continue
        m = _LAYER_GENE.fullmatch(d.label)
        prev = f"{m['stage']}.l{int(m['layer']) - 1}.{m['name']}" if m and int(m["layer"]) > 0 else None
        genes[d.label] = genes[prev] if prev in genes else d.choices[int(rng.integers(len(d.choices)))]


def mutate_neighbour(space: SearchSpace, arch: Architecture, rng: np.random.Generator, n: int = 1) -> Architecture:
    """``arch`` with ``n`` distinct active genes each moved ONE step up or down in its ordered choices.

    BigNAS Sec. 4.4 mutates the skeleton "by randomly varying the input resolutions, depths, channels and kernel
    sizes slightly": one step in resolution (e.g. 224 -> 256), a stage's depth (+-1 layer), width (the next channel
    count) or a layer's kernel (3 <-> 5). A gene at either end of its choices moves inwards; both directions are
    equally likely otherwise. The paper does not say what a layer added by a deeper stage looks like; here it
    copies the stage's previous layer (:func:`_complete`). The choices of every gene must be ordered (BigNAS's
    tables are increasing; :class:`~nasforge.spaces.base.Dimension`). The result is valid and differs from ``arch``
    (retried up to ``space.max_tries`` times).
    """
    arch = space.validate(arch)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValue("n", n, "an int >= 1 (genes to move)")
    for _ in range(space.max_tries):
        genes, moved = arch.to_dict(), set()
        for _ in range(n):
            movable = [d for d in space.dimensions() if d.label in genes and d.label not in moved
                       and len(d.choices) > 1 and space.is_active(d.label, genes)]
            if not movable:
                break
            d = movable[int(rng.integers(len(movable)))]
            i = d.index(genes[d.label])
            steps = [j for j in (i - 1, i + 1) if 0 <= j < len(d.choices)]
            genes[d.label] = d.choices[steps[int(rng.integers(len(steps)))]]
            moved.add(d.label)
            _complete(space, genes, rng)
        try:
            child = space.make({k: v for k, v in genes.items() if space.is_active(k, genes)})
        except InvalidArchitecture:  # a space constraint (check) the step broke: try another
            continue
        if child != arch or space.cardinality() == 1:
            return child
    raise InvalidValue("mutate_neighbour", f"{space.max_tries} tries", "a space whose constraints can be satisfied",
                       where=f"space {space.name!r}")


def _check_mutation(mutation: Any) -> str:
    if mutation not in MUTATIONS:
        raise InvalidValue("mutation", mutation, MUTATIONS)
    return mutation


@dataclass(frozen=True)
class FineResult:
    """What :func:`fine_search` found: the best child within the budget, the skeleton it started from, every child
    it evaluated (skeleton first) and how many mutants it discarded for exceeding the budget."""

    best: Entry
    skeleton: Entry
    evaluated: list[Entry]
    rejected: int


def fine_search(evaluator: ChildEvaluator, skeleton: Architecture, budget: Budget | Any, n_mutations: int,
                rng: np.random.Generator, *, max_genes: int = 3, max_tries: int | None = None,
                mutation: str = "neighbour") -> FineResult:
    """The fine-grained phase of BigNAS (Sec. 3.2 / 4.4): random variations around a skeleton, within a budget.

    Each candidate changes ``n`` genes of the skeleton, ``n`` uniform in ``1..max_genes`` (resolution, a stage's
    depth or width, a layer's kernel...: "randomly varying the input resolutions, depths, channels and kernel sizes
    slightly"; the paper gives no count, 3 is our choice). ``mutation="neighbour"`` (default) moves each one step
    to a neighbouring choice (:func:`mutate_neighbour`); ``"any"`` redraws each to any other choice
    (``space.mutate``, the behaviour before issue 16). Duplicates are skipped; mutants over the budget are discarded without evaluation;
    ``n_mutations`` mutants within the budget are evaluated (fewer when ``max_tries``, default
    ``20 * n_mutations``, runs out). The skeleton is evaluated too, so the best is never worse than it. Ties go to
    the cheaper child, then to the earlier one.
    """
    if not isinstance(evaluator, ChildEvaluator):
        raise InvalidValue("evaluator", type(evaluator).__name__, "a ChildEvaluator")
    for name, v, low in (("n_mutations", n_mutations, 0), ("max_genes", max_genes, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InvalidValue(name, v, f"an int >= {low}")
    if not isinstance(rng, np.random.Generator):
        raise InvalidValue("rng", type(rng).__name__, "a numpy.random.Generator")
    _check_mutation(mutation)
    space = evaluator.space
    budget = Budget.coerce(budget, evaluator.largest_flops)
    skeleton = space.validate(skeleton)
    if not budget.satisfied(evaluator.costs(skeleton)):
        raise InvalidValue("skeleton", space.format(skeleton), f"an architecture within the budget {budget}")
    start = evaluator.entry(skeleton)
    evaluated, seen, rejected, best = [start], {skeleton.key()}, 0, start
    tries = 20 * n_mutations if max_tries is None else max_tries
    for _ in range(tries):
        if len(evaluated) > n_mutations:
            break
        n = int(rng.integers(1, max_genes + 1))
        if mutation == "neighbour":
            child = mutate_neighbour(space, skeleton, rng, n)
        else:
            child = space.mutate(skeleton, rng, n=n)
        if child.key() in seen:
            continue
        seen.add(child.key())
        if not budget.satisfied(evaluator.costs(child)):
            rejected += 1
            continue
        e = evaluator.entry(child)
        evaluated.append(e)
        if _rank(e) > _rank(best):
            best = e
    return FineResult(best=best, skeleton=start, evaluated=evaluated, rejected=rejected)


# ================================================================================================= coarse to fine
def _batches(data: "DataSplits | tuple[Iterable[Any], Iterable[Any]]", split: str, batch_size: int, seed: int,
             device: torch.device) -> tuple[Iterable[Any], Iterable[Any]]:
    """Calibration batches (the training split, shuffled with ``seed``, not augmented) and selection batches."""
    if isinstance(data, DataSplits):
        calib = Batches(data.train, batch_size, train=False, shuffle=True, transform=data.transform(), seed=seed,
                        device=device)
        return calib, data.loader(split, batch_size, train=False, device=device)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise InvalidValue("data", type(data).__name__, "a DataSplits or a (calib_batches, select_batches) pair")


def _shapes(supernet: nn.Module, space: SearchSpace, x: torch.Tensor, input_shape: InputShape | None,
            num_classes: int | None) -> tuple[InputShape, int]:
    """Input shape and classes: given, else the supernet's (``input_shape`` / ``num_classes``), else the batch's."""
    shape = input_shape or getattr(supernet, "input_shape", None) or tuple(int(s) for s in x.shape[1:])
    classes = num_classes or getattr(supernet, "num_classes", None)
    if classes is None:
        raise InvalidValue("num_classes", None, "a positive int (the supernet has no num_classes attribute)")
    return space.resolve_input(shape, classes)  # type: ignore[arg-type]


def _resolve_budgets(budgets: Sequence[Any], evaluator: ChildEvaluator) -> list[Budget]:
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Sequence) or not budgets:
        raise InvalidValue("budgets", budgets, "a non-empty list of budgets, e.g. [0.25, 0.5, 1.0] or [('flops', 2e6)]")
    out = [Budget.coerce(b, evaluator.largest_flops) for b in budgets]
    for b in out:
        if b.cost not in evaluator.cost_names:
            raise InvalidValue("budget cost", b.cost, evaluator.cost_names)
    if len({b.cost for b in out}) > 1:
        raise InvalidValue("budgets", sorted({b.cost for b in out}), "budgets on a single cost (to order S, M, L...)")
    return sorted(out, key=lambda b: b.max)


def coarse_to_fine(supernet: nn.Module, space: BigNASSpace, data: "DataSplits | tuple[Iterable[Any], Iterable[Any]]",
                   budgets: Sequence[Any], *, seed: int, n_fine: int = 20, max_genes: int = 3,
                   select_split: str = "val", calib_steps: int = 20, batch_size: int = 64,
                   max_batches: int | None = None, device: str | torch.device = "cpu",
                   input_shape: InputShape | None = None, num_classes: int | None = None,
                   latency: Any = None, grid: Mapping[str, Any] | None = None,
                   progress: bool = False, mutation: str = "neighbour") -> Family:
    """BigNAS's coarse-to-fine selection (Sec. 3.2 / 4.4): one family member per budget.

    ``data`` is a :class:`~nasforge.data.load.DataSplits` (calibration on ``calib_steps`` shuffled, un-augmented
    training batches of ``batch_size``; selection by accuracy on ``select_split``, default ``"val"``: see the module
    docstring) or a ``(calib_batches, select_batches)`` pair. ``budgets``: see :meth:`Budget.coerce` (``(cost, max)``
    on ``flops`` / ``params`` / ``latency_ms``, or fractions of the largest child's FLOPs); all on one cost;
    ``latency_ms`` needs ``latency`` (:class:`ChildEvaluator`: measured or from a lookup table). The
    coarse grid (:func:`coarse_grid`, ``grid`` = its keyword arguments) is benchmarked in full; for every budget the
    most accurate skeleton within it seeds :func:`fine_search` with ``n_fine`` mutants of up to ``max_genes`` genes
    each, moved to neighbouring choices (``mutation="neighbour"``, Sec. 4.4 "slightly") or redrawn (``"any"``).
    ``seed`` fixes the calibration batches and the mutations.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidValue("seed", seed, "an int >= 0")
    _check_mutation(mutation)
    calib_seq, fine_seq = np.random.SeedSequence(seed).spawn(2)
    dev = resolve_device(device)
    calib_src, select = _batches(data, select_split, batch_size, int(calib_seq.generate_state(1)[0]), dev)
    evaluator = ChildEvaluator(supernet, space, calib_src, select, calib_steps=calib_steps, device=dev,
                               input_shape=input_shape, num_classes=num_classes, latency=latency,
                               max_batches=max_batches)
    ordered, names = _resolve_budgets(budgets, evaluator), member_names(len(budgets))
    skeletons = coarse_grid(space, **dict(grid or {}))
    for name, budget in zip(names, ordered):  # analytic costs first: fail before any evaluation
        cheapest = min(float(evaluator.costs(a)[budget.cost]) for a in skeletons)
        if cheapest > budget.max:
            raise InvalidValue(f"budget {name}", str(budget), f"{budget.cost} >= {cheapest:g} (the cheapest skeleton)")
    coarse = [evaluator.entry(a) for a in tqdm(skeletons, desc="coarse", disable=not progress, leave=False)]
    rng, members = np.random.default_rng(fine_seq), []
    for name, budget in zip(names, ordered):
        skeleton = max((e for e in coarse if budget.satisfied(e.costs)), key=_rank)
        fine = fine_search(evaluator, skeleton.arch, budget, n_fine, rng, max_genes=max_genes, mutation=mutation)
        members.append(Member(name, budget, fine.best, fine.skeleton, len(fine.evaluated) - 1))
    info = {"seed": seed, "select_split": select_split if not isinstance(data, (tuple, list)) else "given",
            "calib_steps": len(evaluator.calib), "batch_size": batch_size, "n_fine": n_fine, "max_genes": max_genes,
            "mutation": mutation,
            "input_shape": evaluator.cost_model.input_shape, "num_classes": evaluator.cost_model.num_classes,
            "evaluated": evaluator.evaluated,
            "largest_flops": evaluator.largest_flops, "grid": dict(grid or {})}
    return Family(space.name, coarse, members, json.loads(json.dumps(info)))  # tuples -> lists, as stored


# ================================================================================================= export
@dataclass(frozen=True)
class ExportResult:
    """Files written by :func:`export_member` (kind -> path), the state dict's SHA-256 and the ONNX parity (max
    abs difference between ONNX Runtime and PyTorch; ``None`` without ONNX)."""

    files: dict[str, str]
    sha256: str
    onnx_max_abs_diff: float | None = None


def _space_kwargs(space: SearchSpace) -> dict[str, Any] | None:
    """Constructor arguments rebuilding the space's networks: a non-default BigNAS table
    (``get_space("bignas", **kwargs)``), or NB201's ``C`` / ``N`` (op sets do not change a network)."""
    if isinstance(space, NB201Space):
        return {"C": space.C, "N": space.N}
    if not isinstance(space, BigNASSpace):
        return None
    kwargs = {"stages": space.stages, "resolutions": space.resolutions, "stem_widths": space.stem_widths,
              "head_widths": space.head_widths, "transition_skip": getattr(space, "transition_skip", True)}
    default = get_space("bignas")
    return None if all(getattr(default, k, True) == v for k, v in kwargs.items()) else kwargs


def export_member(supernet: nn.Module, arch: Architecture, out_dir: str | Path, *, space: SearchSpace,
                  calib_batches: Iterable[Any], calib_steps: int = 20, input_shape: InputShape | None = None,
                  onnx: bool | None = None, device: str | torch.device = "cpu", atol: float = 1e-4,
                  meta: Mapping[str, Any] | None = None, space_kwargs: Mapping[str, Any] | None = None
                  ) -> ExportResult:
    """Slice the child ``arch`` out of the supernet for deployment (BigNAS Sec. 3: no retraining or fine-tuning).

    ``supernet.extract(arch)``, then BN re-calibration of the extracted module on the first ``calib_steps`` batches
    (Sec. 3.1; the same statistics as calibrating the activated child), then :func:`nasforge.export.export_model`
    writes ``model.pt`` (the state dict of ``space.build(arch, input_shape, num_classes)``), ``arch.json``,
    ``meta.json`` and, with ``onnx`` (``None``: when onnxruntime is installed), ``model.onnx`` whose outputs on up
    to 8 calibration images must match PyTorch's within ``atol`` (InvalidValue otherwise, file removed).
    ``input_shape`` defaults to the batches'; ``space_kwargs`` to the table of a non-default BigNAS space.
    """
    _check_supernet(supernet)
    arch = space.validate(arch)
    dev = resolve_device(device)
    calib = take_batches(calib_batches, calib_steps, "calibration batches")
    x = _x(calib[0])[:8].detach().cpu()
    shape = _shapes(supernet, space, x, input_shape, 1)[0]
    child = supernet.extract(arch).to(dev)
    calibrate_bn(child, calib, len(calib), dev)
    files = export_model(child, arch, out_dir, input_shape=shape, example_input=x.float(), onnx=onnx,
                         meta={**dict(meta or {}), "calib_steps": len(calib), "source": "supernet child"},
                         space_kwargs=_space_kwargs(space) if space_kwargs is None else space_kwargs)
    info = json.loads(Path(files["meta"]).read_text(encoding="utf-8"))
    diff = info["onnx"].get("max_abs_diff")
    if diff is not None and not diff <= atol:
        Path(files.pop("onnx")).unlink(missing_ok=True)
        raise InvalidValue("model.onnx max |torch - onnxruntime|", diff, f"<= {atol:g}")
    return ExportResult(files, info["sha256"][Path(files["model"]).name], diff)
