"""``nasforge export RUN_DIR [--trial N] [--out DIR] [--no-onnx]``: deploy a trained trial of a search.

Reads trial ``N`` (default: the study's best) from ``RUN_DIR/trials.sqlite``, rebuilds its network from the run's
config (``config.yaml``: space and its kwargs; the input shape and class count from the evaluator's data), loads
the trial's training checkpoint (verified against the SHA-256 the store recorded) and writes an export folder with
:func:`nasforge.export.export_model` (``model.pt``, ``arch.json``, ``meta.json``, ``model.onnx``).

Supernet run folders (``supernet.pt`` and no ``trials.sqlite``) are handed to
the ``export`` step of the method that trained them (``methods.bignas.export_member_from_run``) with ``--arch``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Mapping

from ..errors import InvalidValue
from ..io import CheckpointError
from .base import command, emit, int_at_least
from .supernet import method_of_folder

__all__ = ["export_trial", "cmd_export", "SUPERNET_FILE"]

#: the file that marks a supernet run folder
SUPERNET_FILE = "supernet.pt"


def _run_config(run_dir: Path, store: Any) -> Any:
    """The run's :class:`~nasforge.config.SearchConfig` (``config.yaml``, else the copy kept in the store)."""
    from ..config import config_from_dict, load_config

    if (run_dir / "config.yaml").is_file():
        return load_config(run_dir / "config.yaml")
    raw = store.get_meta("config")
    if raw is None:
        raise InvalidValue("RUN_DIR", str(run_dir), "a run folder written from a config (config.yaml)")
    return config_from_dict(raw)


def _best_id(run_dir: Path, store: Any) -> int:
    """The best trial: ``best.json``'s, else the best complete trial of the store by the study's metric."""
    best_file = run_dir / "best.json"
    if best_file.is_file():
        best = (json.loads(best_file.read_text(encoding="utf-8")) or {}).get("best")
        if isinstance(best, Mapping) and isinstance(best.get("trial_id"), int):
            return best["trial_id"]
    study = store.get_meta("study", {}) or {}
    metric, sign = study.get("metric", "accuracy"), (1 if study.get("mode", "max") == "max" else -1)
    scored = [(sign * float(v), -t.id, t.id) for t in store.trials("complete")
              if isinstance(v := t.metric(metric), (int, float)) and math.isfinite(v)]
    if not scored:
        raise InvalidValue("--trial", None, f"a trial id (the run has no complete trial with a {metric!r} value)")
    return max(scored)[2]


def _checkpoint_path(trial: Any, run_dir: Path) -> Path:
    """The recorded checkpoint, or the same file name in the trial's folder of a run folder that was moved."""
    if trial.checkpoint is None:
        raise InvalidValue(f"trial {trial.id} checkpoint", None,
                           "a trial trained with checkpoints (evaluator kind 'train' with checkpoints: true)")
    from ..study import trial_checkpoint

    return trial_checkpoint(trial, run_dir)


def _checkpoint(path: Path, sha256: str | None) -> Mapping[str, Any]:
    """The verified checkpoint; it must hold a ``model`` state dict."""
    from ..io import load_checkpoint

    ckpt = load_checkpoint(path, sha256=sha256)
    state = ckpt.get("model") if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r}: no 'model' state dict (expected a nasforge training "
                              "checkpoint)")
    return ckpt


def _weights_of(t: Any) -> str | None:
    """How a trial's starting weights were changed (for ``calibrate_bn: auto``): pruned (a MENAS ticket),
    inherited (a weight-sharing child), else ``None``."""
    info = t.result.info if t.result else {}
    if (info.get("kind") or (t.info or {}).get("kind")) == "ticket":
        return "pruned"
    return "inherited" if info.get("inherited_from") else None


def _calibrate_export(model: Any, ckpt: Mapping[str, Any], t: Any, evaluator: Any, mode: str | bool) -> dict[str, Any]:
    """BN calibration of an exported trial: the statistics the trial was scored with when its checkpoint holds
    calibrated ones (``auto``), else as :func:`nasforge.train.bn.wants_calibration` decides for the trial (its
    epochs, pruned / inherited weights), on the trial's own calibration batches (same seed: the same statistics
    the evaluator would have computed)."""
    from ..eval.train_eval import calibration_seed
    from ..train.bn import calibrate_for_scoring, wants_calibration

    saved = ckpt.get("bn_calibration")
    if mode == "auto" and isinstance(saved, Mapping) and saved.get("bn_calibrated"):
        return {**saved, "source": "trial checkpoint"}
    info = t.result.info if t.result else {}
    wanted, reason = wants_calibration(mode, epochs=info.get("epochs"), modified=_weights_of(t))
    if not wanted:
        return {"bn_calibrated": False, "bn_calib_reason": reason}
    batch_size = evaluator.train_config.batch_size
    batches = evaluator.calibration_batches(evaluator.splits(), batch_size, next(model.parameters()).device,
                                            calibration_seed(t.seed))
    return {**calibrate_for_scoring(model, batches, evaluator.calib_batches, reason=reason), "source": "export"}


