"""Single-stage supernet training: BigNAS (Yu et al. 2020, Sec. 3.1 and 4.2) and the SPOS baseline.

One optimizer step of :class:`SupernetTrainer` is a :class:`StepRecipe` applied to one global batch:

* **children** (:func:`plan_children`): with the *sandwich rule* (Sec. 3.1) the largest child, the smallest child and
  ``sandwich_n`` uniformly sampled ones (N = 2 in the paper); without it one uniformly sampled child (SPOS, Guo et
  al. 2020). Every child is drawn from ONE seeded ``numpy`` generator whose state is checkpointed.
* **targets** (:func:`child_losses`): with *inplace distillation* (Sec. 3.1) the largest child learns from the labels
  (cross-entropy with the recipe's label smoothing) and every other child ONLY from the largest child's soft labels
  ``softmax(teacher logits).detach()`` (soft cross-entropy, no temperature, no mixing with the labels); without it
  every child learns from the labels. The same batch ``x`` goes to every child; the supernet resizes it (bicubic, the
  *same patch*) to each child's resolution.
* **regularisation**: with *regularize the largest only* (Sec. 3.1 "Regularization"; Sec. 4.2 "dropout only on
  training the full network", "weight decaying only on full network once in each training iteration") the head
  dropout is ``dropout`` for the largest child and 0 for the others, and the L2 penalty ``wd / 2 * sum(p ** 2)`` is
  applied with the largest child's loss only (its gradient ``wd * p`` added to the gradients directly,
  :func:`add_l2_gradient`); otherwise every child gets both (Bender et al. 2018). The optimizer's own weight decay
  is 0, so the penalty is the only decay.
* the gradients of all children are summed (aggregated) before ONE optimizer step (Sec. 3.1); in a distributed run
  they are then averaged across ranks (:mod:`nasforge.supernet.distributed`).
* **BatchNorm** (Sec. 3.1 "Batch Norm Calibration"): statistics are not accumulated during training (momentum 0
  while stepping, restored afterwards; ``bn_accumulate`` switches that off) and are re-calibrated per child
  afterwards with :func:`nasforge.train.calibrate_bn`.

The learning rate follows the recipe's schedule per step (:func:`nasforge.train.lr_lambda`: warm-up, then 0.97 every
2.4 epochs held at ``min_lr_ratio``, the "exponentially decaying with constant ending" of Sec. 3.1 / Fig. 2b).
Dropout masks come from torch's default generator, seeded per step with :func:`nasforge.device.seeded_torch`, so a
run is reproducible and a resumed run continues exactly.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm.auto import tqdm

from ..arch import Architecture
from ..data import Batches
from ..device import seeded_torch
from ..errors import DataError, InvalidValue
from ..io import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from ..train import DivergedError, TrainConfig, build_optimizer, build_scheduler
from ..train.precision import (
    autocast,
    check_batch_fits,
    check_precision,
    device_capacity,
    measure_step_memory,
)
from .distributed import (
    DistContext,
    all_reduce_gradients,
    all_reduce_mean,
    broadcast_module,
    shard,
)
from .select import evaluate_child

__all__ = ["StepRecipe", "Child", "ChildRecord", "plan_children", "soft_cross_entropy", "l2_penalty", "add_l2_gradient",
           "child_losses", "frozen_bn_stats", "SupernetTrainer", "SupernetResult", "FORMAT", "step_seed",
           "calibration_batches", "derived_seed", "RESUME_MUTABLE"]

FORMAT = "nasforge.supernet/1"


@dataclass(frozen=True)
class StepRecipe:
    """What one supernet training step does; every BigNAS technique of Sec. 3.1 is a switch (for ablations).

    ``bignas()`` / ``spos()`` give the two methods' settings. ``weight_decay`` / ``label_smoothing`` come from the
    training recipe (BigNAS Sec. 4.2: 1e-5 and the EfficientNet smoothing 0.1); ``dropout`` is the head dropout
    (0.2, Sec. 4.3). ``decay_norm_and_bias``: also put 1-D parameters (BN affine, biases) in the L2 penalty.
    """

    sandwich: bool = True
    sandwich_n: int = 2
    inplace_distillation: bool = True
    regularize_largest_only: bool = True
    bn_accumulate: bool = False
    dropout: float = 0.2
    weight_decay: float = 1e-5
    label_smoothing: float = 0.1
    decay_norm_and_bias: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.sandwich_n, bool) or not isinstance(self.sandwich_n, int) or self.sandwich_n < 0:
            raise InvalidValue("sandwich_n", self.sandwich_n, "an int >= 0 (random children per step)")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidValue("dropout", self.dropout, "a float in [0, 1)")
        if self.weight_decay < 0:
            raise InvalidValue("weight_decay", self.weight_decay, "a float >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InvalidValue("label_smoothing", self.label_smoothing, "a float in [0, 1)")
        if self.inplace_distillation and not self.sandwich:
            raise InvalidValue("inplace_distillation", True, "false when sandwich is false (the teacher is the "
                                                             "sandwich's largest child)")

    @classmethod
    def bignas(cls, **changes: Any) -> "StepRecipe":
        """BigNAS Sec. 3.1 / 4.2: sandwich (N=2), inplace distillation, regularise the largest only, no BN stats."""
        return cls(**changes)

    @classmethod
    def spos(cls, **changes: Any) -> "StepRecipe":
        """SPOS (Guo et al. 2020): one uniform child per step on the labels, dropout and weight decay as usual."""
        base = dict(sandwich=False, inplace_distillation=False, regularize_largest_only=False, label_smoothing=0.0)
        return cls(**{**base, **changes})


@dataclass(frozen=True)
class Child:
    """One child of a step: its architecture, its ``role`` (largest / smallest / random), what it learns from
    (``"labels"`` or the ``"teacher"``'s soft labels) and whether it is regularised (dropout + L2)."""

    arch: Architecture
    role: str
    target: str
    regularized: bool


@dataclass
class ChildRecord:
    """What :func:`child_losses` did for one child: its data loss (detached), the dropout rate in force, the L2
    penalty added (a detached tensor; 0.0 when none) and the target kind. Cheap: no host synchronisation."""

    role: str
    target: str
    loss: Tensor
    dropout: float
    l2: Tensor | float


def plan_children(space: Any, rng: np.random.Generator, recipe: StepRecipe) -> list[Child]:
    """The children of one step, teacher first: sandwich = [largest, smallest, N random]; else [one random].

    Random children are ``space.sample(rng)`` (uniform over the space's genes). The largest child is the only one
    that learns from the labels under inplace distillation (Sec. 3.1).
    """
    largest = space.largest()

    def make(arch: Architecture, role: str) -> Child:
        teacher = recipe.inplace_distillation and role != "largest"
        regularized = not recipe.regularize_largest_only or arch == largest
        return Child(arch, role, "teacher" if teacher else "labels", regularized)

    if not recipe.sandwich:
        return [make(space.sample(rng), "random")]
    return [make(largest, "largest"), make(space.smallest(), "smallest"),
            *(make(space.sample(rng), "random") for _ in range(recipe.sandwich_n))]


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor) -> Tensor:
    """Inplace-distillation loss (Sec. 3.1): ``mean_i -sum_c q_ic log softmax(logits)_ic`` with ``q`` the teacher's
    probabilities (KL divergence up to the teacher's entropy, which has no gradient); no temperature."""
    return -(soft_targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def l2_penalty(params: Sequence[Tensor], weight_decay: float) -> Tensor:
    """``weight_decay / 2 * sum ||p||^2``: its gradient is the ``weight_decay * p`` of coupled weight decay.

    Simplification: the trainer passes every >= 2-D supernet weight, so the largest child's penalty also covers
    transition 1x1 convs only narrower children use, and with ``regularize_largest_only=False`` each child is
    penalised over the whole supernet rather than its own slice."""
    return 0.5 * weight_decay * torch.stack([p.pow(2).sum() for p in params]).sum()


@torch.no_grad()
def add_l2_gradient(params: Sequence[Tensor], weight_decay: float) -> Tensor:
    """Add the gradient of :func:`l2_penalty` (``weight_decay * p``) to every ``p.grad`` directly (a parameter
    without a gradient gets one); returns the penalty's value, detached. The same gradients as backpropagating
    ``l2_penalty(params, weight_decay)``, without a graph over every weight: two fused ``_foreach`` calls
    instead of a ``pow`` + ``sum`` per tensor forward and backward (BigNAS Sec. 4.2, "weight decaying only on
    full network once in each training iteration")."""
    params = list(params)
    value = 0.5 * weight_decay * torch.stack(torch._foreach_norm(params)).square().sum()
    missing = [p for p in params if p.grad is None]
    for p in missing:
        p.grad = torch.zeros_like(p)
    torch._foreach_add_([p.grad for p in params], params, alpha=weight_decay)
    return value


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module, freeze: bool = True) -> Iterator[None]:
    """Run a block with every BatchNorm's momentum at 0, so training-mode forwards normalise with the batch
    statistics but leave the running statistics untouched (Sec. 3.1: "Batch norm statistics are not accumulated
    when training the single-stage model"); momenta and ``num_batches_tracked`` counters are restored afterwards."""
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm)] if freeze else []
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (momentum, count) in zip(bns, saved):
                m.momentum = momentum
                if count is not None:
                    m.num_batches_tracked.copy_(count)


