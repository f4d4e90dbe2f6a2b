"""MENAS's evaluator: train a net, explore its lottery tickets; fine-tune a ticket; train a child from its parent.

Wei et al., *Multi-trial Neural Architecture Search with Lottery Tickets* (menas.txt), "Overview" steps 2 and 4,
"Exploring Lottery Tickets", "Individual Weight Sharing", "Experimental Details". The trial's kind comes from the
strategy (``context["candidate"]["kind"]``, :class:`~nasforge.strategies.menas.MenasStrategy`):

* ``init`` — a random net, trained from scratch for ``epochs_init`` (E_init, 30: "trained with an early stop
  (30 epochs)");
* ``child`` — with ``weight_sharing`` (individual weight sharing) the child starts from its parent's trained
  weights: "the child networks copy weights of overlapped layers from their trained parents, while randomly
  initializing newly generated layers" (:func:`~nasforge.prune.inherit_weights`: copy / truncate / crop / pad /
  partial / fresh per tensor), then trains ``epochs_child`` epochs (E_child, 20: "with individual weight sharing,
  the training epochs of child networks ... are reduced to 20"). With ``weight_sharing=False`` (the ablation)
  children train from scratch, also for ``epochs_child`` epochs, so only the initialisation differs;
* ``ticket`` — a pruned net: its weights are truncated from the net's (Eq. 1), its BatchNorm statistics are
  re-calibrated on ``calib_batches`` training batches (step 2(c)), then it is fine-tuned ``epochs_finetune``
  epochs (step 2(e): 3) with the recipe, warm-up included, the warm-up scaled to the fine-tune's length (below).

Ticket warm-up. "Experimental Details" gives one recipe for the search, without an exception for tickets: "the
learning rate is first warmed up from 0 to 0.064, then decayed by 0.97 every 2.4 epochs". A ticket starts with a
fresh optimizer like every trial (RMSProp's squared-gradient averages at zero make the first steps large, which is
what the warm-up absorbs), so starting it at the peak rate would hit the inherited weights with the largest steps
of the search. The paper does not give the warm-up's length (the recipe's 5 epochs are EfficientNet's). Kept at 5
epochs, a 3-epoch fine-tune would end still warming up (at 3/5 of 0.064) and never decay, which is not the
recipe's shape either. So a ticket warms up for the same share of its fine-tune as an init net does of its
training: ``warmup_epochs * epochs_finetune / epochs_init`` (5 * 3 / 30 = 0.5 epochs; never more than the
recipe's), then follows the recipe's decay. ``warmup_finetune`` sets the length in epochs instead (0: no warm-up,
the behaviour before issue 16; 5: the recipe's unscaled). Children (20 epochs, fresh layers) keep the recipe's
warm-up as it is.

Tickets and children load the parent's checkpoint (``context["parent_checkpoint"]``) verified against its SHA-256
(:func:`nasforge.io.load_checkpoint`; weights and BN statistics in ``ckpt["model"]``, written weights-only by
:func:`~nasforge.train.checkpoint.save_weights`; a full training checkpoint is read too) — the paper records
"the path strings that save the checkpoints of each network and its parent". A missing, corrupt or mismatched
checkpoint RAISES, so the trial fails with that reason: never a silent fallback to a random initialisation.
``Result.info`` records ``inherited_from`` (``{"trial", "checkpoint", "sha256"}``) and ``inheritance`` (counts per
kind); the full per-tensor report is written to ``trial_dir/inheritance.json``.

After an ``init`` or ``child`` net has trained, and when ``proposals > 0``, its lottery tickets are explored
(:func:`~nasforge.prune.explore_lottery_tickets`, steps 2(a)-(d)): ``proposals`` (40) pruning proposals, BN
re-calibration on ``calib_batches`` training batches (the paper's "a few iterations"; default
:data:`~nasforge.prune.CALIB_STEPS` = 20 batches of the training batch size), ranking by accuracy on the first
``rank_images`` images of the validation split (``None``: all of it, the paper's "inference accuracy" on
validation data). The FULL ranked list (best first; ties: fewer FLOPs) goes to ``Result.info["lottery_tickets"]``
as ``{"arch": compact string, "accuracy", "flops", "params"}`` — the strategy queues the top ones as tickets —
and ``Result.info["lottery_cost"]`` holds the exploration timings plus the net's own ``train_seconds``, so the
cost of exploring tickets relative to training can be computed ("the cost of exploring Lottery Tickets is minor
since back-propagation is not included"). The exploration is seeded from the trial seed.

Scoring. Every trained net is scored on the validation split after its BatchNorm statistics are re-estimated on
``calib_batches`` training batches when ``calibrate_bn`` says so (:class:`~nasforge.eval.train_eval.TrainEvaluator`
step 4): with ``auto`` (the default) tickets (pruned weights) and weight-sharing children (inherited weights)
always are, init nets when they trained fewer than 5 epochs. The calibrated statistics are saved with the
checkpoint, which tickets and children then inherit; ``Result.info`` records ``bn_calibrated``,
``bn_calib_images`` and the score before calibration (``accuracy_uncalibrated``).

Training uses the ``menas`` recipe (RMSProp, warm-up, lr x 0.97 every 2.4 epochs; :mod:`nasforge.train.config`);
dropout 0.2 is in the space's head. Checkpoints are required (tickets and children inherit from them): run the
study with a run folder, so that each trial gets a ``trial_dir``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional

import numpy as np
import torch.nn as nn
from pydantic import Field, model_validator

from ..arch import Architecture
from ..data.loader import Batches
from ..errors import InvalidValue
from ..io import CheckpointError, load_checkpoint, sha256_file, write_json
from ..prune import (
    CALIB_STEPS,
    PROPOSALS,
    check_state_matches,
    explore_lottery_tickets,
    inherit_weights,
    inheritance_summary,
)
from ..train import TrainConfig, calibrate_bn
from .base import register_evaluator
from .train_eval import TrainEvaluator, TrainEvaluatorConfig, TrialRun

if TYPE_CHECKING:
    from ..data import DataConfig, DataSplits
    from ..data.loader import Batches
    from ..spaces.base import SearchSpace
    from ..train import TrainResult

__all__ = ["MenasEvaluator", "MenasEvaluatorConfig", "INHERITANCE_NAME", "TRIAL_KINDS"]

INHERITANCE_NAME = "inheritance.json"
#: trial kinds the evaluator knows (MenasStrategy's Candidate.info["kind"])
TRIAL_KINDS = ("init", "ticket", "child")


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidValue(name, value, "a number > 0 (fractions train part of an epoch)")
    return float(value)


def _count(name: str, value: Any, low: int, none_ok: bool = False) -> int | None:
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidValue(name, value, f"an int >= {low}" + (" or None" if none_ok else ""))
    return value


class MenasEvaluator(TrainEvaluator):
    """Train / inherit / fine-tune by trial kind and explore lottery tickets (see the module docstring).

    ``epochs_init`` 30 (E_init), ``epochs_child`` 20 (E_child), ``epochs_finetune`` 3; ``proposals`` 40 pruning
    proposals per trained net (0 disables the exploration); ``calib_batches`` BN re-calibration batches;
    ``rank_images`` validation images used to rank proposals (``None``: all); ``weight_sharing`` (children
    inherit their parent's weights); ``warmup_finetune`` a ticket's warm-up in epochs (``None``: the recipe's
    scaled to ``epochs_finetune``, see the module docstring); ``calibrate_bn`` BN calibration before scoring (module
    docstring, "Scoring"). ``train_config`` defaults to the ``menas`` recipe.
    Other arguments as
    :class:`~nasforge.eval.train_eval.TrainEvaluator`; checkpoints are always on.
    """

    def __init__(self, space: "SearchSpace", data: "DataConfig | Mapping[str, Any] | DataSplits | None" = None, *,
                 epochs_init: float = 30.0, epochs_child: float = 20.0, epochs_finetune: float = 3.0,
                 proposals: int | None = None, calib_batches: int | None = None, rank_images: int | None = None,
                 weight_sharing: bool = True, train_config: "TrainConfig | None" = None, device: str = "auto",
                 eval_batch_size: int = 512, input_shape: tuple[int, int, int] | None = None,
                 num_classes: int | None = None, threads: int | None = None, split: str = "val",
                 warmup_finetune: float | None = None, calibrate_bn: str | bool = "auto") -> None:
        if train_config is None:
            train_config = TrainConfig.from_recipe("menas")
        calib_batches = _count("calib_batches", CALIB_STEPS if calib_batches is None else calib_batches, 1)
        super().__init__(space, data, epochs=_positive("epochs_init", epochs_init), train_config=train_config,
                         device=device, eval_batch_size=eval_batch_size, input_shape=input_shape,
                         num_classes=num_classes, checkpoints=True, threads=threads, split=split,
                         calibrate_bn=calibrate_bn, calib_batches=calib_batches)
        self.epochs_by_kind = {"init": float(epochs_init), "child": _positive("epochs_child", epochs_child),
                               "ticket": _positive("epochs_finetune", epochs_finetune)}
        self.proposals = _count("proposals", PROPOSALS if proposals is None else proposals, 0)
        self.rank_images = _count("rank_images", rank_images, 1, none_ok=True)
        if warmup_finetune is not None and (isinstance(warmup_finetune, bool)
                                            or not isinstance(warmup_finetune, (int, float)) or warmup_finetune < 0):
            raise InvalidValue("warmup_finetune", warmup_finetune, "a number of epochs >= 0, or None (scaled)")
        self.warmup_finetune = None if warmup_finetune is None else float(warmup_finetune)
        if not isinstance(weight_sharing, bool):
            raise InvalidValue("weight_sharing", weight_sharing, "true or false")
        self.weight_sharing = weight_sharing
        if not all(callable(getattr(space, m, None)) for m in ("layer_modules", "prunable_layers", "with_pruning")):
            raise InvalidValue("space", space.name, "a space with layer ids and channel pruning (menas-mt, menas-ws)")
        self.name = f"menas:{space.name}:{self.data_config.source}"

    # ------------------------------------------------------------------------------------------------ hooks
    def _kind(self, run: TrialRun) -> str:
        kind = (run.context.get("candidate") or {}).get("kind", "init")
        if kind not in TRIAL_KINDS:
            raise InvalidValue("candidate kind", kind, TRIAL_KINDS)
        return kind

    def _seeds(self, run: TrialRun) -> tuple[int, int]:
        """Seeds of BN re-calibration batches and of the ticket search, derived from the trial seed."""
        seq = np.random.SeedSequence(0 if run.seed is None else run.seed, spawn_key=(1,))
        calib, search = (int(s) for s in seq.generate_state(2) % (2 ** 31))
        return calib, search

    @property
    def ticket_warmup_epochs(self) -> float:
        """Warm-up of a ticket's fine-tune in epochs: ``warmup_finetune``, or the recipe's warm-up scaled by
        ``epochs_finetune / epochs_init`` (capped at the recipe's; see the module docstring, "Ticket warm-up")."""
        if self.warmup_finetune is not None:
            return self.warmup_finetune
        w = self.train_config.warmup_epochs
        return min(w, w * self.epochs_by_kind["ticket"] / self.epochs_by_kind["init"])

    def _train_config(self, run: TrialRun) -> "TrainConfig":
        """The recipe; a ticket's with its warm-up scaled to the fine-tune (:attr:`ticket_warmup_epochs`)."""
        if self._kind(run) == "ticket":
            return self.train_config.model_copy(update={"warmup_epochs": self.ticket_warmup_epochs})
        return self.train_config

    def _start_model(self, run: TrialRun) -> tuple[nn.Module, float]:
        """init: from scratch; child: inherit (or from scratch without weight sharing); ticket: truncate the
        net's weights (Eq. 1), then re-calibrate BN (step 2(c))."""
        kind = self._kind(run)
        run.info["kind"] = kind
        model, _ = super()._start_model(run)  # seeded initialisation: what inheritance does not overwrite
        if kind == "ticket" or (kind == "child" and self.weight_sharing):
            self._inherit(run, model, kind)
            run.weights = "pruned" if kind == "ticket" else "inherited"  # calibrate_bn: auto calibrates before scoring
        if kind == "ticket":
            batches = run.splits.loader("train", self.train_config.batch_size, device=run.device,
                                        seed=self._seeds(run)[0])
            model.to(run.device)
            run.info["bn_calibration_batches"] = calibrate_bn(model, batches, self.calib_batches, run.device)
        return model, self.epochs_by_kind[kind]

    def _after_train(self, run: TrialRun, model: nn.Module, out: "TrainResult") -> None:
        """Steps 2(a)-(d) after an init / child net has trained (and was scored): the ranked pruning proposals."""
        if run.info["kind"] == "ticket" or self.proposals == 0:
            return
        calib = run.splits.loader("train", self.train_config.batch_size, device=run.device, seed=self._seeds(run)[0])
        t0 = time.perf_counter()
        found = explore_lottery_tickets(model, self.space, run.arch, input_shape=run.input_shape,
                                        num_classes=run.num_classes, calib_batches=calib,
                                        rank_batches=self._rank_batches(run), k=self.proposals, top_k=1,
                                        calib_steps=self.calib_batches,
                                        rng=np.random.default_rng(self._seeds(run)[1]), device=run.device)
        ranked = sorted(found.proposals, key=lambda t: (-t.accuracy, t.flops))  # stable: as the tickets are
        run.info["lottery_tickets"] = [{"arch": self.space.format(t.arch), "accuracy": t.accuracy, "flops": t.flops,
                                        "params": t.params} for t in ranked]
        run.info["lottery_cost"] = {**found.timings, "explore_s": time.perf_counter() - t0,
                                    "train_seconds": out.wall_time_s}

    # ------------------------------------------------------------------------------------------------ parts
    def _rank_batches(self, run: TrialRun) -> "Batches":
        """The first ``rank_images`` images of the scored split, in order (no augmentation)."""
        ds = run.splits[self.split]
        if self.rank_images is not None and len(ds) > self.rank_images:
            ds = ds.subset(np.arange(self.rank_images), name=f"{ds.name}[:{self.rank_images}]")
        return Batches(ds, self.eval_batch_size, train=False, transform=run.splits.transform(), device=run.device)

    def _parent_state(self, run: TrialRun, kind: str) -> tuple[Architecture, dict[str, Any], str, str]:
        """The parent's architecture, verified weights, checkpoint path and SHA-256; raises when any is missing."""
        ctx = run.context
        parent_id = (ctx.get("candidate") or {}).get("inherit_from")
        who = f"parent trial {parent_id}" if parent_id is not None else "parent trial"
        parent_arch = ctx.get("parent_arch")
        if not isinstance(parent_arch, Architecture):
            raise InvalidValue(f"parent_arch of a {kind} trial", parent_arch,
                               f"the Architecture of its {who} (a {kind} inherits its parent's weights)")
        path = ctx.get("parent_checkpoint")
        if not path:
            raise CheckpointError(f"parent checkpoint of a {kind} trial: {who} has none recorded; allowed: a "
                                  "complete parent trial with a checkpoint (MENAS never falls back to random init)")
        sha = ctx.get("parent_checkpoint_sha256")
        ckpt = load_checkpoint(path, sha256=sha)
        state = ckpt.get("model") if isinstance(ckpt, Mapping) else None
        if not isinstance(state, Mapping):
            raise CheckpointError(f"checkpoint {str(path)!r} of {who}: no 'model' state dict; expected a nasforge "
                                  "training checkpoint")
        parent_arch = self.space.validate(parent_arch)
        check_state_matches(state, self.space, parent_arch, run.input_shape, run.num_classes,
                            field=f"checkpoint {str(path)!r} of {who}")
        return parent_arch, dict(state), str(path), sha or sha256_file(path)

    def _inherit(self, run: TrialRun, model: nn.Module, kind: str) -> None:
        """Individual weight sharing / Eq. 1 truncation from the parent's checkpoint into ``model``."""
        parent_arch, state, path, sha = self._parent_state(run, kind)
        report = inherit_weights(model, state, child_layers=self.space.layer_modules(run.arch),
                                 parent_layers=self.space.layer_modules(parent_arch))
        parent_id = (run.context.get("candidate") or {}).get("inherit_from")
        run.info["inherited_from"] = {"trial": parent_id, "checkpoint": path, "sha256": sha}
        run.info["inheritance"] = inheritance_summary(report)
        if run.context.get("trial_dir"):
            write_json(Path(run.context["trial_dir"]) / INHERITANCE_NAME,
                       {"kind": kind, "parent_trial": parent_id, "parent_arch": self.space.format(parent_arch),
                        "checkpoint": path, "sha256": sha, "summary": run.info["inheritance"], "tensors": report})


@register_evaluator("menas")
class MenasEvaluatorConfig(TrainEvaluatorConfig):
    """MENAS's evaluator (:class:`~nasforge.eval.menas.MenasEvaluator`): epochs by trial kind, weight inheritance,
    lottery-ticket exploration (menas.txt "Overview" steps 2 and 4; defaults are the paper's).

    ``epochs_init`` (E_init 30), ``epochs_child`` (E_child 20), ``epochs_finetune`` (tickets, 3); ``proposals``
    pruning proposals per trained net (40; 0 disables the exploration), ``calib_batches`` BN re-calibration
    batches (the paper's "a few iterations"; 20), ``rank_images`` validation images that rank the proposals
    (``null``: all), ``weight_sharing`` (children inherit their parent's weights; ``false`` is the ablation that
    trains them from scratch), ``warmup_finetune`` (a ticket's warm-up in epochs; ``null``: the recipe's warm-up
    scaled by ``epochs_finetune / epochs_init``, 0.5 epochs with the paper's numbers; the paper gives no length).
    ``recipe`` defaults to ``menas``. ``epochs`` does not apply (use the three above)
    and ``checkpoints`` must stay on: tickets and children inherit from them.
    """

    kind: Literal["menas"] = "menas"  # type: ignore[assignment]
    epochs: Optional[float] = Field(None, exclude=True)  # type: ignore[assignment]  # not used: epochs by kind
    recipe: str = "menas"
    epochs_init: float = Field(30.0, gt=0)
    epochs_child: float = Field(20.0, gt=0)
    epochs_finetune: float = Field(3.0, gt=0)
    proposals: int = Field(40, ge=0)
    calib_batches: int = Field(20, ge=1)
    rank_images: int | None = Field(None, ge=1)
    weight_sharing: bool = True
    warmup_finetune: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _menas_fields(self) -> "MenasEvaluatorConfig":
        if self.epochs is not None:
            raise InvalidValue("evaluator.epochs", self.epochs, "not set for kind 'menas' (use epochs_init, "
                               "epochs_child, epochs_finetune)")
        if not self.checkpoints:
            raise InvalidValue("evaluator.checkpoints", False, "true for kind 'menas' (lottery tickets and children "
                               "inherit weights from the checkpoints)")
        return self

    def build(self, space: "SearchSpace", *, data: Mapping[str, Any] | None, device: str,
              input_shape: tuple[int, int, int] | None, num_classes: int | None) -> "MenasEvaluator":
        return MenasEvaluator(space, data, epochs_init=self.epochs_init, epochs_child=self.epochs_child,
                              epochs_finetune=self.epochs_finetune, proposals=self.proposals,
                              calib_batches=self.calib_batches, rank_images=self.rank_images,
                              weight_sharing=self.weight_sharing, warmup_finetune=self.warmup_finetune,
                              train_config=TrainConfig.from_recipe(self.recipe, **self.train), device=device,
                              eval_batch_size=self.eval_batch_size, input_shape=input_shape,
                              num_classes=num_classes, threads=self.threads, calibrate_bn=self.calibrate_bn)
