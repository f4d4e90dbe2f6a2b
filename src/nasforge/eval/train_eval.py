"""Train-from-scratch evaluation: build the candidate's standalone network, train it, report validation accuracy.

The multi-trial protocol every method falls back to when no weight sharing is used: MENAS trains each network of
its population "with an early stop (30 epochs) to obtain its search accuracy" (menas.txt "Overview", step 2; "Experimental
Details" searches on 10% of ImageNet, and its random-search baseline trains each model for 30 epochs); the NAS-Bench-201 tables are
the same protocol run to completion (Dong & Yang 2020, Sec. 3). Each evaluation:

1. builds ``space.build(arch, input_shape, num_classes)`` (shape and classes from the data),
2. initialises it from a ``torch.Generator`` seeded with the trial's seed (:func:`init_weights`: PyTorch's default
   distributions, drawn from that generator, so no global RNG is touched),
3. trains it with :func:`nasforge.train.train` for ``epochs`` (fractional allowed) on the training split, with the
   batches shuffled and augmented by a second generator derived from the same seed,
4. re-estimates the BatchNorm running statistics on ``calib_batches`` training batches (shuffled with a seed
   derived from the trial's, no augmentation) when ``calibrate_bn`` says so (:func:`nasforge.train.bn.wants_calibration`:
   ``auto`` = when it trained fewer than :data:`~nasforge.train.bn.AUTO_CALIB_EPOCHS` (5) epochs or its weights
   were pruned / inherited; ``true``; ``false``) and scores it again: after a short training the statistics
   that training left lag the weights and a network can score at chance (issue 12);
5. returns ``Result(metrics={"accuracy": val %}, costs={"params", "flops"}, artifacts={"checkpoint": path},
   info={"checkpoint_sha256": ..., "bn_calibrated": ..., "bn_calib_images": ..., ...})``; the checkpoint,
   written once after scoring into ``context["trial_dir"]``, holds the weights and BatchNorm statistics (the
   calibrated ones when the network was calibrated) and small records -- ``config`` (the recipe), ``history``
   (per-epoch statistics), ``steps``, ``epochs``, ``bn_calibration`` -- but no optimizer, scheduler or generator
   state (:func:`nasforge.train.checkpoint.save_weights`): weight inheritance and export read weights only, and
   a trial interrupted by a crash is evaluated again from the start, so nothing resumes from it (issue 12: a
   third of the size with RMSProp). ``info["accuracy_uncalibrated"]`` keeps the score with the statistics
   training left.

Subclasses change what is trained without copying :meth:`TrainEvaluator.evaluate`: :meth:`~TrainEvaluator._start_model`
gives the network to train and its epochs (default: built from scratch, seeded, ``epochs``), and
:meth:`~TrainEvaluator._after_train` runs after training inside the trial's seeded scope (default: nothing); both
receive the trial's :class:`TrialRun` and may add entries to ``run.info`` (MENAS's inheriting evaluator,
:mod:`nasforge.eval.menas`, uses both).

The evaluator is picklable for the process pool and Ray: it carries the data *config*, and each process loads the
data once (a per-process cache keyed by the config).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Union

import numpy as np
import torch
import torch.nn as nn
from pydantic import Field, field_validator, model_validator

from ..arch import Architecture
from ..data import DataConfig, DataSplits, load_data
from ..device import seeded_torch, torch_threads
from ..errors import InvalidValue
from ..spaces.base import SearchSpace
from ..train import TrainConfig, evaluate, resolve_device, train
from ..train.checkpoint import save_weights
from ..train.bn import CALIB_BATCHES, calibrate_for_scoring, check_calibrate_mode, wants_calibration
from ..trial import Result
from .base import Evaluator, EvaluatorConfig, register_evaluator
from .oneshot import fixed_batches

if TYPE_CHECKING:
    from ..data import DataConfig, DataSplits
    from ..spaces.base import SearchSpace
    from ..train import TrainConfig, TrainResult

__all__ = ["TrainEvaluator", "TrainEvaluatorConfig", "TrialRun", "init_weights", "calibration_seed"]

CHECKPOINT_NAME = "checkpoint.pt"


def init_weights(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every weight matrix / kernel (and its bias) from PyTorch's default distributions with ``generator``.

    Convolutions and linear layers get ``kaiming_uniform_(a=sqrt(5))`` weights and ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` biases, which is what their ``reset_parameters`` draw from the global generator; 1-D
    parameters (normalisation affine terms) keep their deterministic defaults. Returns ``model``.
    """
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
                continue
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            bias = getattr(module, "bias", None)
            if isinstance(bias, nn.Parameter):
                fan_in = weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(bias, -bound, bound, generator=generator)
    return model


