"""Lottery-ticket magnitude pruning (Frankle & Carbin 2019) and path-level pruning of architecture parameters.

Both LNAS variants (lnas.txt Sec. 3, Algorithms 1-3) prune "p^(1/n)" per round for ``n`` rounds to a sparsity
``p``. Read literally (prune the fraction ``p^(1/n)`` every round) the final sparsity would be ``1 - (1 -
p^(1/n))^n`` (0.99 for p = 0.5, n = 3), not ``p``; the rounds of Frankle & Carbin, which LNAS follows, remove a
fixed fraction of the *surviving* weights so that ``n`` rounds reach ``p``. Here every round keeps
``(1 - p)^(1/n)`` of the survivors (:func:`round_keep_fraction`), so after round ``r`` the sparsity is
``1 - (1 - p)^(r/n)`` and after ``n`` rounds exactly ``p`` (up to rounding to whole weights).

* **weights** (variant 1): :func:`magnitude_prune` removes the smallest-magnitude surviving weights of every
  ``Conv2d`` / ``Linear`` weight *globally* (one threshold across layers) with :func:`torch.nn.utils.prune.
  global_unstructured` (L1); masks are torch's ``weight_mask`` buffers, so the pruned weights stay zero while the
  network trains. :func:`rewind` resets the survivors (and every other parameter and buffer) to ``theta_0``
  (step 4 of the winning-ticket procedure); :func:`finalize` bakes the masks in (a plain state dict with zeros).
* **architecture parameters** (variant 2, path-level, ProxylessNAS-style): :func:`prune_alphas` masks the
  candidate operations of smallest *softmax weight* (path probability; the raw alpha of a softmax has no
  meaningful magnitude since adding a constant to an edge's alphas changes nothing), globally over edges, never
  the last surviving operation of an edge; :func:`alpha_prune_counts` gives the cumulative number masked after
  each round.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from ..errors import InvalidValue

__all__ = ["round_keep_fraction", "prunable_weights", "magnitude_prune", "weight_masks", "apply_masks", "rewind",
           "finalize", "refresh_masked", "weight_sparsity", "iterative_magnitude_pruning", "alpha_prune_counts",
           "prune_alphas"]


def _check(sparsity: float, rounds: int) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1:
        raise InvalidValue("sparsity", sparsity, "a number in (0, 1)")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InvalidValue("rounds", rounds, "an int >= 1")


def round_keep_fraction(sparsity: float, rounds: int) -> float:
    """Fraction of the surviving weights each of ``rounds`` rounds keeps to reach ``sparsity``: ``(1-p)^(1/n)``."""
    _check(sparsity, rounds)
    return (1.0 - sparsity) ** (1.0 / rounds)


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` of every ``Conv2d`` and ``Linear`` (BatchNorm affine terms and biases stay dense)."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def magnitude_prune(model: nn.Module, amount: float) -> None:
    """Prune the fraction ``amount`` of the surviving prunable weights with the smallest magnitude, globally."""
    if not 0 <= amount < 1:
        raise InvalidValue("amount", amount, "a fraction in [0, 1)")
    torch_prune.global_unstructured(prunable_weights(model), pruning_method=torch_prune.L1Unstructured,
                                    amount=float(amount))


def _named_prunable(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def weight_masks(model: nn.Module) -> dict[str, Tensor]:
    """``{"<module>.weight": bool mask}`` of every prunable weight (all true where nothing is pruned)."""
    out = {}
    for name, m in _named_prunable(model).items():
        mask = getattr(m, "weight_mask", None)
        out[f"{name}.weight"] = (mask != 0) if mask is not None else torch.ones_like(m.weight, dtype=torch.bool)
    return {k: v.detach().cpu().clone() for k, v in out.items()}


def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Install ``masks`` (from :func:`weight_masks`) as torch pruning masks, replacing any present."""
    modules = _named_prunable(model)
    unknown = sorted(set(masks) - {f"{n}.weight" for n in modules})
    if unknown:
        raise InvalidValue("masks", unknown[0], "the weight of a Conv2d / Linear of the model")
    for key, mask in masks.items():
        m = modules[key[: -len(".weight")]]
        if torch_prune.is_pruned(m) and hasattr(m, "weight_mask"):
            torch_prune.remove(m, "weight")
        torch_prune.custom_from_mask(m, "weight", mask.to(m.weight.device))


