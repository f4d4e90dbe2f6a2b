"""MENAS lottery tickets: channel-pruning proposals of a trained network, ranked after BN re-calibration.

MENAS (Wei et al.), "Overview" step 2 and "Exploring Lottery Tickets". For each network trained with an early stop:

(a) generate ``k`` (40) pruning proposals, each "a non-uniform pruning strategy" ``(p_1, ..., p_n)`` with one
    keep-rate per prunable layer (Table 1: 0.7 to 0.975 in steps of 0.025), deriving "a new architecture with
    reduced computation complexity" -- :func:`pruning_proposals`;
(b) initialise each pruned network from the trained weights, "truncated from the low index for slimmed layers"
    (Eq. 1) -- a :class:`~nasforge.prune.view.PrunedView` of the trained network, built once, whose tensors are
    re-pointed at each proposal's leading slices in place; the kept tickets get real networks
    (:func:`~nasforge.prune.inherit.inherit_weights`);
(c) "re-calibrate the BN statistics by forward-propagating training data for a few iterations", with "the
    trainable parameters ... fixed" -- :func:`nasforge.train.calibrate_bn`;
(d) "rank newly pruned architectures by inference accuracy and select the top-2" -- :func:`explore_lottery_tickets`.

Step (e), fine-tuning the tickets for 3 epochs, is the caller's: :attr:`LotteryResult.networks` holds the
truncated and calibrated ticket networks to fine-tune from. The paper stresses that this exploration is cheap
because "back-propagation is not included"; :attr:`LotteryResult.timings` records where the time goes and how
many images went through calibration and ranking, so it can be compared with training time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..arch import Architecture
from ..device import resolve_device
from ..errors import DataError, InvalidValue
from ..nn.analytic import spec_flops, spec_params
from ..spaces.base import SearchSpace
from ..spaces.mbconv_common import pruned_channels
from ..spaces.mobilenet import PRUNE_RATES
from ..train.bn import calibrate_bn
from ..train.loop import evaluate
from .inherit import check_state_matches, empty_network, inherit_weights
from .view import PrunedView

__all__ = ["pruning_proposals", "explore_lottery_tickets", "LotteryResult", "Ticket", "PROPOSAL_RATES",
           "PROPOSALS", "TICKETS", "CALIB_STEPS"]

#: MENAS Table 1 pruning rates without 1.0 (unpruned): the keep-rates a proposal draws from.
PROPOSAL_RATES: tuple[float, ...] = tuple(r for r in PRUNE_RATES if r < 1.0)
#: MENAS "Experimental Details": "for each model, we generate 40 pruning proposals, from which 2 Lottery
#: Tickets are selected".
PROPOSALS, TICKETS = 40, 2
#: MENAS step (c) says "a few iterations" without a number; 20 batches is our default.
CALIB_STEPS = 20
#: above this many distinct proposals the draw is by rejection instead of sampling flat indices
_FLAT_LIMIT = 2 ** 62


class Ticket(NamedTuple):
    """One pruned architecture with its rank accuracy (%, after BN re-calibration) and analytic costs."""

    arch: Architecture
    accuracy: float
    flops: int
    params: int


@dataclass
class LotteryResult:
    """What :func:`explore_lottery_tickets` found.

    ``tickets``: the ``top_k`` best proposals, best first (ties: fewer FLOPs first); ``networks``: their truncated
    and re-calibrated networks, same order (MENAS step (e) fine-tunes these); ``proposals``: every proposal with
    its accuracy, in proposal order; ``timings``: ``truncate_s`` (Eq. 1: building the pruned view once,
    re-pointing it per proposal, and building the ``top_k`` ticket networks), ``calibrate_s`` (BN re-calibration), ``rank_s`` (inference on the rank batches), ``total_s``
    (the whole call), ``calib_images`` / ``rank_images`` (images forwarded, all proposals together).
    """

    parent: Architecture
    tickets: list[Ticket]
    proposals: list[Ticket]
    timings: dict[str, float]
    networks: list[nn.Module] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (architectures as JSON objects) for a trial's ``info``."""
        def row(t: Ticket) -> dict[str, Any]:
            return {"arch": t.arch.to_dict(), "accuracy": t.accuracy, "flops": t.flops, "params": t.params}

        return {"parent": self.parent.to_dict(), "tickets": [row(t) for t in self.tickets],
                "proposals": [row(t) for t in self.proposals], "timings": dict(self.timings)}