@dataclass
class TrialRun:
    """One evaluation's setting, handed to the :class:`TrainEvaluator` hooks.

    ``init_seed`` / ``data_seed`` / ``torch_seed`` / ``calib_seed`` derive from the trial seed; ``checkpoint`` is
    where the trained weights are written (``None`` without a trial folder); ``info`` collects extra ``Result.info``
    entries; ``weights`` says how the starting weights were changed (``"pruned"``, ``"inherited"``; ``None``:
    a fresh initialisation), which makes ``calibrate_bn: auto`` calibrate whatever the epochs.
    """

    arch: Architecture
    seed: int | None
    context: dict[str, Any]
    device: torch.device
    input_shape: tuple[int, int, int]
    num_classes: int
    splits: "DataSplits"
    init_seed: int
    data_seed: int
    torch_seed: int
    checkpoint: Path | None
    info: dict[str, Any] = field(default_factory=dict)
    calib_seed: int = 0
    weights: str | None = None


def calibration_seed(seed: int | None) -> int:
    """The seed of a trial's BN-calibration batches, derived from the trial seed (also used to re-calibrate at
    export, which then reproduces the trial's statistics)."""
    return int(np.random.SeedSequence(0 if seed is None else seed, spawn_key=(2,)).generate_state(1)[0] % (2 ** 31))


@functools.lru_cache(maxsize=2)
def _load_splits(config_json: str) -> "DataSplits":
    """Per-process cache of loaded data (keyed by the data config's JSON)."""
    return load_data(json.loads(config_json))


