"""One-shot evaluation: score an architecture with the weights it inherits from a trained supernet.

The paths of a weight-sharing supernet see a different mixture of children in every training step, so the
BatchNorm running statistics of the supernet describe no child. Before a child is scored its BN statistics are
re-estimated on ``calib_images`` training images (SPOS Sec. 3.3, BigNAS Sec. 3.1 "Batch Norm Calibration", PAD-NAS
and DCNAS do the same); the child is then scored on a fixed held-out subset of ``score_images`` images (the same
images for every architecture) and the supernet's BN buffers are restored, so no evaluation changes another.

:class:`OneShotEvaluator` reads any supernet run folder (:func:`nasforge.supernet.run.open_supernet`) and prepares
its calibration and scored batches once, on the device; an evaluation is then ``calib_images + score_images``
forward passes of one child and nothing else. ``evaluator: {kind: one-shot, run: RUN_DIR}`` in a search config.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping

import torch
from pydantic import Field

from ..arch import Architecture
from ..cost import AnalyticCost
from ..data import Batches
from ..device import resolve_device, torch_threads
from ..errors import DataError, InvalidValue
from ..spaces.base import SearchSpace
from ..supernet.run import SupernetRun, open_supernet
from ..supernet.select import evaluate_child
from ..trial import Result
from .base import Evaluator, EvaluatorConfig, register_evaluator

__all__ = ["OneShotEvaluator", "OneShotEvaluatorConfig", "fixed_batches"]


def fixed_batches(splits: Any, split: str, images: int, batch_size: int, device: torch.device, *, seed: int,
                  train: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``images`` images of ``split`` as a list of device batches (``train``: shuffled with ``seed``,
    without augmentation; else in order). The same list serves every architecture."""
    if split not in splits.available():
        raise DataError(f"{split} split: absent from the run's data; expected one of {splits.available()}")
    loader = Batches(splits[split], batch_size, train=False, transform=splits.transform(), shuffle=train,
                     device=device, seed=seed if train else None)
    out, seen = [], 0
    for x, y in loader:
        take = min(len(x), images - seen)
        out.append((x[:take], y[:take]))
        seen += take
        if seen >= images:
            break
    if not out:
        raise DataError(f"{split} split: no images; expected at least one batch")
    return out


class OneShotEvaluator(Evaluator):
    """Accuracy (%) of an architecture with a trained supernet's weights, after BN re-calibration.

    ``run``: a supernet run folder, or an opened :class:`~nasforge.supernet.run.SupernetRun`. ``calib_images``
    training images (shuffled once with ``seed``, no augmentation) re-estimate the BN statistics;
    ``score_images`` images of ``split`` (``val``; ``test`` when the run's data has no validation split) are
    scored. Costs are the analytic params / FLOPs of the supernet's own space at the run's input.
    """

    def __init__(self, run: str | Path | SupernetRun, *, calib_images: int = 1000, score_images: int = 1000,
                 batch_size: int = 250, split: str | None = None, seed: int = 0, device: str = "auto",
                 threads: int | None = None) -> None:
        for name, value in (("calib_images", calib_images), ("score_images", score_images),
                            ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValue(name, value, "a positive int")
        self.device = resolve_device(device)
        self.run = run if isinstance(run, SupernetRun) else open_supernet(run, str(self.device))
        self.run.net.to(self.device).eval()
        splits = self.run.splits
        if splits is None:
            raise InvalidValue("run", str(self.run.folder), "a supernet run opened with its data")
        self.split = split or ("val" if "val" in splits.available() else "test")
        self.threads = threads
        self.calib = fixed_batches(splits, "train", calib_images, batch_size, self.device, seed=seed, train=True)
        self.scored = fixed_batches(splits, self.split, score_images, batch_size, self.device, seed=seed,
                                    train=False)
        self.calib_images, self.score_images = sum(len(x) for x, _ in self.calib), sum(len(x) for x, _ in self.scored)
        self.costs = AnalyticCost(self.run.space, tuple(self.run.info["input_shape"]), self.run.info["num_classes"])
        self.name = f"one-shot:{self.run.folder.name}"

    @property
    def space(self) -> SearchSpace:
        """The supernet's space (with its current op sets)."""
        return self.run.space

    def score(self, arch: Architecture) -> float:
        """The one-shot accuracy (%) of ``arch`` (validated against the supernet's op sets)."""
        arch = self.space.validate(arch)
        with torch_threads(self.threads):
            return evaluate_child(self.run.net, arch, self.calib, self.scored, calib_steps=len(self.calib),
                                  device=self.device)

    def evaluate(self, arch: Architecture, *, seed: int | None = None,
                 context: Mapping[str, Any] | None = None) -> Result:
        """``metrics["accuracy"]`` (one-shot, %), analytic costs, and how it was measured in ``info``."""
        start = time.perf_counter()
        accuracy = self.score(arch)
        return Result(metrics={"accuracy": accuracy}, costs=dict(self.costs.cost(arch)),
                      info={"calib_images": self.calib_images, "score_images": self.score_images,
                            "split": self.split, "supernet": str(self.run.folder),
                            "checkpoint_sha256": self.run.checkpoint_sha256,
                            "seconds": time.perf_counter() - start})


@register_evaluator("one-shot")
class OneShotEvaluatorConfig(EvaluatorConfig):
    """Score candidates with a trained supernet (:class:`OneShotEvaluator`): ``run`` is the supernet run folder
    (``nasforge supernet train ... --out RUN``); the search's ``space`` must name the supernet's space."""

    kind: Literal["one-shot"] = "one-shot"
    run: str
    calib_images: int = Field(1000, ge=1)
    score_images: int = Field(1000, ge=1)
    batch_size: int = Field(250, ge=1)
    split: Literal["val", "test"] | None = None
    threads: int | None = Field(None, ge=1)

    uses_data: ClassVar[bool] = False

    def reported(self) -> tuple[set[str], set[str]]:
        return {"accuracy"}, {"params", "flops"}

    def build(self, space: SearchSpace, *, data: Mapping[str, Any] | None, device: str,
              input_shape: tuple[int, int, int] | None, num_classes: int | None) -> OneShotEvaluator:
        evaluator = OneShotEvaluator(self.run, calib_images=self.calib_images, score_images=self.score_images,
                                     batch_size=self.batch_size, split=self.split, device=device,
                                     threads=self.threads)
        if evaluator.space.name != space.name:
            raise InvalidValue("space", space.name, f"{evaluator.space.name!r}, the space of the supernet in "
                                                    f"{self.run}")
        return evaluator
