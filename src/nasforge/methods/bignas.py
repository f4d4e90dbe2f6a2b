"""BigNAS single-stage supernet training (Yu et al., ECCV 2020, Sec. 3.1 and 4.2) and the SPOS baseline, as a
config-driven pipeline: :class:`SupernetConfig` (a YAML file, ``configs/bignas*.yaml`` / ``configs/spos*.yaml``) ->
:func:`run_supernet` -> a run folder.

``method`` picks a preset of the step switches (:data:`METHOD_DEFAULTS`); every switch can be set on its own for
ablations (Sec. 4.3). ``recipe`` names a :data:`nasforge.train.RECIPES` entry and ``train`` overrides its fields::

    name: bignas-cpu
    method: bignas            # bignas | spos
    space: {name: bignas, kwargs: {stages: [{widths: [8, 16], depths: [1, 2], kernels: [3], expands: [1],
                                             stride: 1}, ...], resolutions: [20, 24, 28]}}
    data: {source: embedded, limit: 3000}
    train: {batch_size: 64}   # on top of recipe (bignas: RMSProp, 0.016 per 256, 0.97 / 2.4 epochs, warm-up)
    epochs: 2
    sandwich: true            # + sandwich_n random children; false = one random child per step
    inplace_distillation: true
    regularize_largest_only: true
    zero_init_last_bn: true
    transition_skip: true
    constant_ending: true     # false: min_lr_ratio 0
    bn_accumulate: false

The run folder holds ``config.yaml`` (resolved: every switch explicit), ``supernet.pt`` (the checkpoint, written
atomically with its SHA-256), ``train_log.jsonl`` (one line per epoch) and, once training has finished,
``result.json`` (steps, wall time, the checkpoint's SHA-256, which :func:`evaluate_arch` verifies). One process
at a time holds the folder (``flock``); under torchrun only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Optional, Sequence

import torch
from pydantic import Field, model_validator

from ..arch import Architecture
from ..config import SpaceConfig
from ..cost import AnalyticCost
from ..data import DataConfig, load_data
from ..device import resolve_device, torch_threads
from ..errors import InvalidValue, ParseError
from ..io import atomic_write_text, lock_folder, write_json
from ..registry import SPACES, get_space
from ..schema import RunName, dump_config, read_yaml, validated
from ..supernet.distributed import barrier, init_distributed, shutdown_distributed
from ..supernet.run import (
    CHECKPOINT,
    RESULT,
    build_supernet_for,
    open_supernet,
    run_info,
    write_run_info,
)
from ..supernet.select import (
    coarse_to_fine,
    evaluate_child,
    export_member,
    take_batches,
)
from ..supernet.train import (
    StepRecipe,
    SupernetTrainer,
    calibration_batches,
    derived_seed,
)
from ..train import TrainConfig
from .base import Method, RunConfig, register_method

if TYPE_CHECKING:
    from torch import nn

    from ..arch import Architecture
    from ..data import DataSplits
    from ..spaces.base import SearchSpace
    from ..supernet.train import StepRecipe, SupernetResult
    from ..train import TrainConfig

__all__ = ["SupernetConfig", "METHOD_DEFAULTS", "load_supernet_config", "supernet_config_from_dict",
           "build_supernet_space", "build_supernet", "train_config_of", "step_recipe_of", "run_supernet",
           "open_supernet_run", "evaluate_arch", "parse_child", "export_member_from_run", "family_from_run",
           "CHECKPOINT", "LOG", "RESULT", "CONSTANT_ENDING"]

LOG, CONFIG = "train_log.jsonl", "config.yaml"
#: BigNAS Sec. 3.1 / 4.2: the rate is held once it reaches 5% of the initial one ("constant ending")
CONSTANT_ENDING = 0.05

#: Each method's defaults for the fields left unset (``null``). BigNAS: Sec. 3.1 / 4.2 with the EfficientNet
#: recipe; 350 epochs is EfficientNet's ImageNet schedule, which BigNAS says it follows (the paper gives no count).
#: SPOS (Guo et al. 2020; PAD-NAS Sec. 4 "Implementation Details"): SGD lr 0.5 per 1024, momentum 0.9, weight
#: decay 4e-5, linear decay, 120 supernet epochs, one uniformly sampled child per step on the labels, dropout and
#: weight decay on every child, BN re-calibrated per child afterwards. SPOS trains the same space (the children are
#: the same networks, so the two supernets are comparable) with the plain initialisation.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "bignas": dict(recipe="bignas", epochs=350.0, sandwich=True, inplace_distillation=True,
                   regularize_largest_only=True, zero_init_last_bn=True, transition_skip=True, constant_ending=True),
    "spos": dict(recipe="padnas", epochs=120.0, sandwich=False, inplace_distillation=False,
                 regularize_largest_only=False, zero_init_last_bn=False, transition_skip=True, constant_ending=False),
}


class SupernetConfig(RunConfig):
    """One supernet training run (fields documented in the module docstring; ``null`` = the method's default).

    ``calib_batches``: BN-calibration batches per child for the per-epoch log and ``supernet eval``;
    ``eval_batches``: at most this many batches of ``eval_split`` scored per child (``null``: all);
    ``eval_batch_size``: images per calibration / evaluation batch (independent of the training batch);
    ``checkpoint_every``: steps between checkpoints (also written at every epoch end and at the end);
    ``backend``: torch.distributed backend under torchrun (auto: nccl on CUDA, gloo on CPU); ``name``: a slug (the
    default run folder is ``runs/<name>-<time>``; ``out`` / ``--out`` choose any folder).
    """

    name: RunName = "supernet"
    method: Literal["bignas", "spos"] = "bignas"
    space: SpaceConfig = Field(default_factory=lambda: SpaceConfig(name="bignas"))
    data: dict[str, Any] = Field(default_factory=lambda: {"source": "embedded"})
    recipe: Optional[str] = None
    train: dict[str, Any] = Field(default_factory=dict)
    epochs: Optional[float] = Field(None, gt=0)
    sandwich: Optional[bool] = None
    sandwich_n: int = Field(2, ge=0)
    inplace_distillation: Optional[bool] = None
    regularize_largest_only: Optional[bool] = None
    zero_init_last_bn: Optional[bool] = None
    transition_skip: Optional[bool] = None
    constant_ending: Optional[bool] = None
    bn_accumulate: bool = False
    dropout: float = Field(0.2, ge=0, lt=1)
    calib_batches: int = Field(20, ge=1)
    eval_batches: Optional[int] = Field(None, ge=1)
    eval_split: Literal["val", "test"] = "val"
    eval_batch_size: int = Field(256, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    checkpoint_every: Optional[int] = Field(1000, ge=1)
    threads: Optional[int] = Field(None, ge=1)
    progress: bool = True
    out: Optional[str] = None

    @model_validator(mode="after")
    def _cross(self) -> "SupernetConfig":
        if "transition_skip" in self.space.kwargs:
            raise InvalidValue("space.kwargs.transition_skip", self.space.kwargs["transition_skip"],
                               "no value here; set the top-level transition_skip switch")
        if self.transition_skip and not _has_transition_skips(self.space.name):
            raise InvalidValue("transition_skip", True, f"false or unset for space {self.space.name!r} (only the "
                               "bignas space has stage-transition skip connections)")
        kind = SPACES.factory(self.space.name).supernet
        if kind is None or (kind == "choice" and self.method != "spos"):
            raise InvalidValue("method", self.method, f"'spos' for space {self.space.name!r} (a choice-block "
                               "supernet: one module per candidate op)" if kind == "choice" else
                               f"a space with a supernet (space {self.space.name!r} has none)")
        r = self.resolved()
        if kind == "choice" and (r["sandwich"] or r["zero_init_last_bn"]):
            raise InvalidValue("sandwich" if r["sandwich"] else "zero_init_last_bn", True,
                               f"false for the choice-block supernet of {self.space.name!r} (SPOS trains one "
                               "uniform child per step)")
        if r["inplace_distillation"] and not r["sandwich"]:
            raise InvalidValue("inplace_distillation", True, "false when sandwich is false (the teacher is the "
                                                             "sandwich's largest child)")
        train_config_of(self)  # recipe name and train overrides, with a one-line error
        if self.eval_split == "val":  # children are scored on it after every epoch
            DataConfig.from_dict(self.data).require_split("val", "eval_split 'val' scores the children on it; or "
                                                                 "set eval_split: test")
        return self

    def resolved(self) -> dict[str, Any]:
        """Every field with the method's defaults filled in (what ``config.yaml`` of a run records)."""
        data = self.model_dump(mode="json")
        for key, value in METHOD_DEFAULTS[self.method].items():
            if data.get(key) is None:
                data[key] = value
        if data.get("transition_skip") and not _has_transition_skips(self.space.name):
            data["transition_skip"] = False  # the preset does not apply: the space has no such skips
        return data

    def value(self, key: str) -> Any:
        """One resolved field (e.g. ``config.value("sandwich")``)."""
        return self.resolved()[key]


def _has_transition_skips(space: str) -> bool:
    """Whether the registered space ``space`` takes the ``transition_skip`` switch (BigNAS Sec. 3.1)."""
    return "transition_skip" in inspect.signature(SPACES.factory(space)).parameters


# ================================================================================================ loading
def supernet_config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> SupernetConfig:
    """A validated :class:`SupernetConfig` from a mapping plus ``--set key=value`` overrides (one-line errors)."""
    return validated(SupernetConfig, raw, overrides, {"space": "name"})


def load_supernet_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SupernetConfig:
    """Read a YAML supernet config (``configs/bignas*.yaml``) and apply ``--set`` overrides."""
    return supernet_config_from_dict(read_yaml(path), overrides)


# ================================================================================================ builders
def train_config_of(config: SupernetConfig) -> "TrainConfig":
    """The recipe with the ``train`` overrides; ``constant_ending`` sets ``min_lr_ratio`` (0.05, or the value
    given in ``train``; 0 when false)."""
    overrides = dict(config.train)
    if config.value("constant_ending"):
        overrides.setdefault("min_lr_ratio", CONSTANT_ENDING)
    elif overrides.get("min_lr_ratio", 0) not in (0, 0.0):
        raise InvalidValue("train.min_lr_ratio", overrides["min_lr_ratio"], "0 or unset when constant_ending is false")
    else:
        overrides["min_lr_ratio"] = 0.0
    return TrainConfig.from_recipe(config.value("recipe"), **overrides)


def step_recipe_of(config: SupernetConfig, train_config: "TrainConfig | None" = None) -> "StepRecipe":
    """The :class:`~nasforge.supernet.train.StepRecipe` of ``config`` (weight decay and label smoothing from
    the training recipe)."""
    tc = train_config or train_config_of(config)
    r = config.resolved()
    return StepRecipe(sandwich=r["sandwich"], sandwich_n=config.sandwich_n,
                      inplace_distillation=r["inplace_distillation"],
                      regularize_largest_only=r["regularize_largest_only"], bn_accumulate=config.bn_accumulate,
                      dropout=config.dropout, weight_decay=tc.weight_decay, label_smoothing=tc.label_smoothing,
                      decay_norm_and_bias=tc.decay_norm_and_bias)


def _space_kwargs(config: SupernetConfig) -> dict[str, Any]:
    """The space's constructor arguments: the config's, plus the ``transition_skip`` switch where it applies."""
    kwargs = dict(config.space.kwargs)
    if _has_transition_skips(config.space.name):
        kwargs["transition_skip"] = config.value("transition_skip")
    return kwargs


def build_supernet_space(config: SupernetConfig) -> "SearchSpace":
    """The configured space with the ``transition_skip`` switch (BigNAS Sec. 3.1) passed to it; a BigNAS table
    may be given as YAML stage mappings (``{widths: [...], depths: [...], kernels, expands, stride}``)."""
    kwargs = _space_kwargs(config)
    try:
        return get_space(config.space.name, **kwargs)
    except TypeError as exc:
        raise InvalidValue("space.kwargs", config.space.kwargs, f"constructor arguments of {config.space.name!r} "
                                                               f"({exc})") from None


def build_supernet(config: SupernetConfig, space: "SearchSpace", input_shape: tuple[int, int, int],
                   num_classes: int) -> "nn.Module":
    """The supernet over ``space`` for the data's input, initialised from the config's seed: the elastic MBConv
    supernet (BigNAS) or, for ``nb201`` / ``proxyless-*``, the choice-block supernet (SPOS)."""
    gen = torch.Generator().manual_seed(derived_seed(config.seed, 4))
    return build_supernet_for(space, input_shape, num_classes, generator=gen,
                              zero_init_last_bn=config.value("zero_init_last_bn"))


@contextlib.contextmanager
def _folder_lock(run_dir: Path, active: bool) -> Iterator[None]:
    """One process per run folder (:func:`nasforge.io.lock_folder`, as :class:`nasforge.study.Study` takes)."""
    if not active:
        yield
        return
    fh = lock_folder(run_dir)
    try:
        yield
    finally:
        fh.close()


def _check_folder(run_dir: Path, resume: bool) -> None:
    """A fresh run needs a folder without a checkpoint; ``resume`` continues one (or starts when there is none)."""
    if (run_dir / CHECKPOINT).exists() and not resume:
        raise InvalidValue("--out", str(run_dir), "a new folder, or --resume to continue the supernet trained there")


def run_supernet(config: SupernetConfig, out: str | os.PathLike[str], *, resume: bool = False,
                 stop_at: int | None = None) -> "SupernetResult":
    """Train the supernet of ``config`` into the run folder ``out`` (module docstring); ``resume`` continues
    from ``out/supernet.pt`` (same config required, except epochs / device / checkpoint_every / progress);
    ``stop_at``: stop after that global step (a checkpoint is written). Under torchrun every rank calls this."""
    run_dir = Path(out).resolve()
    ctx = init_distributed(config.backend, config.device)
    try:
        with _folder_lock(run_dir, ctx.is_main), torch_threads(config.threads):
            _check_folder(run_dir, resume)  # on every rank: no rank may wait in a collective for a failed one
            tc = train_config_of(config)
            space = build_supernet_space(config)
            splits = load_data(config.data)
            net = build_supernet(config, space, splits.input_shape, splits.num_classes)
            resolved = config.resolved()
            trainer = SupernetTrainer(net, space, splits, recipe=step_recipe_of(config, tc), train_config=tc,
                                      epochs=float(resolved["epochs"]), seed=config.seed, dist=ctx,
                                      checkpoint_path=run_dir / CHECKPOINT, checkpoint_every=config.checkpoint_every,
                                      log_path=run_dir / LOG, calib_batches=config.calib_batches,
                                      eval_batches=config.eval_batches, eval_split=config.eval_split,
                                      eval_batch_size=config.eval_batch_size,
                                      run_config=resolved, progress=config.progress)
            if resume:
                trainer.resume()  # checks the stored config before anything in the folder changes
            if ctx.is_main:
                (run_dir / RESULT).unlink(missing_ok=True)
                atomic_write_text(run_dir / CONFIG, dump_config(resolved))
                write_run_info(run_dir, run_info(space, _space_kwargs(config), net, config.data, method=config.method,
                                                 seed=config.seed, calib_batches=config.calib_batches,
                                                 eval_batch_size=config.eval_batch_size,
                                                 eval_batches=config.eval_batches))
            result = trainer.fit(stop_at=stop_at)
            if ctx.is_main and result.steps >= result.total_steps:
                write_json(run_dir / RESULT, {**result.to_dict(), "checkpoint": CHECKPOINT})
            barrier(ctx)  # every rank leaves together: gloo aborts a rank that tears down while a peer still works
            return result
    finally:
        shutdown_distributed(ctx)


# ================================================================================================ evaluation
def open_supernet_run(run_dir: str | os.PathLike[str], device: str = "cpu"
                      ) -> tuple[SupernetConfig, "SearchSpace", "DataSplits", "nn.Module"]:
    """Config, space, data and the trained supernet of a run folder (checkpoint verified against ``result.json``
    when training has finished)."""
    folder = Path(run_dir)
    if not (folder / CONFIG).is_file():
        raise InvalidValue("RUN_DIR", str(run_dir), f"a run folder holding {CONFIG} and {CHECKPOINT} "
                                                    "(written by nasforge supernet train)")
    config = load_supernet_config(folder / CONFIG)
    run = open_supernet(folder, device)
    return config, run.space, run.splits, run.net


def parse_child(space: "SearchSpace", text: str) -> "Architecture":
    """A child of the run's own ``space`` (its table may differ from the registered default): ``smallest``,
    ``largest``, the compact string or JSON."""
    if not isinstance(text, str):
        raise InvalidValue("--arch", text, "smallest, largest, an architecture string or JSON")
    text = text.strip()
    if text in ("smallest", "largest"):
        return getattr(space, text)()
    if text.startswith("{"):
        return space.validate(Architecture.from_json(text, validate=False))
    return space.parse(text.split(":", 1)[1] if text.startswith(f"{space.name}:") else text)


def evaluate_arch(run_dir: str | os.PathLike[str], arch: str, *, calib_batches: int | None = None,
                  device: str = "cpu", split: str | None = None) -> dict[str, Any]:
    """Accuracy (%) of child ``arch`` (:func:`parse_child`) of a trained supernet after BN calibration (Sec. 3.1)
    on ``calib_batches`` training batches (default: the config's), with its params and FLOPs (analytic, batch 1;
    FLOPs count a multiply-add as 2). ``split``: default ``test`` when the data has one, else the config's."""
    if calib_batches is not None and (isinstance(calib_batches, bool) or calib_batches < 1):
        raise InvalidValue("--calib-batches", calib_batches, "a positive int")
    config, space, splits, net = open_supernet_run(run_dir, device)
    child = parse_child(space, arch)
    dev = resolve_device(device)
    split = split or ("test" if "test" in splits.available() else config.eval_split)
    bs = config.eval_batch_size
    calib = calibration_batches(splits, bs, config.seed, dev)
    scored = splits.loader(split, bs, device=dev, train=False)
    n = calib_batches or config.calib_batches
    acc = evaluate_child(net, child, calib, scored, calib_steps=n, device=dev)
    costs = AnalyticCost(space, splits.input_shape, splits.num_classes).cost(child)
    return {"arch": space.format(child), "split": split, "accuracy": acc, "params": costs["params"],
            "flops": costs["flops"], "calib_batches": n}


# ================================================================================================ family, export
def _open_run(run_dir: str | os.PathLike[str], device: str) -> tuple[SupernetConfig, "SearchSpace", "DataSplits",
                                                                       "nn.Module", list[Any]]:
    """A trained supernet run folder and its calibration batches (the run's ``calib_batches``)."""
    config, space, splits, net = open_supernet_run(run_dir, device)
    calib = calibration_batches(splits, config.eval_batch_size, config.seed, resolve_device(device))
    return config, space, splits, net, take_batches(calib, config.calib_batches, "calibration batches")


def export_member_from_run(run_dir: str | os.PathLike[str], arch: "str | Architecture",
                           out_dir: str | os.PathLike[str], *, onnx: bool | None = None,
                           device: str = "cpu") -> dict[str, Any]:
    """:func:`~nasforge.supernet.select.export_member` for child ``arch`` (compact string, JSON, or the name of a
    member of the run's ``family.json``, e.g. ``M``) of the supernet in ``run_dir``, calibrated on the run's
    ``calib_batches`` training batches (``nasforge export RUN_DIR --arch``)."""
    import json

    config, space, _, net, calib = _open_run(run_dir, device)
    family = Path(run_dir) / "family.json"
    if isinstance(arch, str) and family.is_file():  # a member name of `nasforge supernet select` (S, M, L...)
        try:
            members = {m["name"]: m["arch"] for m in json.loads(family.read_text()).get("members", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ParseError("family.json", str(family), "the file written by nasforge supernet select") from None
        arch = members.get(arch.strip(), arch)
    child = space.validate(arch) if isinstance(arch, Architecture) else parse_child(space, arch)
    res = export_member(net, child, out_dir, space=space, calib_batches=calib, calib_steps=len(calib), onnx=onnx,
                        device=device, meta={"run_dir": str(Path(run_dir).resolve()), "config_name": config.name})
    return {"arch": space.format(child), "files": ", ".join(sorted(Path(p).name for p in res.files.values())),
            "onnx max abs diff": res.onnx_max_abs_diff}


#: how ``supernet select`` measures ``latency_ms`` budgets without a table: batch 1, one thread, on the run's
#: device; fewer and shorter timing rounds than ``nasforge cost --latency`` because every coarse skeleton and
#: fine mutant is timed (160 + budgets x n_fine children on the BigNAS grid)
SELECT_LATENCY: dict[str, Any] = {"threads": 1, "warmup": 3, "repeats": 5, "min_run_time": 0.02}


def _latency_model(latency: Any, space: "SearchSpace", splits: "DataSplits", device: str) -> tuple[Any, Any]:
    """The latency model of ``latency`` (``None``; ``"measure"``: :class:`~nasforge.cost.MeasuredLatency` of the
    children's standalone networks on ``device`` with :data:`SELECT_LATENCY`; or a ``lut.json`` path /
    ``help:DEVICE``, :func:`~nasforge.supernet.lut.load_lut`, which must be a table of this space and input) and
    its description for ``family.json``."""
    if latency is None:
        return None, None
    if latency == "measure":
        from ..cost import MeasuredLatency

        model = MeasuredLatency(space, splits.input_shape, splits.num_classes, device=device, **SELECT_LATENCY)
        return model, {"source": "measured", "device": device, **SELECT_LATENCY}
    from ..supernet.lut import load_lut

    lut = load_lut(latency)
    if callable(getattr(lut, "check", None)):
        lut.check(space, splits.input_shape)
    elif getattr(lut, "space_name", space.name) != space.name:
        raise InvalidValue("--lut", str(latency), f"a table of space {space.name!r} (this one holds "
                                                  f"{lut.space_name!r} latencies)")
    return lut, {"source": "table", "lut": str(latency)}


def family_from_run(run_dir: str | os.PathLike[str], budgets: Sequence[Any], *, n_fine: int = 20,
                    seed: int | None = None, select_split: str = "val", device: str = "cpu", progress: bool = True,
                    grid: Mapping[str, Any] | None = None, mutation: str = "neighbour", latency: Any = None) -> Any:
    """:func:`~nasforge.supernet.select.coarse_to_fine` (BigNAS Sec. 3.2) on the supernet of ``run_dir``
    (calibration as the run's config says; ``mutation``: ``neighbour`` one-step fine-grained mutations, the
    default, or ``any``); the :class:`~nasforge.supernet.family.Family` is written to ``run_dir/family.json``.
    ``latency`` (needed by ``latency_ms`` budgets): ``"measure"`` times every child's standalone network on
    ``device`` (:data:`SELECT_LATENCY`), a ``lut.json`` path or ``help:DEVICE`` reads a lookup table of the run's
    space and input; ``family.json``'s ``info.latency`` says which."""
    config, space, splits, net, calib = _open_run(run_dir, device)
    model, described = _latency_model(latency, space, splits, device)
    select = splits.loader(select_split, config.eval_batch_size, device=resolve_device(device), train=False)
    fam = coarse_to_fine(net, space, (calib, select), budgets, seed=config.seed if seed is None else seed,
                         n_fine=n_fine, calib_steps=len(calib), batch_size=config.eval_batch_size, device=device,
                         max_batches=config.eval_batches, grid=grid, progress=progress, mutation=mutation,
                         latency=model)
    fam.info["select_split"] = select_split
    if described is not None:
        fam.info["latency"] = described
    fam.save(Path(run_dir) / "family.json")
    return fam


def training_summary(result: "SupernetResult") -> dict[str, Any]:
    """The row ``nasforge supernet train`` prints: steps, epochs, the last epoch's smallest / largest child
    accuracy, wall time, checkpoint SHA-256."""
    last = result.history[-1] if result.history else {}
    return {"steps": result.steps, "epochs": round(result.epochs_run, 3), "acc_smallest": last.get("acc_smallest"),
            "acc_largest": last.get("acc_largest"), "seconds": round(result.wall_time_s, 1),
            "checkpoint_sha256": result.checkpoint_sha256}


for _name, _paper in (("bignas", "Yu et al., BigNAS, ECCV 2020"),
                      ("spos", "Guo et al., Single Path One-Shot NAS, ECCV 2020 (as PAD-NAS restates it)")):
    register_method(Method(name=_name, kind="supernet", paper=_paper, config_model=SupernetConfig,
                           load_config=load_supernet_config, run=run_supernet, summary=training_summary,
                           evaluate=evaluate_arch, select=family_from_run, export=export_member_from_run))