def rewind(model: nn.Module, theta0: Mapping[str, Tensor]) -> None:
    """Reset every parameter and buffer to ``theta0`` (a plain state dict of the unpruned model); the masks stay,
    so the network is ``f(M * theta_0)`` (the winning ticket's initialisation)."""
    state = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if key.endswith("weight_mask"):
                continue
            source = key[: -len("_orig")] if key.endswith("weight_orig") else key
            if source not in theta0:
                raise InvalidValue("theta0", source, "a state dict of the same (unpruned) network")
            value.copy_(theta0[source])
    refresh_masked(model)


def refresh_masked(model: nn.Module) -> None:
    """Recompute ``weight = weight_orig * weight_mask`` of pruned modules now (torch does it before each forward;
    until then ``module.weight`` would show the values before a rewind), detached: the module can then be
    deep-copied (the next forward recomputes it with its graph)."""
    with torch.no_grad():
        for m, name in prunable_weights(model):
            if hasattr(m, f"{name}_orig") and hasattr(m, f"{name}_mask"):
                setattr(m, name, getattr(m, f"{name}_orig") * getattr(m, f"{name}_mask"))


def finalize(model: nn.Module) -> nn.Module:
    """Make the pruning permanent: every pruned weight becomes a plain parameter with zeros. Returns ``model``."""
    for m, name in prunable_weights(model):
        if torch_prune.is_pruned(m) and hasattr(m, f"{name}_mask"):
            torch_prune.remove(m, name)
    return model


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of zero elements over all prunable weights (through masks)."""
    refresh_masked(model)
    weights = [m.weight.detach() for m, _ in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(1, total)


def iterative_magnitude_pruning(model: nn.Module, theta0: Mapping[str, Tensor], train_round: Callable[[int], None],
                                sparsity: float, rounds: int, *, start_round: int = 0,
                                on_round: Callable[[int, dict[str, Tensor]], None] | None = None) -> list[float]:
    """LNAS variant 1 / lottery tickets: ``rounds`` times {``train_round(r)``; prune the smallest
    ``1 - (1-p)^(1/n)`` of the surviving weights; rewind the survivors to ``theta0``}. The final training of the
    ticket (``train_round(rounds)``) is the caller's. ``start_round`` / ``on_round(r, masks)`` (called after the
    rewind of round ``r``) let a caller checkpoint and resume between rounds. Returns the sparsity after each
    round done here."""
    keep = round_keep_fraction(sparsity, rounds)
    history = []
    for r in range(start_round, rounds):
        train_round(r)
        magnitude_prune(model, 1.0 - keep)
        rewind(model, theta0)
        history.append(weight_sparsity(model))
        if on_round is not None:
            on_round(r, weight_masks(model))
    return history


def alpha_prune_counts(total: int, rows: int, sparsity: float, rounds: int) -> list[int]:
    """Cumulative architecture parameters masked after rounds ``1..rounds`` of variant 2: ``round(total * (1 -
    (1-p)^(r/n)))``, capped so every one of ``rows`` edges keeps an operation."""
    keep = round_keep_fraction(sparsity, rounds)
    return [min(total - rows, int(round(total * (1.0 - keep ** r)))) for r in range(1, rounds + 1)]


def prune_alphas(scores: Tensor, mask: Tensor, count: int) -> Tensor:
    """A new mask with ``count`` more entries of ``scores`` (edges x operations) masked: the unmasked ones of
    smallest score, globally, skipping an edge's last surviving operation (ties: lower index first)."""
    if scores.shape != mask.shape or scores.dim() != 2:
        raise InvalidValue("scores shape", list(scores.shape), f"{list(mask.shape)} (edges x operations)")
    new = mask.clone()
    alive = new.sum(dim=1)
    order = sorted(((float(scores[i, j]), i, j) for i, j in new.nonzero().tolist()), key=lambda t: (t[0], t[1], t[2]))
    done = 0
    for _, i, j in order:
        if done >= count:
            break
        if alive[i] > 1:
            new[i, j] = False
            alive[i] -= 1
            done += 1
    return new
