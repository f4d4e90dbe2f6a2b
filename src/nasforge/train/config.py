"""Training recipes: :class:`TrainConfig` and the named recipes of the papers (:data:`RECIPES`).

Field names follow the papers; every default is cited. A recipe is a small table of overrides on top of the field
defaults, so ``TrainConfig.from_recipe("menas", batch_size=64)`` is the MENAS recipe scaled to a CPU batch.

Where the recipes come from:

* ``efficientnet`` / ``bignas`` / ``menas`` — RMSProp (decay 0.9, momentum 0.9), weight decay 1e-5, initial
  learning rate 0.016 per 256 images (0.256 at batch 4096, 0.064 at 1024) decayed by 0.97 every 2.4 epochs, with a
  linear warm-up (BigNAS Sec. 4 "Training details", which follows EfficientNet; MENAS "Experimental Details").
  BigNAS adds the "exponentially decaying with constant ending" schedule: the rate is held once it reaches 5% of
  the initial one (BigNAS Sec. 3.1 "Learning rate schedule", Fig. 2b): ``min_lr_ratio=0.05``.
* ``dcnas-supernet`` — SGD, momentum 0.9, weight decay 4e-5, lr 0.5 at batch 1024, linear annealing
  (DCNAS Sec. 4.1 "Supernet"); ``dcnas-retrain`` — RMSProp, lr 0.064 at batch 2048, 3 warm-up epochs, cosine,
  weight decay 1e-5 (DCNAS Sec. 4.1 "Retrain").
* ``padnas`` — SGD, lr 0.5 at batch 1024, momentum 0.9, weight decay 4e-5, linear decay (PAD-NAS Sec. 4
  "Implementation Details", following SPOS).
* ``lnas`` — SGD, momentum 0.9, weight decay 3e-4, lr 0.025, batch 64, cosine annealing (LNAS Sec. 4, the DARTS
  setting).
* ``nb201`` — SGD with Nesterov momentum 0.9, weight decay 5e-4, lr 0.1, batch 256, cosine annealing: the
  NAS-Bench-201 training protocol (Dong & Yang 2020) on which DCNAS reports its NAS-Bench-201 results.

Dropout and drop-path are properties of the model, not of the training recipe.

RMSProp's epsilon: TensorFlow adds it *inside* the square root (``g / sqrt(ms + eps)``), PyTorch outside
(``g / (sqrt(v) + eps)``). ``rmsprop_eps`` is given in TensorFlow's convention (the papers' 1e-3) and is passed to
:class:`torch.optim.RMSprop` as ``sqrt(eps)`` (:attr:`TrainConfig.torch_rmsprop_eps`), which gives the same
denominator when the squared-gradient average is 0 or much larger than ``eps`` and is within a factor of sqrt(2)
in between. (TensorFlow also starts the squared average at 1 instead of 0; PyTorch's zero start gives larger
first steps, which the warm-up absorbs.)
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, ValidationError, model_validator

from ..errors import InvalidValue, NasforgeError, UnknownName
from ..schema import ConfigModel

__all__ = ["TrainConfig", "RECIPES"]

#: Named recipes: overrides of the :class:`TrainConfig` field defaults (see the module docstring for sources).
RECIPES: dict[str, dict[str, Any]] = {
    "nb201": dict(optimizer="sgd", lr=0.1, batch_size=256, momentum=0.9, nesterov=True, weight_decay=5e-4,
                  schedule="cosine"),
    "lnas": dict(optimizer="sgd", lr=0.025, batch_size=64, momentum=0.9, nesterov=False, weight_decay=3e-4,
                 schedule="cosine"),
    "efficientnet": dict(optimizer="rmsprop", lr=0.016, lr_reference_batch=256, batch_size=256, weight_decay=1e-5,
                         decay_norm_and_bias=False, schedule="exponential", warmup_epochs=5.0,
                         label_smoothing=0.1),
    "bignas": dict(optimizer="rmsprop", lr=0.016, lr_reference_batch=256, batch_size=256, weight_decay=1e-5,
                   decay_norm_and_bias=False, schedule="exponential", warmup_epochs=5.0, min_lr_ratio=0.05,
                   label_smoothing=0.1),
    "menas": dict(optimizer="rmsprop", lr=0.064, lr_reference_batch=1024, batch_size=1024, weight_decay=1e-5,
                  decay_norm_and_bias=False, schedule="exponential", warmup_epochs=5.0),
    "dcnas-supernet": dict(optimizer="sgd", lr=0.5, lr_reference_batch=1024, batch_size=1024, momentum=0.9,
                           weight_decay=4e-5, schedule="linear"),
    "dcnas-retrain": dict(optimizer="rmsprop", lr=0.064, lr_reference_batch=2048, batch_size=2048,
                          weight_decay=1e-5, decay_norm_and_bias=False, schedule="cosine", warmup_epochs=3.0),
    "padnas": dict(optimizer="sgd", lr=0.5, lr_reference_batch=1024, batch_size=1024, momentum=0.9,
                   weight_decay=4e-5, schedule="linear"),
}


def _allowed_from(error: dict[str, Any]) -> str:
    """What pydantic says is allowed, as the ``allowed`` part of an :class:`InvalidValue` message."""
    msg = str(error.get("msg", ""))
    for prefix in ("Input should be ", "Value error, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _as_invalid_value(exc: ValidationError, fields: list[str]) -> NasforgeError:
    """The first pydantic error as a one-line :class:`InvalidValue` naming the field."""
    err = exc.errors()[0]
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, NasforgeError):
        return original
    field = ".".join(str(p) for p in err.get("loc", ())) or "config"
    if err["type"] == "extra_forbidden":
        return InvalidValue("field", field, fields, where="TrainConfig")
    return InvalidValue(field, err.get("input"), _allowed_from(err), where="TrainConfig")


class TrainConfig(ConfigModel):
    """How to train one network: optimizer, learning-rate schedule and loss options (frozen, validated).

    Invalid values raise :class:`~nasforge.errors.InvalidValue` naming the field, e.g.
    ``lr of TrainConfig: got -1.0; allowed: greater than 0``.
    """

    model_config = ConfigDict(coerce_numbers_to_str=False)  # on top of ConfigModel's (STRICT)

    #: ``sgd`` (momentum SGD, LNAS/DCNAS/PAD-NAS/NB201) or ``rmsprop`` (EfficientNet/MENAS/BigNAS).
    optimizer: Literal["sgd", "rmsprop"] = "sgd"
    #: initial learning rate; at ``lr_reference_batch`` images per batch when that is set (linear scaling rule).
    lr: float = Field(0.1, gt=0)
    #: batch size the loader should use; the effective rate is ``lr * batch_size / lr_reference_batch``.
    batch_size: int = Field(256, ge=1)
    #: reference batch size of ``lr`` (EfficientNet: 0.016 per 256); ``None`` uses ``lr`` unscaled.
    lr_reference_batch: Optional[int] = Field(None, ge=1)
    #: momentum of SGD and of RMSProp (all papers: 0.9).
    momentum: float = Field(0.9, ge=0, lt=1)
    #: Nesterov momentum (SGD only; NAS-Bench-201 protocol).
    nesterov: bool = True
    #: RMSProp's squared-gradient decay ("decay 0.9", BigNAS Sec. 4; torch's ``alpha``).
    rmsprop_decay: float = Field(0.9, gt=0, lt=1)
    #: RMSProp epsilon in TensorFlow's convention (inside the square root; EfficientNet 1e-3).
    rmsprop_eps: float = Field(1e-3, gt=0)
    #: L2 weight decay coupled in the optimizer (NB201 5e-4, LNAS 3e-4, DCNAS/PAD-NAS 4e-5, EfficientNet 1e-5).
    weight_decay: float = Field(5e-4, ge=0)
    #: also decay 1-D parameters (BatchNorm affine, biases); EfficientNet's recipe excludes them.
    decay_norm_and_bias: bool = True
    #: per-step learning-rate shape after warm-up (see :mod:`nasforge.train.schedules`).
    schedule: Literal["cosine", "exponential", "linear", "constant"] = "cosine"
    #: linear warm-up length in epochs (fractional allowed); EfficientNet 5, DCNAS retrain 3.
    warmup_epochs: float = Field(0.0, ge=0)
    #: exponential schedule: multiply the rate by ``decay_rate`` every ``decay_epochs`` epochs (0.97 / 2.4).
    decay_rate: float = Field(0.97, gt=0, le=1)
    decay_epochs: float = Field(2.4, gt=0)
    #: floor of the schedule as a fraction of the initial rate (BigNAS "constant ending": 0.05).
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    #: label smoothing of the cross-entropy (EfficientNet/BigNAS teacher 0.1).
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    #: clip the global gradient norm to this value (``None``: no clipping; DARTS/LNAS use 5).
    grad_clip_norm: Optional[float] = Field(None, gt=0)
    #: ``fp32``, ``bf16`` autocast (CUDA with bf16 support, or CPU) or ``fp16`` autocast with a gradient scaler
    #: (CUDA only). The old name ``amp`` (``none`` / ``bf16`` / ``fp16``) is still read.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    #: loader batches whose gradients are summed (as a mean) before one optimizer step: a paper's batch of
    #: ``batch_size * accumulate_steps`` images on a device that holds ``batch_size``; the learning-rate rule
    #: uses the images per optimizer step (:attr:`step_batch`).
    accumulate_steps: int = Field(1, ge=1)
    #: images per optimizer step over all ranks and accumulated batches; when set, ``accumulate_steps`` is derived
    #: (``global_batch_size / batch_size``, which must divide). ``batch_size`` is what one loader step gives: per
    #: device in :func:`~nasforge.train.train`, over all ranks in the supernet trainer.
    global_batch_size: Optional[int] = Field(None, ge=1)
    #: data-parallel processes the recipe's batch is meant for (e.g. 8 GPUs); only used to warn when a run has
    #: fewer (started without torchrun).
    devices: Optional[int] = Field(None, ge=1)
    #: exponential moving average of the weights (MENAS retraining 0.9999; TF's ``num_updates`` warm-up,
    #: ``min(decay, (1 + n) / (10 + n))``); validation and the returned model use the averaged weights.
    ema_decay: Optional[float] = Field(None, gt=0, lt=1)
    #: check the loss for NaN/inf every this many steps (one host sync each); 1 = every step.
    nan_check_interval: int = Field(50, ge=1)

    def __init__(self, **data: Any) -> None:
        if "amp" in data and "precision" not in data:  # the field's former name and values
            amp = data.pop("amp")
            data["precision"] = {"none": "fp32"}.get(amp, amp) if isinstance(amp, str) else amp
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _as_invalid_value(exc, sorted(type(self).model_fields)) from None

    @model_validator(mode="after")
    def _check_combinations(self) -> "TrainConfig":
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise InvalidValue("momentum", self.momentum, "> 0 when nesterov=True", where="TrainConfig")
        if self.global_batch_size is not None:
            if self.global_batch_size % self.batch_size:
                raise InvalidValue("global_batch_size", self.global_batch_size,
                                   f"a multiple of batch_size {self.batch_size} (accumulate_steps = global / batch)",
                                   where="TrainConfig")
            derived = self.global_batch_size // self.batch_size
            if "accumulate_steps" in self.model_fields_set and self.accumulate_steps != derived:
                raise InvalidValue("accumulate_steps", self.accumulate_steps,
                                   f"{derived} (global_batch_size / batch_size) or unset", where="TrainConfig")
            object.__setattr__(self, "accumulate_steps", derived)
        return self

    # ------------------------------------------------------------------------------------------------ helpers
    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> "TrainConfig":
        """The named recipe of :data:`RECIPES` with ``overrides`` applied (field names as in this class)."""
        if name not in RECIPES:
            raise UnknownName("recipe", name, sorted(RECIPES))
        return cls(**{**RECIPES[name], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrainConfig":
        """Build from a plain mapping (YAML/JSON); a ``recipe`` key selects the base recipe."""
        data = dict(data or {})
        recipe = data.pop("recipe", None)
        return cls.from_recipe(recipe, **data) if recipe is not None else cls(**data)

    @property
    def step_batch(self) -> int:
        """Images per optimizer step: ``batch_size * accumulate_steps``."""
        return self.batch_size * self.accumulate_steps

    @property
    def effective_lr(self) -> float:
        """Initial learning rate after the linear batch-size scaling rule (Goyal et al. 2017) at the images per
        optimizer step (:attr:`step_batch`: accumulated batches count as one large batch)."""
        if self.lr_reference_batch is None:
            return self.lr
        return self.lr * self.step_batch / self.lr_reference_batch

    @property
    def torch_rmsprop_eps(self) -> float:
        """``rmsprop_eps`` (TensorFlow, inside the sqrt) mapped to PyTorch's convention (outside): ``sqrt(eps)``."""
        return math.sqrt(self.rmsprop_eps)