def export_trial(run_dir: str | Path, trial: int | None = None, out: str | Path | None = None, *,
                 onnx: bool | None = None, program: bool = False, calibrate_bn: str | bool = "auto") -> dict[str, Any]:
    """Export trial ``trial`` (default: the best) of the search in ``run_dir`` to ``out`` (default:
    ``RUN_DIR/export/trial-NNNNN``); returns a summary row (trial, arch, metric, files, ONNX parity, BN calibration).

    ``calibrate_bn`` (``auto`` | ``true`` | ``false``): ``auto`` keeps the statistics of a checkpoint that was
    calibrated when the trial was scored and otherwise re-estimates them when the trial trained fewer than 5 epochs
    or started from pruned / inherited weights; ``true`` always re-estimates; ``false`` exports them as saved.
    ``meta.json`` records what was done under ``meta.bn_calibration``."""
    from ..train.bn import check_calibrate_mode

    calibrate_bn = check_calibrate_mode(calibrate_bn, "--calibrate-bn")
    from ..config import build_evaluator, build_space
    from ..export import build_with_state, export_model
    from ..store import SQLiteStore
    from ..study import STORE_NAME

    run = Path(run_dir)
    if not (run / STORE_NAME).is_file():
        raise InvalidValue("RUN_DIR", str(run_dir), f"a run folder holding {STORE_NAME} (written by nasforge search)")
    with SQLiteStore(run / STORE_NAME) as store:
        config = _run_config(run, store)
        if not config.evaluator.exportable:
            raise InvalidValue("RUN_DIR", str(run_dir), f"a run whose trials were trained (evaluator kind 'train'; "
                               f"this one is {config.evaluator.kind!r}, which keeps no weights)")
        t = store.get(_best_id(run, store) if trial is None else trial)
    if t.state.value != "complete":
        raise InvalidValue("--trial", t.id, f"a complete trial (trial {t.id} is {t.state.value})")
    space = build_space(config)
    arch = space.validate(t.arch)
    evaluator = build_evaluator(config, space)
    shape, classes = evaluator.input_spec
    path = _checkpoint_path(t, run)
    ckpt = _checkpoint(path, t.checkpoint_sha256)
    model = build_with_state(space, arch, shape, classes, ckpt["model"])
    calibration = _calibrate_export(model, ckpt, t, evaluator, calibrate_bn)
    target = Path(out) if out is not None else run / "export" / f"trial-{t.id:05d}"
    meta = {"run_dir": str(run.resolve()), "trial": t.id, "metrics": t.result.metrics if t.result else {},
            "costs": t.result.costs if t.result else {}, "checkpoint": str(path), "checkpoint_sha256":
            t.checkpoint_sha256, "config_name": config.name, "bn_calibration": calibration}
    files = export_model(model, arch, target, input_shape=shape, onnx=onnx, meta=meta,
                         space_kwargs=config.space.kwargs, program=program)
    onnx_info = json.loads(Path(files["meta"]).read_text(encoding="utf-8"))["onnx"]
    return {"trial": t.id, "arch": space.format(arch), config.metric: t.metric(config.metric), "out": str(target),
            "files": ", ".join(sorted(Path(p).name for p in files.values())),
            "onnx max abs diff": onnx_info.get("max_abs_diff"), "bn calibrated": calibration["bn_calibrated"],
            "bn calibration": calibration.get("source", calibration.get("bn_calib_reason"))}


def _export_supernet(args: argparse.Namespace, run: Path) -> int:
    """A supernet run folder: the ``export`` step of the method that trained it."""
    if args.trial is not None:
        raise InvalidValue("--trial", args.trial, "no --trial for a supernet run folder (name the member with --arch)")
    if args.calibrate_bn != "auto":  # sliced weights: the method always calibrates a member before exporting it
        raise InvalidValue("--calibrate-bn", args.calibrate_bn, "auto for a supernet run folder (members are always "
                                                                "BN-calibrated on the run's calibration batches)")
    if not args.arch:
        raise InvalidValue("--arch", None, "the architecture to extract from the supernet (string or JSON)")
    export_member = method_of_folder(run).step("export", "export --arch")
    out = Path(args.out) if args.out else run / "export" / "member"
    result = export_member(run, args.arch, out, onnx=False if args.no_onnx else None)
    emit(args, {"out": str(out), **(dict(result) if isinstance(result, Mapping) else {})})
    return 0


@command("export", help="export a trained trial (default: the best) as model.pt + arch.json + model.onnx")
def cmd_export(args: argparse.Namespace) -> int:
    """Export trial N of the search in RUN_DIR (default: the best) for deployment: model.pt (state dict),
    arch.json (space, kwargs, architecture, input shape, classes), model.onnx checked against onnxruntime
    (unless --no-onnx or onnxruntime is missing) and meta.json. Rebuild with nasforge.export.load_exported(DIR).
    BN statistics: see --calibrate-bn (meta.json records what was done).

    A supernet run folder (supernet.pt, no trials.sqlite) exports the member named by --arch."""
    from ..study import STORE_NAME

    run = Path(args.run_dir)
    if not run.is_dir():
        raise InvalidValue("RUN_DIR", str(run), "an existing run folder")
    if (run / SUPERNET_FILE).is_file() and not (run / STORE_NAME).is_file():
        return _export_supernet(args, run)
    if args.arch:
        raise InvalidValue("--arch", args.arch, "nothing for a search run folder (choose the trial with --trial)")
    emit(args, export_trial(run, args.trial, args.out, onnx=False if args.no_onnx else None, program=args.program,
                            calibrate_bn=args.calibrate_bn))
    return 0


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder of `nasforge search` (or of a supernet run)")
    p.add_argument("--trial", type=int_at_least(0, "--trial"), default=None,
                   help="trial id (default: the study's best)")
    p.add_argument("--out", help="export folder (default: RUN_DIR/export/trial-NNNNN)")
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.add_argument("--program", action="store_true",
                   help="also write model.pt2 (torch.export; runs without nasforge; search trials only)")
    p.add_argument("--arch", help="supernet run folders: the member architecture to export")
    p.add_argument("--calibrate-bn", default="auto", metavar="auto|true|false",
                   help="re-estimate BN statistics on the run's training data before exporting (default auto: keep "
                        "statistics calibrated when the trial was scored, else when it trained < 5 epochs or from "
                        "pruned / inherited weights)")


cmd_export.configure = _export_options  # type: ignore[attr-defined]