# ============================================================================================== (a) proposals
def _check_space(space: Any) -> None:
    if not isinstance(space, SearchSpace) or not all(callable(getattr(space, m, None)) for m in
                                                     ("prunable_layers", "with_pruning", "layer_modules", "spec")):
        raise InvalidValue("space", getattr(space, "name", type(space).__name__),
                           "a space with channel pruning (prunable_layers / with_pruning), e.g. menas-mt")


def _check_rates(rates: Any) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in rates)
    except (TypeError, ValueError):
        values = ()
    if not values or not all(0.0 < r <= 1.0 for r in values):
        raise InvalidValue("rates", rates, "a non-empty sequence of keep-rates in (0, 1]")
    return tuple(sorted(set(values), reverse=True))


def _gene(dims: dict[str, tuple], arch: Architecture, label: str) -> Any:
    """A gene's value, or the only choice of a fixed (hence absent) dimension."""
    value = arch.get(label)
    return dims[label][0] if value is None else value


def _layer_options(space: SearchSpace, arch: Architecture, rates: tuple[float, ...]) -> list[list[float]]:
    """Per prunable layer, one keep-rate per distinct width it can be pruned to, widest (the current rate) first.

    A rate is allowed when the space allows it for the layer and it narrows the layer (MENAS only prunes)."""
    dims = {d.label: d.choices for d in space.dimensions()}
    blocks = space.spec(arch).blocks
    index = {lid: int(prefix.rsplit(".", 1)[1]) for lid, prefix in space.layer_modules(arch).items()}
    options = []
    for lid in space.prunable_layers(arch):
        block = blocks[index[lid]]
        full = block.in_ch * _gene(dims, arch, f"{lid}.expand")
        widths: dict[int, float] = {block.mid_ch: _gene(dims, arch, f"{lid}.prune")}
        for r in rates:
            rate = next((c for c in dims[f"{lid}.prune"] if abs(c - r) < 1e-9), None)  # the space's own value
            if rate is not None and pruned_channels(full, rate) < block.mid_ch:
                widths.setdefault(pruned_channels(full, rate), rate)
        options.append([widths[m] for m in sorted(widths, reverse=True)])
    return options