def _decayed(net: nn.Module, recipe: StepRecipe) -> list[nn.Parameter]:
    params = [p for p in net.parameters() if p.requires_grad]
    return params if recipe.decay_norm_and_bias else [p for p in params if p.ndim >= 2]


def child_losses(net: nn.Module, x: Tensor, y: Tensor, children: Sequence[Child], recipe: StepRecipe,
                 decayed: Sequence[nn.Parameter] | None = None,
                 autocast: contextlib.AbstractContextManager | None = None,
                 loss_scale: float = 1.0) -> list[ChildRecord]:
    """Forward + backward of every child on the same batch, accumulating gradients (no optimizer step).

    ``net`` is an elastic supernet (``with net.activate(arch)``, ``net.head_dropout``). Each child's loss is
    backpropagated at once, so only one child's graph is alive at a time. The L2 penalty covers ``decayed``
    (default: the supernet's >= 2-D weights, i.e. every weight of the largest child); its gradient is added after
    the child's backward (:func:`add_l2_gradient`), its value recorded. ``loss_scale`` multiplies
    what is backpropagated (``1 / accumulate_steps`` when a step accumulates several batches); the records keep
    the unscaled losses.
    """
    decayed = _decayed(net, recipe) if decayed is None else decayed
    dropout, teacher, records = net.head_dropout.p, None, []
    try:
        for child in children:
            p = recipe.dropout if child.regularized else 0.0
            net.head_dropout.p = p
            with (autocast or contextlib.nullcontext()), net.activate(child.arch):
                logits = net(x)
            if child.target == "teacher":
                if teacher is None:
                    raise InvalidValue("children", [c.role for c in children], "the largest child (the teacher) "
                                                                                "first under inplace distillation")
                loss = soft_cross_entropy(logits, teacher)
            else:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            if child.role == "largest" and recipe.inplace_distillation:
                teacher = F.softmax(logits.detach().float(), dim=1)
            (loss * loss_scale if loss_scale != 1.0 else loss).backward()
            l2: Tensor | float = 0.0
            if child.regularized and recipe.weight_decay > 0 and decayed:
                l2 = add_l2_gradient(decayed, recipe.weight_decay * loss_scale) / loss_scale
            records.append(ChildRecord(child.role, child.target, loss.detach(), p, l2))
    finally:
        net.head_dropout.p = dropout
    return records


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """Seed of the dropout masks of global step ``step`` on ``rank``: ``SeedSequence(seed, spawn_key=(2, step,
    rank))``'s first word (each step reproducible on its own, so resuming needs no RNG state)."""
    return int(np.random.SeedSequence(seed, spawn_key=(2, step, rank)).generate_state(1)[0])


