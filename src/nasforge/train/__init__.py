"""Training: recipes (:class:`TrainConfig`), per-step LR schedules, the :func:`train` / :func:`evaluate` loop with
callbacks and resumable checkpoints, and BatchNorm re-calibration (:func:`calibrate_bn`)."""
from .bn import bn_layers, calibrate_bn
from .config import RECIPES, TrainConfig
from .loop import (
                   BatchSource,
                   Callback,
                   DivergedError,
                   EpochStats,
                   TrainResult,
                   TrainState,
                   evaluate,
                   resolve_device,
                   train,
)
from .schedules import (
                   build_optimizer,
                   build_scheduler,
                   cosine_factor,
                   exponential_factor,
                   linear_factor,
                   lr_lambda,
                   warmup_factor,
)

__all__ = ["TrainConfig", "RECIPES", "train", "evaluate", "TrainResult", "EpochStats", "TrainState", "Callback",
           "DivergedError", "BatchSource", "resolve_device", "calibrate_bn", "bn_layers", "build_optimizer",
           "build_scheduler", "lr_lambda", "warmup_factor", "exponential_factor", "cosine_factor", "linear_factor"]
