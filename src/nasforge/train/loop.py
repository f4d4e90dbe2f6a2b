"""The training loop: :func:`train` one network on batches, :func:`evaluate` it, with callbacks and checkpoints.

``train`` runs plain supervised training as the papers do for stand-alone networks (the population members of
MENAS, "Experimental Details"; the re-training of DCNAS Sec. 4.1 / PAD-NAS Sec. 4; the 20-epoch training loop of
LNAS Sec. 4) with the recipes of :class:`~nasforge.train.config.TrainConfig`.

Batches: any re-iterable of ``(x, y)`` pairs (``x`` float ``N x C x H x W``, ``y`` int64 class indices), or a
callable ``source(epoch) -> iterable`` returning the batches of one epoch (deterministic per epoch, which makes
resuming exact). Batches are moved to ``device`` with ``non_blocking=True`` (a no-op when already there).

The per-step hot path is forward, loss, ``zero_grad``, backward, (clip), ``optimizer.step``, ``scheduler.step``,
plus the step's detached loss and its count of correct predictions (an argmax, a compare and a sum) kept as device
tensors in per-epoch lists: no copy, no ``.item()``. The host synchronises every ``config.nan_check_interval``
steps to check that the loss is finite (:class:`DivergedError` names the first non-finite step; parameters may
already hold NaN/inf by then: restore the last checkpoint) and once per epoch for the statistics. Set the interval
to 1 to stop at the very step that diverged. Measured overhead: ``benchmarks/bench_train_overhead.py``.

Fitting the device (:mod:`nasforge.train.precision`): ``config.precision`` autocasts (``fp16`` with a gradient
scaler); ``config.accumulate_steps`` sums the gradients of that many consecutive batches (each loss weighted 1 /
the group's batches) before one optimizer / scheduler step, in groups that restart every epoch (a shorter last
group takes the epoch's remaining batches); a "step" of :class:`TrainState` and of the checkpoint position is
still one batch, and a run stopped by a callback in the middle of a group resumes without that group's partial
gradients. ``config.ema_decay`` keeps a :class:`~nasforge.train.precision.WeightEMA` updated after every optimizer
step, validates it, and copies it into the model at the end. On CUDA the first batch is measured once at 1 and 2
images so that a batch that cannot fit fails at once with a one-line error.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..device import resolve_device
from ..errors import DataError, InvalidValue, NasforgeError
from .checkpoint import load_training_state, restore_training_state, save_training_state
from .config import TrainConfig
from .precision import (
    WeightEMA,
    autocast,
    check_batch_fits,
    check_precision,
    device_capacity,
    measure_step_memory,
)
from .schedules import build_optimizer, build_scheduler

__all__ = ["train", "evaluate", "TrainResult", "EpochStats", "TrainState", "Callback", "DivergedError",
           "resolve_device", "BatchSource"]

Batch = Sequence[Tensor]
BatchSource = Union[Iterable[Batch], Callable[[int], Iterable[Batch]]]
LossFn = Callable[[Tensor, Tensor], Tensor]


class DivergedError(NasforgeError):
    """The training loss became NaN or infinite (lower the learning rate, clip gradients or train in fp32)."""

    def __init__(self, step: int, epoch: int, value: float) -> None:
        self.step, self.epoch, self.value = step, epoch, value
        super().__init__(f"training loss at step {step} (epoch {epoch}): got {value}; allowed: a finite value "
                         "(lower lr, set grad_clip_norm or use precision='fp32')")


@dataclass
class EpochStats:
    """One epoch (or the part of one that ran): mean training loss of its steps, training accuracy in %, the
    learning rate at its end, validation metrics when ``val_batches`` were given, and its wall time."""

    epoch: int
    steps: int
    train_loss: float
    train_accuracy: float
    lr: float
    seconds: float
    val_loss: Optional[float] = None
    val_accuracy: Optional[float] = None


@dataclass
class TrainResult:
    """What :func:`train` returns: per-epoch history, last validation accuracy (%), wall time, epochs run."""

    history: list[EpochStats]
    final_val_accuracy: Optional[float]
    wall_time_s: float
    epochs_run: float
    steps: int
    stopped_early: bool = False
    checkpoint_sha256: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainState:
    """Handed to callbacks. ``loss`` is the last step's loss as a detached device tensor (call ``.item()`` only
    if you need it: it synchronises). Set ``stop = True`` (or return True from a hook) to end training."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: TrainConfig
    total_steps: int
    epoch: int = 0
    step: int = 0
    loss: Optional[Tensor] = None
    stats: Optional[EpochStats] = None
    history: list[EpochStats] = field(default_factory=list)
    stop: bool = False
    ema: Optional[WeightEMA] = None