def derived_seed(seed: int, tag: int, index: int = 0) -> int:
    """Seeds of a run, all from ``seed``: tag 0 children, 1 data order per epoch, 2 dropout per step (see
    :func:`step_seed`), 3 calibration batches, 4 supernet initialisation."""
    return int(np.random.SeedSequence(seed, spawn_key=(tag, index)).generate_state(1)[0])


def calibration_batches(splits: Any, batch_size: int, seed: int, device: torch.device | str = "cpu") -> Any:
    """Shuffled training batches without augmentation, from a fixed seed: the BN-calibration data (Sec. 3.1) of
    the per-epoch log and of ``nasforge supernet eval`` (every child sees the same batches)."""
    return Batches(splits.train, batch_size, train=False, transform=splits.transform(), shuffle=True,
                   device=device, seed=derived_seed(seed, 3))


@dataclass
class SupernetResult:
    """What :meth:`SupernetTrainer.fit` returns: the per-epoch log, steps done, wall time and the checkpoint."""

    history: list[dict[str, Any]]
    steps: int
    total_steps: int
    epochs_run: float
    wall_time_s: float
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Position:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of ``epoch`` already consumed
    sums: dict[str, list[float]] = field(default_factory=dict)  # role -> [loss sum, count] of the current epoch


#: config keys that may differ between a checkpoint and the run that resumes it
RESUME_MUTABLE = frozenset({"epochs", "checkpoint_every", "device", "progress", "out", "backend", "threads",
                            "calib_batches", "eval_batches", "eval_split", "eval_batch_size"})