class TrainEvaluator(Evaluator):
    """Train each architecture from scratch on ``data`` and score it by validation accuracy (%).

    ``data``: a :class:`~nasforge.data.DataConfig`, a mapping of its fields, or loaded
    :class:`~nasforge.data.DataSplits` (default: the embedded Fashion-MNIST). ``train_config``: a
    :class:`~nasforge.train.TrainConfig` (default: the ``nb201`` recipe). ``device``: ``"auto"``, ``"cpu"``,
    ``"cuda"``...; ``context["device"]`` overrides it per trial. ``split``: the split scored (``"val"``).
    ``checkpoints``: save the trained weights (and BN statistics) when the study gives a ``context["trial_dir"]``.
    ``threads``: torch intra-op threads during an evaluation (``None``: leave as is).

    ``calibrate_bn``: ``"auto"`` (default), ``True`` or ``False``: re-estimate the BatchNorm statistics on
    ``calib_batches`` (20) training batches before scoring (module docstring, step 4).
    """

    def __init__(self, space: "SearchSpace", data: "DataConfig | Mapping[str, Any] | DataSplits | None" = None, *,
                 epochs: float = 1.0, train_config: "TrainConfig | None" = None, device: str = "auto",
                 eval_batch_size: int = 512, input_shape: tuple[int, int, int] | None = None,
                 num_classes: int | None = None, checkpoints: bool = True, threads: int | None = None,
                 split: str = "val", calibrate_bn: str | bool = "auto", calib_batches: int = CALIB_BATCHES) -> None:
        if not isinstance(space, SearchSpace):
            raise InvalidValue("space", type(space).__name__, "a SearchSpace")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not epochs > 0:
            raise InvalidValue("epochs", epochs, "a number > 0 (fractions train part of an epoch)")
        if isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise InvalidValue("eval_batch_size", eval_batch_size, "a positive int")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise InvalidValue("threads", threads, "a positive int or None")
        if isinstance(calib_batches, bool) or not isinstance(calib_batches, int) or calib_batches < 1:
            raise InvalidValue("calib_batches", calib_batches, "a positive int")
        self.calibrate_bn, self.calib_batches = check_calibrate_mode(calibrate_bn), calib_batches
        self.space = space
        self._splits: DataSplits | None = data if isinstance(data, DataSplits) else None
        self.data_config: DataConfig = self._splits.config if self._splits else DataConfig.from_dict(data)
        self.train_config = train_config if train_config is not None else TrainConfig.from_recipe("nb201")
        if not isinstance(self.train_config, TrainConfig):
            raise InvalidValue("train_config", type(train_config).__name__, "a nasforge.train.TrainConfig")
        self.epochs, self.device, self.eval_batch_size = float(epochs), device, eval_batch_size
        self.checkpoints, self.threads, self.split = bool(checkpoints), threads, split
        self._requested = (input_shape, num_classes)
        self._spec: tuple[tuple[int, int, int], int] | None = None
        self.name = f"train:{space.name}:{self.data_config.source}:{self.epochs:g}ep"

    # ------------------------------------------------------------------------------------------------ data
    def splits(self) -> "DataSplits":
        """The loaded data (loaded on first use, once per process)."""
        if self._splits is None:
            self._splits = _load_splits(self.data_config.model_dump_json())
        return self._splits

    @property
    def input_spec(self) -> tuple[tuple[int, int, int], int]:
        """``(input_shape, num_classes)`` the networks are built for: the data's. A requested ``input_shape`` /
        ``num_classes`` (the search config's) must equal them, else a one-line :class:`InvalidValue` naming the
        field, e.g. ``num_classes: got 1000; allowed: the data's 10 classes (or leave it unset)``."""
        if self._spec is not None:
            return self._spec
        splits = self.splits()
        shape, classes = tuple(splits.input_shape), splits.num_classes
        want_shape, want_classes = self._requested
        if want_shape is not None and tuple(want_shape) != shape:
            raise InvalidValue("input_shape", list(want_shape), f"the data's shape {list(shape)} (or leave it unset)")
        if want_classes is not None and want_classes != classes:  # fewer can't score every label; more would
            # train a head with outputs no label ever reaches (a 1000-way head on a 10-class set)
            raise InvalidValue("num_classes", want_classes, f"the data's {classes} classes (or leave it unset)")
        splits[self.split]  # the scored split: empty, it fails now (DataError), not in every trial
        self._spec = (shape, classes)
        return self._spec

    def release_data(self) -> None:
        """Drop this process's copy of the data, keeping the checked input spec: the driver of a process-pool or
        Ray search calls it after its up-front checks, since the workers load (and cache) their own copy."""
        self._splits = None
        _load_splits.cache_clear()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_splits"] = None  # workers reload (and cache) the data from its config
        return state

    # ------------------------------------------------------------------------------------------------ evaluate
    def _trial_run(self, arch: Architecture, seed: int | None, context: Mapping[str, Any] | None) -> TrialRun:
        """The :class:`TrialRun` of one evaluation: device, data, the seeds derived from ``seed``, checkpoint."""
        context = dict(context or {})
        device = resolve_device(context.get("device") or self.device)
        shape, classes = self.input_spec
        init_seed, data_seed, torch_seed = (int(s) for s in np.random.SeedSequence(0 if seed is None else seed)
                                            .generate_state(3) % (2 ** 31))
        calib_seed = calibration_seed(seed)
        ckpt = None
        if self.checkpoints and context.get("trial_dir"):
            ckpt = Path(context["trial_dir"]) / CHECKPOINT_NAME
        return TrialRun(arch=arch, seed=seed, context=context, device=device, input_shape=shape, num_classes=classes,
                        splits=self.splits(), init_seed=init_seed, data_seed=data_seed, torch_seed=torch_seed,
                        checkpoint=ckpt, calib_seed=calib_seed)

    def _start_model(self, run: TrialRun) -> tuple[nn.Module, float]:
        """Hook: the network to train and for how many epochs. Default: ``space.build`` with :func:`init_weights`
        from ``run.init_seed``, trained for ``self.epochs``."""
        model = self.space.build(run.arch, run.input_shape, run.num_classes)
        return init_weights(model, torch.Generator().manual_seed(run.init_seed)), self.epochs

    def _train_config(self, run: TrialRun) -> "TrainConfig":
        """Hook: the training recipe of this trial. Default: ``self.train_config``."""
        return self.train_config

    def _after_train(self, run: TrialRun, model: nn.Module, out: "TrainResult") -> None:
        """Hook: called after training (and BN calibration), inside the trial's seeded scope; may add to
        ``run.info``. Default: none."""

    def calibration_batches(self, splits: "DataSplits", batch_size: int, device: torch.device,
                            seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The ``calib_batches`` training batches BN is calibrated on: shuffled with ``seed``, no augmentation."""
        return fixed_batches(splits, "train", self.calib_batches * batch_size, batch_size, device, seed=seed,
                             train=True)

    def _calibrate(self, run: TrialRun, model: nn.Module, recipe: "TrainConfig", out: "TrainResult",
                   scored: Any) -> float | None:
        """BN calibration before scoring (module docstring, step 4): records ``bn_*`` in ``run.info``; returns the
        new score, or ``None`` when not calibrated."""
        wanted, reason = wants_calibration(self.calibrate_bn, epochs=out.epochs_run, modified=run.weights)
        if not wanted:
            run.info.update(bn_calibrated=False, bn_calib_batches=0, bn_calib_images=0, bn_calib_reason=reason)
            return None
        batches = self.calibration_batches(run.splits, recipe.batch_size, run.device, run.calib_seed)
        record = calibrate_for_scoring(model, batches, self.calib_batches, run.device, reason=reason)
        run.info.update(record)
        if not record["bn_calibrated"]:  # no BatchNorm: nothing changed
            return None
        run.info["accuracy_uncalibrated"] = out.final_val_accuracy
        return evaluate(model, scored, run.device)["accuracy"]

    def _save(self, run: TrialRun, model: nn.Module, recipe: "TrainConfig", out: "TrainResult") -> str | None:
        """The trial's weights-only checkpoint (module docstring, step 5); its SHA-256, or ``None`` without one."""
        if run.checkpoint is None:
            return None
        bn = {k: run.info[k] for k in ("bn_calibrated", "bn_calib_batches", "bn_calib_images", "bn_calib_reason")
              if k in run.info}
        return save_weights(run.checkpoint, model, config=recipe.model_dump(), steps=out.steps,
                            epochs=out.epochs_run, history=[dataclasses.asdict(h) for h in out.history],
                            bn_calibration=bn)

    def evaluate(self, arch: Architecture, *, seed: int | None = None,
                 context: Mapping[str, Any] | None = None) -> Result:
        """Train ``arch`` from scratch (seeded) and return its validation accuracy, costs and checkpoint."""
        arch = self.space.validate(arch)
        run = self._trial_run(arch, seed, context)
        device, splits = run.device, run.splits
        # seeded_torch: dropout masks (and the default init that init_weights redraws) come from torch's default
        # generator; scoping it to this trial makes a seeded trial reproduce whatever ran before it.
        with torch_threads(self.threads), seeded_torch(run.torch_seed, device):
            model, epochs = self._start_model(run)
            recipe = self._train_config(run)
            batches = splits.loader("train", recipe.batch_size, device=device, seed=run.data_seed)
            scored = splits.loader(self.split, self.eval_batch_size, device=device, train=False)
            out = train(model, batches, config=recipe, epochs=epochs, device=device,
                        val_batches=scored, progress=False)
            calibrated = self._calibrate(run, model, recipe, out, scored)
            sha = self._save(run, model, recipe, out)
            self._after_train(run, model, out)
        last = out.history[-1] if out.history else None
        info: dict[str, Any] = {"epochs": out.epochs_run, "steps": out.steps, "train_seconds": out.wall_time_s,
                                "device": str(device), "seed": seed, "split": self.split,
                                "train_loss": last.train_loss if last else None,
                                "train_accuracy": last.train_accuracy if last else None, **run.info}
        artifacts = {}
        if sha is not None:
            artifacts["checkpoint"] = str(run.checkpoint)
            info["checkpoint_sha256"] = sha
        accuracy = calibrated if calibrated is not None else out.final_val_accuracy
        accuracy = accuracy if accuracy is not None else float("nan")
        shape, classes = run.input_shape, run.num_classes
        costs = {"params": float(self.space.params(arch, shape, classes)),
                 "flops": float(self.space.flops(arch, shape, classes))}
        return Result(metrics={"accuracy": float(accuracy)}, costs=costs, artifacts=artifacts, info=info)


@register_evaluator("train")
class TrainEvaluatorConfig(EvaluatorConfig):
    """Train each candidate from scratch (:class:`~nasforge.eval.train_eval.TrainEvaluator`) on ``data``.

    ``recipe`` names a :data:`nasforge.train.RECIPES` entry and ``train`` overrides its fields (e.g.
    ``{batch_size: 128, lr: 0.05}``); ``epochs`` may be fractional for quick CPU searches. ``calibrate_bn``
    (``auto`` | ``true`` | ``false``) and ``calib_batches`` (20): BN re-calibration before scoring.
    """

    kind: Literal["train"] = "train"
    epochs: float = Field(1.0, gt=0)
    recipe: str = "nb201"
    train: dict[str, Any] = Field(default_factory=dict)
    eval_batch_size: int = Field(512, ge=1)
    checkpoints: bool = True
    threads: int | None = Field(None, ge=1)
    calibrate_bn: Union[Literal["auto"], bool] = "auto"
    calib_batches: int = Field(CALIB_BATCHES, ge=1)

    uses_data: ClassVar[bool] = True
    exportable: ClassVar[bool] = True

    @field_validator("calibrate_bn", mode="before")
    @classmethod
    def _calibrate_mode(cls, value: Any) -> Any:
        return check_calibrate_mode(value, "evaluator.calibrate_bn")

    @model_validator(mode="after")
    def _recipe(self) -> "TrainEvaluatorConfig":
        try:
            TrainConfig.from_recipe(self.recipe, **self.train)  # recipe name and overrides, before any trial
        except TypeError:  # a key that is not a field name
            raise InvalidValue("evaluator.train", self.train, "a mapping of TrainConfig fields") from None
        except InvalidValue as exc:
            field = "recipe" if exc.field == "recipe" else "train." + exc.field
            if exc.field == "field":  # an unknown TrainConfig field: its name is the value
                field, exc = "train", InvalidValue("train", exc.value, "a TrainConfig field: " + ", ".join(exc.allowed))
            raise InvalidValue("evaluator." + field, exc.value, exc.allowed) from None
        return self

    def reported(self) -> tuple[set[str], set[str]]:
        """``accuracy`` (on the validation split); ``params`` and ``flops`` (:meth:`TrainEvaluator.evaluate`)."""
        return {"accuracy"}, {"params", "flops"}

    def check_search(self, search: Any) -> None:
        """Candidates are scored on the validation split, so the data must leave one (``val_fraction > 0``)."""
        DataConfig.from_dict(search.data).require_split("val", f"evaluator kind {self.kind!r} scores candidates "
                                                               "on the validation split")

    def build(self, space: "SearchSpace", *, data: Mapping[str, Any] | None, device: str,
              input_shape: tuple[int, int, int] | None, num_classes: int | None) -> "TrainEvaluator":
        return TrainEvaluator(space, data, epochs=self.epochs, train_config=TrainConfig.from_recipe(self.recipe, **self.train),
                              device=device, eval_batch_size=self.eval_batch_size, input_shape=input_shape,
                              num_classes=num_classes, checkpoints=self.checkpoints, threads=self.threads,
                              calibrate_bn=self.calibrate_bn, calib_batches=self.calib_batches)