class Callback:
    """minGPT-style hooks; override what you need. A hook returning True (or setting ``state.stop``) stops
    training after the current step / epoch. Any object with these method names works."""

    def on_step_end(self, state: TrainState) -> Optional[bool]:
        return None

    def on_epoch_end(self, state: TrainState) -> Optional[bool]:
        return None


# ------------------------------------------------------------------------------------------------ batch checks
def _epoch_batches(source: BatchSource, epoch: int) -> Iterable[Batch]:
    if callable(source) and not hasattr(source, "__iter__"):
        return source(epoch)
    return source


def _steps_per_epoch(source: BatchSource, epochs: float, given: int | None) -> int:
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise InvalidValue("steps_per_epoch", given, "a positive int")
        return given
    batches = _epoch_batches(source, 0)
    if epochs > 1 and batches is source and iter(batches) is batches:  # a one-shot iterator: one epoch only
        raise InvalidValue("train_batches", type(batches).__name__,
                           "a re-iterable (list, loader) or a callable(epoch) returning one")
    try:
        n = len(batches)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidValue("steps_per_epoch", None, "a positive int (train_batches has no len())") from None
    if n < 1:
        raise DataError("train_batches: got 0 batches per epoch; expected at least 1")
    return n


def _check_batch(batch: Any, where: str) -> tuple[Tensor, Tensor]:
    """The first batch of a source must be ``(x float N x ..., y int64 N)``; raise :class:`DataError` otherwise."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"{where}: got a batch of type {type(batch).__name__}; expected (x, y) tensor pairs")
    x, y = batch
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise DataError(f"{where}: x is {getattr(x, 'dtype', type(x).__name__)} "
                        f"{tuple(getattr(x, 'shape', ()))}; expected a float tensor N x C x H x W")
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{where}: y is {getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))};"
                        f" expected int64 class indices of shape ({len(x)},)")
    return x, y


@torch.no_grad()
def _probe(model: nn.Module, x: Tensor, y: Tensor, where: str) -> None:
    """One small eval-mode forward on the first batch: a wrong input shape or label range becomes a one-line
    :class:`DataError` here instead of a traceback from deep inside torch."""
    was = model.training
    model.eval()
    try:
        out = model(x[:2])
    except (RuntimeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{where}: the model cannot take x of shape {tuple(x.shape)} ({first})") from None
    finally:
        model.train(was)
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise DataError(f"{where}: the model returned {getattr(out, 'shape', type(out).__name__)}; "
                        "expected logits of shape N x classes")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= out.shape[1]:
        raise DataError(f"{where}: labels range over [{lo}, {hi}]; allowed: 0..{out.shape[1] - 1}")


def _checked(batches: Iterable[Batch], model: nn.Module, device: torch.device, where: str) -> Iterator[Batch]:
    """``batches`` with its first batch validated (types, shapes, labels) by :func:`_check_batch` + :func:`_probe`."""
    it = iter(batches)
    first = next(it, None)
    if first is None:
        return iter(())
    x, y = _check_batch(first, where)
    _probe(model, x.to(device), y.to(device), where)
    return itertools.chain([first], it)


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch], device: str | torch.device = "cpu", *,
             max_batches: int | None = None) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy of ``model`` (moved to ``device``, in eval mode) on ``batches``.

    Sums stay on the device; one synchronisation at the end. The model's training mode is restored.
    """
    dev = resolve_device(device)
    model.to(dev)
    was = model.training
    model.eval()
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.int64)
    n = 0
    try:
        for i, (x, y) in enumerate(_checked(batches, model, dev, "evaluate batches")):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += y.shape[0]
    finally:
        model.train(was)
    if n == 0:
        raise DataError("evaluate batches: got no batches; expected at least 1")
    return {"accuracy": 100.0 * correct.item() / n, "loss": loss_sum.item() / n}


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class _Run:
    """Everything one :func:`train` call holds; keeps the functions below short."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    source: BatchSource
    steps_per_epoch: int
    total_steps: int
    loss_fn: LossFn
    state: TrainState
    scaler: Any
    step_hooks: list[Callable[[TrainState], Any]]
    epoch_hooks: list[Callable[[TrainState], Any]]
    pbar: Any
    ema: Optional[WeightEMA] = None
    step: int = 0
    next_epoch: int = 0
    skip_batches: int = 0
    check_input: bool = True

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config.precision, self.device)


def _fire(hooks: list[Callable[[TrainState], Any]], state: TrainState) -> bool:
    stop = False
    for hook in hooks:
        stop = bool(hook(state)) or stop
    return stop or state.stop


def _update(run: _Run, x: Tensor, y: Tensor, weight: float = 1.0, step: bool = True) -> tuple[Tensor, Tensor]:
    """Forward + backward of one batch with its loss scaled by ``weight`` (1 / the batches of its accumulation
    group), then, when ``step``, one optimisation step (clip, optimizer, scheduler, EMA) and zeroed gradients.
    Returns the (attached, unscaled) loss and the logits."""
    opt, clip, scaler = run.state.optimizer, run.config.grad_clip_norm, run.scaler
    with run.autocast():
        logits = run.model(x)
        loss = run.loss_fn(logits, y)
    scaled = loss * weight if weight != 1.0 else loss
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    if not step:
        return loss, logits
    if scaler is None:
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
        opt.step()
    else:
        if clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
        scaler.step(opt)
        scaler.update()
    opt.zero_grad(set_to_none=True)
    run.state.scheduler.step()
    if run.ema is not None:
        run.ema.update(run.model)
    return loss, logits


def _check_fits(run: _Run, x: Tensor, y: Tensor) -> None:
    """On CUDA: one forward/backward at 1 and 2 images; a batch that cannot fit is a one-line error now."""
    measured = measure_step_memory(run.model, x, y, run.loss_fn, run.config.precision, run.device)
    capacity = device_capacity(run.device)
    if measured is not None and capacity is not None:
        check_batch_fits(run.config.batch_size, *measured, capacity)


def _check_finite(losses: list[Tensor], lo: int, hi: int, epoch: int, first_step: int) -> float:
    """Mean of ``losses[lo:hi]`` (one sync); raise :class:`DivergedError` at the first non-finite entry."""
    if hi <= lo:
        return math.nan
    window = torch.stack(losses[lo:hi]).float()
    mean = window.mean().item()
    if not math.isfinite(mean):
        bad = int((~torch.isfinite(window)).nonzero()[0, 0])
        raise DivergedError(first_step + lo + bad + 1, epoch, float(window[bad]))
    return mean


def _train_epoch(run: _Run, epoch: int, planned: int) -> tuple[EpochStats, bool]:
    """Run up to ``planned`` steps of ``epoch`` (after skipping consumed batches); returns its stats and whether
    a callback asked to stop."""
    t0, dev, interval = time.perf_counter(), run.device, run.config.nan_check_interval
    losses: list[Tensor] = []  # detached 0-d device tensors: appending costs no kernel launch and no sync
    correct: list[Tensor] = []
    batches: Iterable[Batch] = _epoch_batches(run.source, epoch)
    if run.check_input:
        batches, run.check_input = _checked(batches, run.model, dev, "train batches"), False
        peek = iter(batches)
        first = next(peek, None)
        if first is not None:
            _check_fits(run, first[0], first[1])
            batches = itertools.chain([first], peek)
    it = itertools.islice(iter(batches), run.skip_batches, None)
    first_step, seen, i, stop, last = run.step, 0, 0, False, 0
    acc, start, epoch_len = run.config.accumulate_steps, run.skip_batches, run.skip_batches + planned
    run.model.train()
    for x, y in itertools.islice(it, planned):
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        pos = start + i  # accumulation groups of `acc` batches restart every epoch; the last one may be shorter
        group = pos // acc * acc
        size = min(acc, epoch_len - group)
        loss, logits = _update(run, x, y, 1.0 / size, pos + 1 - group == size)
        losses.append(loss.detach())
        correct.append((logits.argmax(1) == y).sum())
        seen += y.shape[0]
        i += 1
        run.step += 1
        if i % interval == 0:
            run.pbar.set_postfix(loss=f"{_check_finite(losses, last, i, epoch, first_step):.4f}", refresh=False)
            last = i
        run.pbar.update(1)
        if run.step_hooks:
            run.state.step, run.state.epoch, run.state.loss = run.step, epoch, loss.detach()
            if _fire(run.step_hooks, run.state):
                stop = True
                break
    if i == 0:
        raise DataError(f"train batches of epoch {epoch}: got no batches; expected {planned}")
    _check_finite(losses, last, i, epoch, first_step)
    stats = EpochStats(epoch=epoch, steps=i, train_loss=torch.stack(losses).float().mean().item(),
                       train_accuracy=100.0 * torch.stack(correct).sum().item() / seen,
                       lr=run.state.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
    mid_epoch = stop and i < planned  # resume must skip the batches of this epoch already consumed
    run.next_epoch, run.skip_batches = (epoch, run.skip_batches + i) if mid_epoch else (epoch + 1, 0)
    return stats, stop


def _save(run: _Run, path: str | os.PathLike[str]) -> str:
    position = {"step": run.step, "next_epoch": run.next_epoch, "skip_batches": run.skip_batches,
                "steps_per_epoch": run.steps_per_epoch, "total_steps": run.total_steps}
    st = run.state
    return save_training_state(path, model=run.model, optimizer=st.optimizer, scheduler=st.scheduler,
                               scaler=run.scaler, config=run.config, device=run.device, position=position,
                               history=[asdict(h) for h in st.history], source=run.source,
                               ema=run.ema.state_dict() if run.ema is not None else None)


def _resume(run: _Run, path: str | os.PathLike[str]) -> None:
    ckpt = load_training_state(path, run.config, run.steps_per_epoch, run.total_steps)
    st = run.state
    restore_training_state(ckpt, model=run.model, optimizer=st.optimizer, scheduler=st.scheduler,
                           scaler=run.scaler, device=run.device, source=run.source)
    if run.ema is not None and ckpt.get("ema") is not None:
        run.ema.load_state_dict(ckpt["ema"])
    pos = ckpt["position"]
    run.step, run.next_epoch, run.skip_batches = pos["step"], pos["next_epoch"], pos["skip_batches"]
    st.history[:] = [EpochStats(**h) for h in ckpt["history"]]
    run.pbar.update(run.step)


def _postfix(stats: EpochStats) -> dict[str, str]:
    shown = {"epoch": str(stats.epoch), "loss": f"{stats.train_loss:.4f}", "acc": f"{stats.train_accuracy:.1f}"}
    if stats.val_accuracy is not None:
        shown["val_acc"] = f"{stats.val_accuracy:.1f}"
    return shown


def _hooks(callbacks: Sequence[Any], name: str) -> list[Callable[[TrainState], Any]]:
    return [getattr(cb, name) for cb in callbacks if callable(getattr(cb, name, None))]


def _check_args(model: Any, config: Any, epochs: Any, checkpoint_path: Any, resume: bool) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    if not isinstance(config, TrainConfig):
        raise InvalidValue("config", type(config).__name__, "a nasforge.train.TrainConfig")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not (0 < epochs < math.inf):
        raise InvalidValue("epochs", epochs, "a positive number (fractions allowed, e.g. 0.5)")
    if resume and checkpoint_path is None:
        raise InvalidValue("resume", resume, "False unless checkpoint_path is given")


def _cross_entropy(label_smoothing: float) -> LossFn:
    def loss_fn(logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    return loss_fn


def _setup(model: nn.Module, source: BatchSource, config: TrainConfig, epochs: float, device: str | torch.device,
           callbacks: Sequence[Any], progress: bool, steps_per_epoch: int | None, loss_fn: LossFn | None) -> _Run:
    dev = resolve_device(device)
    check_precision(config.precision, dev, "precision")
    if config.devices is not None and config.devices > 1:
        warnings.warn(f"train.devices is {config.devices} but nasforge.train.train runs in one process: each step "
                      f"takes batch_size {config.batch_size} x accumulate_steps {config.accumulate_steps} images on "
                      f"{dev}; raise accumulate_steps (or set global_batch_size) to keep the recipe's batch",
                      stacklevel=3)
    spe = _steps_per_epoch(source, epochs, steps_per_epoch)
    total = max(1, int(math.floor(epochs * spe + 0.5)))
    model.to(dev)
    optimizer = build_optimizer(model, config)
    acc = config.accumulate_steps  # the schedule counts optimizer steps: ceil(batches / acc) per epoch
    opt_total = total // spe * -(-spe // acc) + -(-(total % spe) // acc)
    scheduler = build_scheduler(optimizer, config, -(-spe // acc), max(1, opt_total))
    scaler = torch.amp.GradScaler(dev.type) if config.precision == "fp16" else None
    ema = WeightEMA(model, config.ema_decay) if config.ema_decay is not None else None
    state = TrainState(model=model, optimizer=optimizer, scheduler=scheduler, config=config, total_steps=total,
                       ema=ema)
    pbar = tqdm(total=total, disable=not progress, unit="step", desc="train", dynamic_ncols=True, leave=False)
    return _Run(model=model, config=config, device=dev, source=source, steps_per_epoch=spe, total_steps=total,
                loss_fn=loss_fn or _cross_entropy(config.label_smoothing), state=state, scaler=scaler,
                step_hooks=_hooks(callbacks, "on_step_end"), epoch_hooks=_hooks(callbacks, "on_epoch_end"),
                pbar=pbar, ema=ema)


def train(model: nn.Module, train_batches: BatchSource, *, config: TrainConfig, epochs: float,
          device: str | torch.device = "cpu", val_batches: Iterable[Batch] | None = None,
          callbacks: Sequence[Any] = (), progress: bool = True, checkpoint_path: str | os.PathLike[str] | None = None,
          resume: bool = False, steps_per_epoch: int | None = None, loss_fn: LossFn | None = None) -> TrainResult:
    """Train ``model`` in place for ``epochs`` epochs (fractional allowed: 0.5 = half the steps of one epoch).

    ``train_batches`` is a re-iterable of ``(x, y)`` batches or a callable ``epoch -> iterable``; its ``len()``
    gives the steps per epoch unless ``steps_per_epoch`` is passed. After every epoch: validation on
    ``val_batches`` (:func:`evaluate`), a checkpoint at ``checkpoint_path`` (also when a callback stops the run),
    then the ``on_epoch_end`` callbacks. ``resume=True`` continues from ``checkpoint_path`` when that file exists
    (same config and steps per epoch required) and starts afresh otherwise. ``loss_fn(logits, y)`` replaces the
    default cross-entropy with ``config.label_smoothing``. Raises :class:`DivergedError` on a NaN/inf loss.
    """
    _check_args(model, config, epochs, checkpoint_path, resume)
    t0 = time.perf_counter()
    run = _setup(model, train_batches, config, epochs, device, callbacks, progress, steps_per_epoch, loss_fn)
    sha, stopped = None, False
    try:
        if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
            _resume(run, checkpoint_path)
        n_epochs = -(-run.total_steps // run.steps_per_epoch)
        while run.next_epoch < n_epochs and not stopped:
            epoch = run.next_epoch
            planned = min(run.steps_per_epoch, run.total_steps - epoch * run.steps_per_epoch) - run.skip_batches
            stats, stopped = _train_epoch(run, epoch, planned)
            if val_batches is not None:
                scored = run.ema.model if run.ema is not None else model
                val = evaluate(scored, _epoch_batches(val_batches, epoch), run.device)
                stats.val_loss, stats.val_accuracy = val["loss"], val["accuracy"]
            run.state.history.append(stats)
            run.pbar.set_postfix(_postfix(stats), refresh=True)
            if checkpoint_path is not None:
                sha = _save(run, checkpoint_path)
            run.state.epoch, run.state.step, run.state.stats = epoch, run.step, stats
            stopped = _fire(run.epoch_hooks, run.state) or stopped
    finally:
        run.pbar.close()
    if run.ema is not None:  # the averaged weights are the result (EfficientNet / MENAS evaluate them)
        run.ema.copy_to(model)
    history = run.state.history
    return TrainResult(history=list(history), final_val_accuracy=history[-1].val_accuracy if history else None,
                       wall_time_s=time.perf_counter() - t0, epochs_run=run.step / run.steps_per_epoch,
                       steps=run.step, stopped_early=stopped and run.step < run.total_steps, checkpoint_sha256=sha)
