"""Differentiable architecture search (DARTS, Liu et al. 2019), as restated in lnas.txt Sec. 2 (Eqs. 4-6) and
used by both LNAS variants (Algorithms 1-3, step 1-2 of the search).

The bi-level problem (lnas.txt Eq. 5) ``min_alpha L_val(theta*(alpha), alpha)`` s.t. ``theta* = argmin L_train``
is solved by alternating, on every step, one update of the architecture parameters ``alpha`` on a batch of the
*validation half* and one update of the weights ``theta`` on a batch of the *training half* of the training data
(:func:`split_search_data`, ``train_portion`` 0.5):

* **first order** (``order: 1``): ``grad_alpha L_val(theta, alpha)`` (theta* approximated by the current theta);
* **second order** (``order: 2``, the unrolled Eq. 6): ``grad_alpha L_val(theta', alpha)`` with ``theta' = theta
  - xi grad_theta L_train(theta, alpha)`` (``xi`` = the current weight learning rate). By the chain rule this is
  ``grad_alpha L_val(theta', alpha) - xi * grad^2_{alpha,theta} L_train(theta, alpha) . grad_theta' L_val(theta',
  alpha)``; the Hessian-vector product is the central finite difference ``(grad_alpha L_train(theta+, alpha) -
  grad_alpha L_train(theta-, alpha)) / (2 eps)``, ``theta+- = theta +- eps v``, ``eps = 0.01 / ||v||`` (DARTS
  Sec. 2.3). :func:`unrolled_alpha_grad` computes it; its virtual step is Eq. 6 as written (plain gradient, no
  momentum or weight decay in ``theta'``).

Optimisers (lnas.txt Sec. 5.1 / DARTS Sec. 3.1.1): weights by SGD (momentum 0.9, weight decay 3e-4, learning
rate 0.025 cosine-annealed per epoch to ``learning_rate_min``, batch 64, gradient norm clipped at 5); alpha by
Adam (3e-4, betas (0.5, 0.999), weight decay 1e-3). During an architecture step BatchNorm running statistics are
frozen (:func:`~nasforge.supernet.train.frozen_bn_stats`), so the extra forward passes of the unrolled gradient
leave them as the weight steps made them.

:class:`DifferentiableSearch` runs the epochs into a folder: ``search.pt`` (checkpoint at every epoch end:
weights, alpha, path mask, optimisers, scheduler, history; a killed run resumes from the last finished epoch) and
``alpha_history.json`` (per epoch: losses, accuracies, learning rate, ``softmax(alpha)`` per edge, the path mask
and the derived architecture). ``after_epoch(epoch, net)`` runs at every epoch end before the checkpoint (LNAS
variant 2 prunes alpha there); what it returns is added to the epoch's row.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data import Batches, split_indices
from ..errors import InvalidValue
from ..io import CheckpointError, load_checkpoint, save_checkpoint, write_json
from ..schema import ConfigModel
from .train import derived_seed, frozen_bn_stats

__all__ = ["DartsSearchConfig", "split_search_data", "unrolled_alpha_grad", "first_order_alpha_grad",
           "DifferentiableSearch", "SearchOutcome", "run_differentiable_search", "SEARCH_CHECKPOINT",
           "ALPHA_HISTORY"]

SEARCH_CHECKPOINT, ALPHA_HISTORY = "search.pt", "alpha_history.json"
FORMAT = "nasforge.darts-search/1"


class DartsSearchConfig(ConfigModel):
    """The DARTS search hyper-parameters under DARTS' own names (defaults: lnas.txt Sec. 5.1 and DARTS Sec. 3.1.1;
    ``epochs`` 10 as LNAS searched). ``order``: 1 (first-order) or 2 (unrolled Eq. 6). ``unrolled_eps``: the
    finite-difference scale 0.01 (``eps = unrolled_eps / ||v||``)."""

    order: Literal[1, 2] = 1
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(0.025, gt=0)
    learning_rate_min: float = Field(0.001, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    arch_learning_rate: float = Field(3e-4, gt=0)
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = Field(1e-3, ge=0)
    train_portion: float = Field(0.5, gt=0, lt=1)
    unrolled_eps: float = Field(0.01, gt=0)
    steps_per_epoch: int | None = Field(None, ge=1)


def split_search_data(train: Any, train_portion: float, seed: int) -> tuple[Any, Any]:
    """The training split cut in two (stratified, seeded): ``train_portion`` for the weights, the rest (the
    "validation" data of Eq. 5) for alpha. Both must hold at least one example."""
    n = len(train)
    n_val = n - int(round(n * train_portion))
    if n_val < 1 or n_val >= n:
        raise InvalidValue("train_portion", train_portion, f"a fraction leaving both halves non-empty (of {n})")
    val_idx, train_idx = split_indices(train.labels, [n_val], np.random.default_rng(derived_seed(seed, 20)))
    return train.subset(train_idx, "search-train"), train.subset(val_idx, "search-val")


def _grads(loss: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def first_order_alpha_grad(net: nn.Module, loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor],
                           val: tuple[Tensor, Tensor]) -> list[Tensor]:
    """``grad_alpha L_val(theta, alpha)`` (first-order DARTS)."""
    return _grads(loss_fn(net, *val), net.arch_parameters())


def unrolled_alpha_grad(net: nn.Module, loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor],
                        train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], xi: float,
                        eps_scale: float = 0.01) -> list[Tensor]:
    """The second-order DARTS gradient of alpha (module docstring; lnas.txt Eq. 6). The weights of ``net`` are
    modified in place for the virtual step and the finite differences and restored exactly at the end."""
    weights, alphas = net.weight_parameters(), net.arch_parameters()
    backup = [w.detach().clone() for w in weights]
    try:
        g_train = _grads(loss_fn(net, *train), weights)
        with torch.no_grad():
            for w, g in zip(weights, g_train):
                w.sub_(xi * g)  # theta' = theta - xi grad L_train
        grads = _grads(loss_fn(net, *val), [*alphas, *weights])
        d_alpha, v = grads[:len(alphas)], grads[len(alphas):]
        norm = torch.sqrt(sum((g * g).sum() for g in v))
        eps = eps_scale / max(float(norm), 1e-12)
        fd = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, b, g in zip(weights, backup, v):
                    w.copy_(b + sign * eps * g)
            fd.append(_grads(loss_fn(net, *train), alphas))
        return [d - xi * (gp - gn) / (2 * eps) for d, gp, gn in zip(d_alpha, fd[0], fd[1])]
    finally:
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)


def _ce(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(net(x), y)


@dataclass
class SearchOutcome:
    """What :meth:`DifferentiableSearch.fit` returns: the per-epoch history and the search's wall time."""

    history: list[dict[str, Any]]
    wall_time_s: float