def _draw_indices(radix: list[int], k: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Up to ``k`` distinct option-index vectors (mixed radix ``radix``), never the all-zero (unpruned) one,
    uniformly without replacement."""
    total = math.prod(radix) - 1
    n = min(k, total)
    if n <= 0:
        return []
    if total <= _FLAT_LIMIT:
        flats = [int(f) + 1 for f in rng.choice(total, size=n, replace=False)]
    else:  # astronomically many: collisions are practically impossible, reject them anyway
        seen: set[int] = set()
        flats = []
        while len(flats) < n:
            digits = [int(rng.integers(r)) for r in radix]
            flat = 0
            for d, r in zip(digits, radix):
                flat = flat * r + d
            if flat and flat not in seen:
                seen.add(flat)
                flats.append(flat)
    out = []
    for flat in flats:
        digits = []
        for r in reversed(radix):
            flat, d = divmod(flat, r)
            digits.append(d)
        out.append(tuple(reversed(digits)))
    return out


def pruning_proposals(space: SearchSpace, arch: Architecture, k: int, rng: np.random.Generator,
                      rates: Sequence[float] = PROPOSAL_RATES) -> list[Architecture]:
    """MENAS step (a): ``k`` distinct pruning proposals of ``arch``, each with strictly fewer FLOPs.

    A proposal sets one keep-rate per layer of ``space.prunable_layers(arch)`` (a non-uniform pruning vector,
    built with ``space.with_pruning``). Each layer either keeps its current width or takes a rate from
    ``rates`` (default: Table 1's 0.7-0.975) that the space allows for it and that narrows it; rates above the
    current one are never drawn (pruning only removes channels, Eq. 1). Several rates can give the same channel
    count, so the draw is uniform over the distinct pruned *networks* (one rate per distinct width), without
    replacement; the unpruned network itself is excluded.

    Returns fewer than ``k`` proposals when the space holds fewer distinct ones (all of them, in random order):
    none when ``arch`` has no prunable layer (every expand ratio 1) or every layer is already at its narrowest.
    """
    _check_space(space)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidValue("k", k, "an int >= 1 (number of pruning proposals)")
    if not isinstance(rng, np.random.Generator):
        raise InvalidValue("rng", type(rng).__name__, "a numpy.random.Generator (np.random.default_rng(seed))")
    arch = space.validate(arch)
    options = _layer_options(space, arch, _check_rates(rates))
    base_flops = space.flops(arch)
    out: list[Architecture] = []
    for digits in _draw_indices([len(o) for o in options], k, rng):
        proposal = space.with_pruning(arch, [o[d] for o, d in zip(options, digits)])
        if proposal != arch and proposal not in out and space.flops(proposal) < base_flops:
            out.append(proposal)
    return out


# ============================================================================================== (b)-(d) explore
def _take(batches: Iterable[Any], limit: int | None, device: torch.device, where: str,
          labels: bool) -> list[Any]:
    """The first ``limit`` batches moved to ``device`` once, so every proposal sees the same ones."""
    out: list[Any] = []
    try:
        it = iter(batches)
    except TypeError:
        raise InvalidValue(where, type(batches).__name__, "an iterable of (x, y) batches") from None
    for batch in it:
        if limit is not None and len(out) >= limit:
            break
        if labels:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise DataError(f"{where}: got a batch of type {type(batch).__name__}; expected (x, y) tensor pairs")
            out.append((batch[0].to(device), batch[1].to(device)))
        else:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(x, Tensor):
                raise DataError(f"{where}: got {type(x).__name__}; expected float tensors or (x, y) pairs")
            out.append(x.to(device))
    if not out:
        raise DataError(f"{where}: got no batches; expected at least 1")
    return out


def _check_counts(k: Any, top_k: Any, calib_steps: Any, rank_steps: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidValue("k", k, "an int >= 1 (number of pruning proposals)")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= k:
        raise InvalidValue("top_k", top_k, f"an int in [1, k={k}]")
    if isinstance(calib_steps, bool) or not isinstance(calib_steps, int) or calib_steps < 1:
        raise InvalidValue("calib_steps", calib_steps, "an int >= 1 (BN re-calibration batches)")
    if rank_steps is not None and (isinstance(rank_steps, bool) or not isinstance(rank_steps, int) or rank_steps < 1):
        raise InvalidValue("rank_steps", rank_steps, "an int >= 1 or None (all rank batches)")


def _pruned_network(space: SearchSpace, parent: Architecture, proposal: Architecture,
                    parent_state: dict[str, Tensor], shape: tuple[int, int, int], classes: int,
                    device: torch.device) -> nn.Module:
    """Step (b): the pruned network, every tensor truncated from the parent's (Eq. 1); built without drawing
    an initialisation, since all of it is overwritten."""
    net = empty_network(space, proposal, shape, classes, device)
    report = inherit_weights(net, parent_state, child_layers=space.layer_modules(proposal),
                             parent_layers=space.layer_modules(parent))
    uncovered = sorted(n for n, kind in report.items() if kind not in ("copy", "truncate"))
    if uncovered:
        raise InvalidValue(f"pruned tensor {uncovered[0]}", report[uncovered[0]],
                           "'copy' or 'truncate' (a pruning proposal only narrows layers)")
    return net.eval()


@torch.no_grad()
def _top1(net: nn.Module, ranked: Sequence[tuple[Tensor, Tensor]]) -> float:
    """Top-1 accuracy (%) of ``net`` in eval mode on batches already on its device (as ``evaluate`` counts it)."""
    net.eval()
    correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in ranked)
    return 100.0 * correct / sum(int(y.shape[0]) for _, y in ranked)


def explore_lottery_tickets(model: nn.Module, space: SearchSpace, arch: Architecture, *,
                            input_shape: tuple[int, int, int], num_classes: int, calib_batches: Iterable[Any],
                            rank_batches: Iterable[Any], k: int = PROPOSALS, top_k: int = TICKETS,
                            calib_steps: int = CALIB_STEPS, rank_steps: int | None = None,
                            rng: np.random.Generator, device: str | torch.device = "cpu") -> LotteryResult:
    """MENAS steps (a)-(d): the ``top_k`` lottery tickets among ``k`` pruning proposals of trained ``model``.

    ``model`` must be the network ``space.build(arch, input_shape, num_classes)`` makes (checked by tensor names
    and shapes); it is only read. For each proposal of :func:`pruning_proposals`: point a once-built
    :class:`~nasforge.prune.view.PrunedView` of ``model`` on ``device`` at the proposal (every tensor the leading
    slice Eq. 1 keeps, views, no network rebuilt or copied), re-calibrate its BN statistics on
    the first ``calib_steps`` batches of ``calib_batches`` (training data; parameters untouched), then measure
    its top-1 accuracy on ``rank_batches`` (held-out ``(x, y)`` batches, the first ``rank_steps`` of them). Both
    batch sets are read once and reused for every proposal, so all proposals are ranked on the same images.
    No gradients are computed and the networks run in eval mode (BN in train mode only while calibrating).
    Only the ``top_k`` tickets get a real network (:attr:`LotteryResult.networks`: built by Eq. 1 truncation,
    with the BN statistics of their re-calibration).
    """
    _check_space(space)
    _check_counts(k, top_k, calib_steps, rank_steps)
    t_start = time.perf_counter()
    dev = resolve_device(device)
    arch = space.validate(arch)
    shape, classes = space.resolve_input(input_shape, num_classes)
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    parent_state = model.state_dict()
    check_state_matches(parent_state, space, arch, shape, classes, field="model")
    proposals = pruning_proposals(space, arch, k, rng)
    calib = _take(calib_batches, calib_steps, dev, "calib_batches", labels=False)
    ranked = _take(rank_batches, rank_steps, dev, "rank_batches", labels=True)
    times = {"truncate_s": 0.0, "calibrate_s": 0.0, "rank_s": 0.0}
    images = {"calib_images": 0, "rank_images": 0}
    tickets: list[Ticket] = []
    best: list[tuple[Ticket, dict[str, Tensor]]] = []  # the current top_k with their calibrated BN buffers
    t0 = time.perf_counter()
    view = PrunedView(model, space, arch, shape, classes, dev)
    buffers = {name for name, _ in view.net.named_buffers()}
    times["truncate_s"] += time.perf_counter() - t0
    with torch.no_grad():
        for proposal in proposals:
            t0 = time.perf_counter()
            net = view.set(proposal)
            t1 = time.perf_counter()
            used = calibrate_bn(net, calib, calib_steps, dev)
            t2 = time.perf_counter()
            # the first proposal through evaluate (which checks the batches against the model once), the rest
            # through the same top-1 count without that probe forward
            accuracy = _top1(net, ranked) if tickets else evaluate(net, ranked, dev)["accuracy"]
            t3 = time.perf_counter()
            times["truncate_s"] += t1 - t0
            times["calibrate_s"] += t2 - t1
            times["rank_s"] += t3 - t2
            images["calib_images"] += sum(int(x.shape[0]) for x in calib[:used])
            images["rank_images"] += sum(int(y.shape[0]) for _, y in ranked)
            # the analytic costs of the spec the view already holds (= space.flops / space.params of the proposal)
            ticket = Ticket(proposal, float(accuracy), int(spec_flops(net.spec)), int(spec_params(net.spec)))
            tickets.append(ticket)
            rank = (-ticket.accuracy, ticket.flops)
            if len(best) < top_k or rank < (-best[-1][0].accuracy, best[-1][0].flops):
                stats = {k: v.clone() for k, v in net.state_dict().items() if k in buffers}
                best.append((ticket, stats))
                best.sort(key=lambda ts: (-ts[0].accuracy, ts[0].flops))  # stable: earlier proposals win full ties
                del best[top_k:]
        # step (e)'s networks: real pruned networks (Eq. 1 truncation) for the kept tickets only, with the BN
        # statistics of their re-calibration above
        t0 = time.perf_counter()
        networks = []
        for ticket, stats in best:
            net = _pruned_network(space, arch, ticket.arch, parent_state, shape, classes, dev)
            net.load_state_dict(stats, strict=False)
            networks.append(net)
        times["truncate_s"] += time.perf_counter() - t0
    timings = {**times, "total_s": time.perf_counter() - t_start,
               **images, "proposals": len(proposals)}
    return LotteryResult(parent=arch, tickets=[t for t, _ in best], proposals=tickets, timings=timings,
                         networks=networks)