class SupernetTrainer:
    """Train an elastic supernet with a :class:`StepRecipe` on ``splits`` (a :class:`~nasforge.data.DataSplits`).

    ``train_config``: optimizer, batch size, schedule (its ``weight_decay`` / ``label_smoothing`` belong to
    ``recipe``; the optimizer itself gets no weight decay). ``epochs`` may be fractional. ``seed`` fixes the
    children (one ``numpy`` generator), the data order and crops (one generator per epoch) and the dropout masks
    (one seed per step). ``checkpoint_path``: written every ``checkpoint_every`` steps, at every epoch end and at
    the end (rank 0 only); ``log_path``: ``train_log.jsonl`` with one line per epoch (losses per role, learning
    rate, and the accuracy of the smallest and largest child after BN calibration on ``calib_batches`` batches,
    on ``eval_batches`` batches of the ``eval_split``, both at ``eval_batch_size`` images per batch).
    ``run_config``: the config the run was made from, stored in the checkpoint and compared on resume (keys of
    :data:`RESUME_MUTABLE` may change).
    """

    def __init__(self, net: nn.Module, space: Any, splits: Any, *, recipe: StepRecipe, train_config: TrainConfig,
                 epochs: float, seed: int = 0, dist: DistContext | None = None,
                 checkpoint_path: str | os.PathLike[str] | None = None, checkpoint_every: int | None = None,
                 log_path: str | os.PathLike[str] | None = None, calib_batches: int = 20,
                 eval_batches: int | None = None, eval_split: str | None = None, eval_batch_size: int = 256,
                 run_config: Mapping[str, Any] | None = None, progress: bool = False) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not 0 < epochs < math.inf:
            raise InvalidValue("epochs", epochs, "a positive number (fractions allowed)")
        if train_config.precision == "fp16":
            raise InvalidValue("train.precision", "fp16", "'fp32' or 'bf16' (the supernet trainer has no gradient "
                                                          "scaler)")
        if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or checkpoint_every < 1):
            raise InvalidValue("checkpoint_every", checkpoint_every, "a positive int (steps) or null")
        self.net, self.space, self.splits, self.recipe = net, space, splits, recipe
        self.config, self.epochs, self.seed = train_config, float(epochs), int(seed)
        self.dist = dist or DistContext()
        self.device = self.dist.device
        check_precision(train_config.precision, self.device)
        if train_config.devices is not None and train_config.devices > self.dist.world_size:
            warnings.warn(f"train.devices is {train_config.devices} but this run has {self.dist.world_size} "
                          f"process(es) (not started with torchrun --nproc_per_node {train_config.devices}?): each "
                          f"step processes the whole batch of {train_config.batch_size} here; set "
                          "train.accumulate_steps or launch with torchrun", stacklevel=2)
        self.checkpoint_path = None if checkpoint_path is None else os.fspath(checkpoint_path)
        self.log_path = None if log_path is None else os.fspath(log_path)
        self.checkpoint_every, self.calib_batches, self.eval_batches = checkpoint_every, calib_batches, eval_batches
        self.eval_batch_size = eval_batch_size
        self.eval_split = eval_split or ("val" if "val" in splits.available() else splits.available()[-1])
        splits[self.eval_split]  # the split children are scored on: empty, it fails now (DataError), not after an epoch
        self.run_config = dict(run_config or {})
        self.progress = progress and self.dist.is_main
        self.net.to(self.device)
        broadcast_module(self.net, self.dist)
        self.accumulate = train_config.accumulate_steps
        self.steps_per_epoch = len(self._loader(0)) // self.accumulate  # optimizer steps; a partial group is dropped
        if self.steps_per_epoch < 1:
            raise DataError(f"train split: {len(splits.train)} examples; expected at least train.batch_size x "
                            f"train.accumulate_steps ({train_config.batch_size} x {self.accumulate}) for one step")
        self.total_steps = max(1, int(math.floor(self.epochs * self.steps_per_epoch + 0.5)))
        no_decay = TrainConfig(**{**train_config.model_dump(), "weight_decay": 0.0})
        self.optimizer = build_optimizer(self.net, no_decay)
        self.scheduler = build_scheduler(self.optimizer, train_config, self.steps_per_epoch, self.total_steps)
        self.arch_rng = np.random.default_rng(derived_seed(self.seed, 0))
        self.pos = _Position()
        self.history: list[dict[str, Any]] = []
        self._decayed = _decayed(self.net, recipe)
        self._sha: str | None = None
        self._saved_at: int | None = None
        self._fit_checked = False

    # ------------------------------------------------------------------------------------------------ data
    @property
    def _rank_reads_shard(self) -> bool:
        """Streamed data in a distributed run: each rank's loader reads only its shard of the epoch."""
        return self.dist.distributed and bool(getattr(self.splits, "streaming", False))

    def _loader(self, epoch: int) -> Any:
        """The batches of ``epoch`` (full batches only), seeded per epoch, from the same generator on every rank.
        In-memory data: every rank builds the whole global batch and keeps its shard (:func:`shard`; cheap for
        small data and exactly resumable). Streamed data: each rank's loader reads only its shard of the epoch
        (``DistributedSampler`` semantics) at ``batch_size / world_size`` images per batch; nothing builds the
        global batch."""
        gen = torch.Generator().manual_seed(derived_seed(self.seed, 1, epoch))
        if self._rank_reads_shard:
            world, bs = self.dist.world_size, self.config.batch_size
            if bs % world:
                raise InvalidValue("train.batch_size", bs, f"a multiple of the world size {world} (each rank "
                                                           "takes an equal share of every global batch)")
            return self.splits.loader("train", bs // world, device=self.device, generator=gen, drop_last=True,
                                      rank=self.dist.rank, world_size=world)
        return self.splits.loader("train", self.config.batch_size, device=self.device, generator=gen,
                                  drop_last=True)

    def _eval_loaders(self) -> tuple[Any, Any]:
        calib = calibration_batches(self.splits, self.eval_batch_size, self.seed, self.device)
        scored = self.splits.loader(self.eval_split, self.eval_batch_size, device=self.device, train=False)
        return calib, scored

    # ------------------------------------------------------------------------------------------------ step
    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config.precision, self.device)

    def _check_fits(self, x: Tensor, y: Tensor) -> None:
        """On CUDA, before the first step: one forward/backward of the largest child at 1 and 2 images; a
        per-device batch that cannot fit is a one-line error instead of an out-of-memory crash mid-run."""
        self._fit_checked = True
        capacity = device_capacity(self.device)
        if capacity is None:
            return
        with self.net.activate(self.space.largest()):
            measured = measure_step_memory(self.net, x, y, F.cross_entropy, self.config.precision, self.device)
        if measured is not None:
            check_batch_fits(self.config.batch_size // self.dist.world_size, *measured, capacity,
                             where="train.batch_size / world size")

    def _micro_seed(self, k: int) -> int:
        if k == 0:
            return step_seed(self.seed, self.pos.step, self.dist.rank)
        return int(np.random.SeedSequence(self.seed, spawn_key=(2, self.pos.step, self.dist.rank, k))
                   .generate_state(1)[0])

    def train_step(self, x: Tensor, y: Tensor, *more: tuple[Tensor, Tensor]) -> list[ChildRecord]:
        """One optimizer step on the global batch ``(x, y)`` (this rank uses its shard; streamed data: ``(x, y)``
        already is this rank's shard); returns the records. ``more``: further ``(x, y)`` batches of the same step
        (gradient accumulation: the same children on every batch, each batch's loss weighted 1 / batches, so the
        step equals one on the concatenated batch up to BatchNorm's per-batch statistics)."""
        if not self._fit_checked:
            self._check_fits(x if self._rank_reads_shard else shard(x, self.dist),
                             y if self._rank_reads_shard else shard(y, self.dist))
        children = plan_children(self.space, self.arch_rng, self.recipe)
        batches = [(x, y), *more]
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        per_batch: list[list[ChildRecord]] = []
        for k, (xb, yb) in enumerate(batches):
            if not self._rank_reads_shard:
                xb, yb = shard(xb, self.dist), shard(yb, self.dist)
            with seeded_torch(self._micro_seed(k), self.device), \
                    frozen_bn_stats(self.net, freeze=not self.recipe.bn_accumulate):
                per_batch.append(child_losses(self.net, xb, yb, children, self.recipe, self._decayed,
                                              self._autocast(), loss_scale=1.0 / len(batches)))
        records = per_batch[0] if len(per_batch) == 1 else [
            ChildRecord(r.role, r.target, torch.stack([b[i].loss for b in per_batch]).mean(), r.dropout, r.l2)
            for i, r in enumerate(per_batch[0])]
        all_reduce_gradients(self.net.parameters(), self.dist)
        if self.config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.pos.step += 1
        return records

    def _accumulate(self, records: list[ChildRecord]) -> None:
        """Add the step's losses (averaged over ranks, so every rank takes the same decision) to the epoch sums;
        one host sync per step. A NaN/inf loss stops the run (:class:`DivergedError`; the last checkpoint stays)."""
        values = all_reduce_mean(torch.stack([r.loss.float() for r in records]), self.dist).tolist()
        for r, value in zip(records, values):
            if not math.isfinite(value):
                raise DivergedError(self.pos.step, self.pos.epoch, value)
            sums = self.pos.sums.setdefault(r.role, [0.0, 0.0])
            sums[0] += value
            sums[1] += 1

    # ------------------------------------------------------------------------------------------------ evaluation
    def evaluate_child(self, arch: Architecture, calib: Any = None, scored: Any = None) -> float:
        """Top-1 accuracy (%) of child ``arch`` after BN calibration (Sec. 3.1) on ``calib_batches`` training
        batches (:func:`nasforge.supernet.select.evaluate_child`; the supernet's BN buffers are restored)."""
        if calib is None or scored is None:
            calib, scored = self._eval_loaders()
        return evaluate_child(self.net, arch, calib, scored, calib_steps=self.calib_batches, device=self.device,
                              max_batches=self.eval_batches)

    def _epoch_end(self, epoch: int, seconds: float) -> None:
        losses = {role: total / max(count, 1.0) for role, (total, count) in sorted(self.pos.sums.items())}
        row: dict[str, Any] = {"epoch": epoch, "step": self.pos.step, "lr": self.optimizer.param_groups[0]["lr"],
                               "loss": {k: round(v, 6) for k, v in losses.items()}, "seconds": round(seconds, 3)}
        if self.dist.is_main:
            calib, scored = self._eval_loaders()
            for name, arch in (("smallest", self.space.smallest()), ("largest", self.space.largest())):
                row[f"acc_{name}"] = round(self.evaluate_child(arch, calib, scored), 4)
        self.history.append(row)
        self.pos.epoch, self.pos.batch, self.pos.sums = epoch + 1, 0, {}
        if self.dist.is_main and self.log_path is not None:
            import json

            atomic_write_text(self.log_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.history))

    # ------------------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, scheduler, position, generator state, log."""
        pos = self.pos
        return {"format": FORMAT, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "position": {"step": pos.step, "epoch": pos.epoch, "batch": pos.batch,
                             "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps},
                "epoch_sums": {k: list(v) for k, v in pos.sums.items()},
                "arch_rng": self.arch_rng.bit_generator.state, "history": list(self.history),
                "recipe": asdict(self.recipe), "train_config": self.config.model_dump(), "seed": self.seed,
                "config": self.run_config, "world_size": self.dist.world_size}

    def save(self) -> str | None:
        """Write the checkpoint atomically (rank 0 only); returns its SHA-256."""
        if self.checkpoint_path is None or not self.dist.is_main:
            return None
        self._sha = save_checkpoint(self.checkpoint_path, self.state_dict())
        self._saved_at = self.pos.step
        return self._sha

    def _check_resumable(self, ckpt: Mapping[str, Any], path: str) -> None:
        where = f"resume from {path!r} (must match the checkpoint)"
        if not isinstance(ckpt, Mapping) or ckpt.get("format") != FORMAT:
            raise CheckpointError(f"checkpoint {path!r}: not a nasforge supernet checkpoint (format {FORMAT!r})")
        pairs = [(f"config.{k}", self.run_config.get(k), v) for k, v in (ckpt.get("config") or {}).items()
                 if k not in RESUME_MUTABLE]
        pairs += [(f"config.{k}", v, None) for k, v in self.run_config.items()
                  if k not in RESUME_MUTABLE and k not in (ckpt.get("config") or {})]
        pairs += [(f"recipe.{k}", v, ckpt["recipe"].get(k)) for k, v in asdict(self.recipe).items()]
        saved_train = dict(ckpt["train_config"])
        if "amp" in saved_train and "precision" not in saved_train:  # the field's former name
            saved_train["precision"] = {"none": "fp32"}.get(saved_train["amp"], saved_train["amp"])
        fields = TrainConfig.model_fields
        pairs += [(f"train.{k}", v, saved_train.get(k)) for k, v in self.config.model_dump().items()
                  if k in saved_train or k not in fields or v != fields[k].default]  # fields added later: default
        pairs += [("seed", self.seed, ckpt["seed"]),
                  ("steps_per_epoch", self.steps_per_epoch, ckpt["position"]["steps_per_epoch"])]
        for name, mine, theirs in pairs:
            if mine != theirs:
                raise InvalidValue(name, mine, [theirs], where=where)

    def load_state_dict(self, ckpt: Mapping[str, Any], path: str = "<state>") -> None:
        """Restore a :meth:`state_dict` (checked against this run's config, recipe and data first)."""
        self._check_resumable(ckpt, path)
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        p = ckpt["position"]
        self.pos = _Position(step=int(p["step"]), epoch=int(p["epoch"]), batch=int(p["batch"]),
                             sums={k: list(v) for k, v in ckpt["epoch_sums"].items()})
        self.arch_rng.bit_generator.state = ckpt["arch_rng"]
        self.history = list(ckpt["history"])

    def resume(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Continue from ``path`` (default: the checkpoint path) when it exists; returns whether it did."""
        path = os.fspath(path) if path is not None else self.checkpoint_path
        if path is None or not os.path.exists(path):
            return False
        self.load_state_dict(load_checkpoint(path, map_location="cpu"), path)
        self.net.to(self.device)
        return True

    # ------------------------------------------------------------------------------------------------ loop
    def _epoch_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        it = iter(self._loader(epoch))
        for _ in range(self.pos.batch):  # a run resumed mid-epoch: skip the consumed batches (same order, crops)
            next(it)
        return it

    def fit(self, stop_at: int | None = None, resume: bool = False) -> SupernetResult:
        """Train until ``total_steps`` (or global step ``stop_at``, then checkpoint and return); ``resume``
        continues from the checkpoint when it exists."""
        t0 = time.perf_counter()
        if resume:
            self.resume()
        end = self.total_steps if stop_at is None else min(int(stop_at), self.total_steps)
        bar = tqdm(total=self.total_steps, initial=self.pos.step, disable=not self.progress, unit="step",
                   desc="supernet", dynamic_ncols=True, leave=False)
        try:
            while self.pos.step < end:
                epoch, t_epoch = self.pos.epoch, time.perf_counter()
                group: list[tuple[Tensor, Tensor]] = []
                epoch_batches = self.steps_per_epoch * self.accumulate
                for x, y in self._epoch_batches(epoch):
                    if self.pos.step >= end or self.pos.batch >= epoch_batches:
                        break
                    group.append((x, y))
                    if len(group) < self.accumulate:
                        continue
                    self._accumulate(self.train_step(*group[0], *group[1:]))
                    self.pos.batch += len(group)
                    group = []
                    bar.update(1)
                    if self.checkpoint_every and self.pos.step % self.checkpoint_every == 0:
                        self.save()
                epoch_done = self.pos.batch >= epoch_batches or self.pos.step >= self.total_steps
                if epoch_done:
                    self._epoch_end(epoch, time.perf_counter() - t_epoch)
                    self.save()
                    bar.set_postfix({k: v for k, v in self.history[-1].items() if k.startswith("acc_")})
        finally:
            bar.close()
        if self.pos.step == end and self._saved_at != end:
            self.save()
        return SupernetResult(history=list(self.history), steps=self.pos.step, total_steps=self.total_steps,
                              epochs_run=self.pos.step / self.steps_per_epoch,
                              wall_time_s=time.perf_counter() - t0, checkpoint=self.checkpoint_path,
                              checkpoint_sha256=self._sha)