class DifferentiableSearch:
    """DARTS search of a mixed-operation supernet ``net`` (``arch_parameters()``, ``weight_parameters()``,
    ``probabilities()``, ``alpha_mask``, ``derive()``, ``space``) on ``train_ds`` / ``val_ds`` (module docstring).

    ``seed`` fixes the data order and augmentation of every epoch (one generator per epoch and half, derived from
    it, so a resumed run sees the same batches). ``folder``: where ``search.pt`` and ``alpha_history.json`` go
    (``None``: nothing is written). ``run_config``: recorded in the checkpoint and compared on resume.
    """

    def __init__(self, net: nn.Module, train_ds: Any, val_ds: Any, transform: Any, config: DartsSearchConfig, *,
                 seed: int, device: torch.device, folder: str | Path | None = None,
                 after_epoch: Callable[[int, nn.Module], Mapping[str, Any] | None] | None = None,
                 run_config: Mapping[str, Any] | None = None, progress: bool = False) -> None:
        self.net, self.train_ds, self.val_ds, self.transform = net.to(device), train_ds, val_ds, transform
        self.config, self.seed, self.device = config, seed, device
        self.folder = Path(folder) if folder is not None else None
        self.after_epoch, self.progress = after_epoch, progress
        self.run_config = dict(run_config or {})
        c = config
        self.w_opt = torch.optim.SGD(net.weight_parameters(), lr=c.learning_rate, momentum=c.momentum,
                                     weight_decay=c.weight_decay)
        self.a_opt = torch.optim.Adam(net.arch_parameters(), lr=c.arch_learning_rate, betas=tuple(c.arch_betas),
                                      weight_decay=c.arch_weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=c.epochs,
                                                                    eta_min=c.learning_rate_min)
        self.epoch, self.history = 0, []

    # ------------------------------------------------------------------------------------------------ data
    def _loaders(self, epoch: int) -> tuple[Batches, Batches]:
        bs = self.config.batch_size
        for name, ds in (("train_portion (weights half)", self.train_ds), ("train_portion (alpha half)", self.val_ds)):
            if len(ds) < bs:
                raise InvalidValue("batch_size", bs, f"at most {len(ds)} (the examples of the {name})")
        mk = lambda ds, tag: Batches(ds, bs, train=True, transform=self.transform, drop_last=True,  # noqa: E731
                                     device=self.device, seed=derived_seed(self.seed, tag, epoch))
        return mk(self.train_ds, 21), mk(self.val_ds, 22)

    def steps_per_epoch(self) -> int:
        n = min(len(self.train_ds), len(self.val_ds)) // self.config.batch_size
        return min(n, self.config.steps_per_epoch or n)

    # ------------------------------------------------------------------------------------------------ steps
    def step(self, xt: Tensor, yt: Tensor, xv: Tensor, yv: Tensor) -> dict[str, float]:
        """One architecture step on ``(xv, yv)`` then one weight step on ``(xt, yt)``; returns both losses."""
        net = self.net
        net.train()
        self.a_opt.zero_grad(set_to_none=True)
        with frozen_bn_stats(net):
            if self.config.order == 2:
                grads = unrolled_alpha_grad(net, _ce, (xt, yt), (xv, yv), self.w_opt.param_groups[0]["lr"],
                                            self.config.unrolled_eps)
                with torch.no_grad():
                    logits_v = net(xv)
            else:
                logits_v = net(xv)
                grads = _grads(F.cross_entropy(logits_v, yv), net.arch_parameters())
                logits_v = logits_v.detach()
        for a, g in zip(net.arch_parameters(), grads):
            a.grad = g.detach()
        self.a_opt.step()
        self.w_opt.zero_grad(set_to_none=True)
        logits = net(xt)
        loss = F.cross_entropy(logits, yt)
        loss.backward()
        for a in net.arch_parameters():
            a.grad = None
        nn.utils.clip_grad_norm_(net.weight_parameters(), self.config.grad_clip)
        self.w_opt.step()
        return {"train_loss": float(loss.detach()), "train_correct": float((logits.argmax(1) == yt).sum()),
                "val_loss": float(F.cross_entropy(logits_v, yv)),
                "val_correct": float((logits_v.argmax(1) == yv).sum()),
                "n": float(len(yt)), "n_val": float(len(yv))}

    # ------------------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.net.state_dict(), "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict(), "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                "history": self.history, "config": self.config.model_dump(mode="json"), "seed": self.seed,
                "run_config": self.run_config}

    def resume(self) -> bool:
        """Continue from ``folder/search.pt`` when it exists (same search config, seed and run config)."""
        path = self.folder / SEARCH_CHECKPOINT if self.folder is not None else None
        if path is None or not path.is_file():
            return False
        ckpt = load_checkpoint(path, map_location="cpu")
        if not isinstance(ckpt, Mapping) or ckpt.get("format") != FORMAT:
            raise CheckpointError(f"checkpoint {str(path)!r}: not a nasforge DARTS search checkpoint")
        mine = {"config": self.config.model_dump(mode="json"), "seed": self.seed, "run_config": self.run_config}
        for key, value in mine.items():
            if ckpt[key] != value:
                raise InvalidValue(key, value, [ckpt[key]], where=f"resume from {str(path)!r} (must match)")
        self.net.load_state_dict(ckpt["model"])
        self.net.to(self.device)
        self.w_opt.load_state_dict(ckpt["w_opt"])
        self.a_opt.load_state_dict(ckpt["a_opt"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.epoch, self.history = int(ckpt["epoch"]), list(ckpt["history"])
        return True

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self) -> SearchOutcome:
        """Run the remaining epochs (resuming first when a checkpoint exists)."""
        t0 = time.perf_counter()
        self.resume()
        steps = self.steps_per_epoch()
        while self.epoch < self.config.epochs:
            t_epoch, epoch = time.perf_counter(), self.epoch
            lr = self.w_opt.param_groups[0]["lr"]
            sums: dict[str, float] = {}
            tl, vl = self._loaders(epoch)
            bar = tqdm(total=steps, disable=not self.progress, desc=f"search epoch {epoch}", leave=False)
            for i, ((xt, yt), (xv, yv)) in enumerate(zip(tl, vl)):
                if i >= steps:
                    break
                for k, v in self.step(xt, yt, xv, yv).items():
                    sums[k] = sums.get(k, 0.0) + v
                if not math.isfinite(sums["train_loss"]):
                    raise InvalidValue("learning_rate", self.config.learning_rate,
                                       f"a rate that does not diverge (non-finite loss in epoch {epoch})")
                bar.update(1)
            bar.close()
            self.scheduler.step()
            row: dict[str, Any] = {
                "epoch": epoch, "lr": lr, "steps": steps,
                "train_loss": sums["train_loss"] / steps, "val_loss": sums["val_loss"] / steps,
                "train_accuracy": 100.0 * sums["train_correct"] / sums["n"],
                "val_accuracy": 100.0 * sums["val_correct"] / sums["n_val"],
                "probabilities": [[round(float(p), 6) for p in r] for r in self.net.probabilities()],
                "arch": self.net.space.format(self.net.derive())}
            if self.after_epoch is not None:
                row.update(self.after_epoch(epoch, self.net) or {})
            row["mask"] = self.net.alpha_mask.int().tolist()
            row["arch_after"] = self.net.space.format(self.net.derive())
            row["seconds"] = round(time.perf_counter() - t_epoch, 3)
            self.history.append(row)
            self.epoch = epoch + 1
            if self.folder is not None:
                save_checkpoint(self.folder / SEARCH_CHECKPOINT, self.state_dict())
                write_json(self.folder / ALPHA_HISTORY, {"ops": list(self.net.ops), "edges": self.net.edge_names,
                                                         "epochs": self.history})
        return SearchOutcome(list(self.history), time.perf_counter() - t0)


def run_differentiable_search(space: Any, splits: Any, config: DartsSearchConfig, *, seed: int,
                              device: torch.device, folder: str | Path | None,
                              after_epoch: Callable[[int, nn.Module], Mapping[str, Any] | None] | None = None,
                              run_config: Mapping[str, Any] | None = None,
                              progress: bool = False) -> tuple[nn.Module, SearchOutcome]:
    """Build the mixed-op supernet of ``space`` for ``splits`` (seeded), split the training data
    (:func:`split_search_data`) and run (or resume) the search; returns the searched supernet and the outcome."""
    from .mixed import mixed_supernet_for

    net = mixed_supernet_for(space, splits.input_shape, splits.num_classes,
                             generator=torch.Generator().manual_seed(derived_seed(seed, 23)))
    train_ds, val_ds = split_search_data(splits.train, config.train_portion, seed)
    search = DifferentiableSearch(net, train_ds, val_ds, splits.transform(), config, seed=seed, device=device,
                                  folder=folder, after_epoch=after_epoch, run_config=run_config, progress=progress)
    return search.net, search.fit()
