"""Export a searched network for deployment: weights, architecture, and an ONNX graph checked against PyTorch.

A search ends with one architecture and its trained weights (the MENAS tickets after fine-tuning, a trained trial
of any multi-trial search, a BigNAS child extracted from its supernet). :func:`export_model` writes a folder that
needs nothing from the run that produced it::

    model.pt     the state dict (nasforge.io.save_checkpoint; torch.load(..., weights_only=True) reads it)
    arch.json    {"format", "space", "space_kwargs", "arch": {"space", "genes"}, "arch_str", "input_shape",
                  "num_classes"}
    model.onnx   when onnxruntime is importable (or required with onnx=True): TorchScript-based exporter
                 (torch.onnx.export(..., dynamo=False)), dynamic batch axis, checked against onnxruntime
    meta.json    sha256 of the files, the ONNX max |torch - onnxruntime| on the example input, torch version,
                 and the caller's ``meta``

Rebuilding the network needs no generated code, only nasforge::

    space = nasforge.get_space(a["space"], **a["space_kwargs"])
    arch = space.validate(nasforge.Architecture.from_json(a["arch"], validate=False))
    net = space.build(arch, tuple(a["input_shape"]), a["num_classes"])
    net.load_state_dict(torch.load("model.pt", weights_only=True))

which is what :func:`load_exported` does (with the checksum verified and without drawing an initialisation).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .arch import Architecture
from .cost.counted import eval_mode, on_device, run_checked
from .errors import DataError, InvalidArchitecture, InvalidValue
from .io import load_checkpoint, save_checkpoint, sha256_file, write_json
from .registry import get_space
from .spaces.state import check_state_matches, empty_network


def _plain(value: Any) -> Any:
    """Constructor arguments as JSON values: dataclasses (e.g. ``BigNASStage``) become mappings, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

__all__ = ["export_model", "load_exported", "build_with_state", "onnx_available", "EXPORT_FORMAT", "FILES",
           "PARITY_TOLERANCE"]

EXPORT_FORMAT = "nasforge.export/1"
#: file names inside an export folder
FILES = {"model": "model.pt", "arch": "arch.json", "onnx": "model.onnx", "meta": "meta.json", "program": "model.pt2"}
#: largest allowed max |torch - onnxruntime| on the example input
PARITY_TOLERANCE = 1e-3


def onnx_available() -> bool:
    """Whether ``onnx`` and ``onnxruntime`` can be imported (the ``nasforge[onnx]`` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _space(name: str, kwargs: Mapping[str, Any] | None) -> Any:
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise InvalidValue("space_kwargs", type(kwargs).__name__, "a mapping of the space's constructor arguments")
    try:
        return get_space(name, **dict(kwargs or {}))
    except TypeError as exc:
        raise InvalidValue("space_kwargs", dict(kwargs or {}), f"constructor arguments of space {name!r} ({exc})") \
            from None


def build_with_state(space: Any, arch: Architecture, input_shape: tuple[int, int, int], num_classes: int,
                     state: Mapping[str, Tensor], device: str | torch.device = "cpu") -> nn.Module:
    """``space.build(arch, input_shape, num_classes)`` on ``device`` holding ``state`` (checked first: a state
    dict of another network is a one-line :class:`InvalidValue`). No initialisation is drawn."""
    check_state_matches(state, space, arch, input_shape, num_classes, field="state dict")
    net = empty_network(space, arch, input_shape, num_classes, device)
    net.load_state_dict(state)
    return net


def _example(example_input: Any, shape: tuple[int, int, int]) -> Tensor:
    if example_input is None:  # a local generator: the global RNG is never touched
        return torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
    if (not isinstance(example_input, Tensor) or not example_input.is_floating_point()
            or tuple(example_input.shape[1:]) != shape or example_input.dim() != 4):
        raise InvalidValue("example_input", tuple(getattr(example_input, "shape", ())) or type(example_input).__name__,
                           f"a float tensor of shape (N, {shape[0]}, {shape[1]}, {shape[2]})")
    return example_input.detach().cpu()


def _export_onnx(net: nn.Module, x: Tensor, expected: Tensor, path: Path) -> dict[str, Any]:
    """Write ``net`` to ``path`` with the TorchScript-based exporter and compare onnxruntime's output on ``x``
    with ``expected``; a failed export or a difference above :data:`PARITY_TOLERANCE` raises (file removed)."""
    import onnx as onnx_lib
    import onnxruntime as ort

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
    except Exception as exc:  # exporters and runtimes raise many kinds for unsupported ops
        path.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InvalidValue("onnx", "export failed", f"onnx=False / --no-onnx to skip it ({first})") from None
    diff = float(np.abs(got - expected.numpy()).max())
    if not diff <= PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise InvalidValue("model.onnx max |torch - onnxruntime|", diff,
                           f"<= {PARITY_TOLERANCE} (onnx=False / --no-onnx to export without ONNX)")
    opset = max((o.version for o in onnx_lib.load(str(path), load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx")), default=None)
    return {"exported": True, "exporter": "torchscript", "opset": opset, "max_abs_diff": diff,
            "parity_tolerance": PARITY_TOLERANCE, "parity_batch": int(x.shape[0]),
            "onnxruntime": ort.__version__}


def _want_onnx(onnx: Any) -> bool:
    if onnx not in (None, True, False):
        raise InvalidValue("onnx", onnx, "None (when onnxruntime is installed), True (required) or False")
    if onnx is True and not onnx_available():
        raise InvalidValue("onnx", True, "False or None (onnx / onnxruntime are not installed: "
                                         "pip install 'nasforge[onnx]')")
    return onnx_available() if onnx is None else bool(onnx)


def _checked_inputs(model: Any, arch: Any, meta: Any, space_kwargs: Mapping[str, Any] | None) -> tuple[Any, Architecture]:
    """The space of ``arch`` (built with ``space_kwargs``) and ``arch`` validated in it; one-line errors."""
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    if not isinstance(arch, Architecture):
        raise InvalidValue("arch", type(arch).__name__, "a nasforge Architecture")
    if meta is not None and not isinstance(meta, Mapping):
        raise InvalidValue("meta", type(meta).__name__, "a mapping (stored in meta.json)")
    space = _space(arch.space, space_kwargs)
    try:
        return space, space.validate(arch)
    except InvalidArchitecture as exc:  # typically a reduced space whose constructor arguments were not passed
        raise InvalidValue("space_kwargs", dict(space_kwargs or {}),
                           f"the constructor arguments of the space {arch.space!r} that arch belongs to ({exc})") \
            from None


def export_model(model: nn.Module, arch: Architecture, out_dir: str | os.PathLike[str], *,
                 input_shape: tuple[int, int, int], example_input: Tensor | None = None, onnx: bool | None = None,
                 meta: Mapping[str, Any] | None = None,
                 space_kwargs: Mapping[str, Any] | None = None, program: bool = False) -> dict[str, str]:
    """Write ``model`` (the network of ``arch`` at ``input_shape``) to ``out_dir``; returns file kind -> path.

    ``space_kwargs``: the constructor arguments of ``arch``'s space when it is not the registered default (e.g.
    a reduced ``menas-mt``); recorded so that :func:`load_exported` rebuilds the same network. The model is
    checked against ``space.build(arch, input_shape, num_classes)`` by tensor names and shapes first (the class
    count is read from its output). ``example_input`` (default: 2 standard-normal images from a local generator)
    feeds the ONNX parity check. ``onnx``: ``None`` exports ONNX when onnxruntime is installed, ``True``
    requires it, ``False`` skips it. ``meta`` is stored in ``meta.json`` under ``"meta"``. The caller's model
    is not modified (modes restored; copied to the CPU when it lives elsewhere). ``program=True`` also writes
    ``model.pt2``, a :func:`torch.export.export` program with a dynamic batch size that runs without nasforge
    (``torch.export.load("model.pt2").module()(x)``), checked against the model on ``example_input``; it takes
    tens of seconds, hence opt-in.
    """
    space, arch = _checked_inputs(model, arch, meta, space_kwargs)
    want_onnx = _want_onnx(onnx)
    shape = space.resolve_input(input_shape, None)[0]
    x = _example(example_input, shape)
    net = on_device(model, torch.device("cpu"))
    with eval_mode(net), torch.no_grad():
        expected = run_checked(net, x).float()
        classes = int(expected.shape[-1])
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        check_state_matches(state, space, arch, shape, classes, field="model")
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InvalidValue("out_dir", str(out), "a folder (this path is a file)")
        out.mkdir(parents=True, exist_ok=True)
        paths = {"model": out / FILES["model"], "arch": out / FILES["arch"], "meta": out / FILES["meta"]}
        sha = {FILES["model"]: save_checkpoint(paths["model"], state)}
        write_json(paths["arch"], {"format": EXPORT_FORMAT, "space": space.name,
                                   "space_kwargs": _plain(dict(space_kwargs or {})),
                                   "arch": json.loads(arch.to_json()),
                                   "arch_str": space.format(arch), "input_shape": list(shape), "num_classes": classes})
        sha[FILES["arch"]] = sha256_file(paths["arch"])
        onnx_info: dict[str, Any] = {"exported": False, "reason": "onnx=False" if onnx is False else
                                     "onnx / onnxruntime not installed"}
        if want_onnx:
            paths["onnx"] = out / FILES["onnx"]
            onnx_info = _export_onnx(net, x, expected, paths["onnx"])
            sha[FILES["onnx"]] = sha256_file(paths["onnx"])
        program_info: dict[str, Any] = {"exported": False}
        if program:
            paths["program"] = out / FILES["program"]
            program_info = _export_program(net, x, expected, paths["program"])
            sha[FILES["program"]] = sha256_file(paths["program"])
    write_json(paths["meta"], {"format": EXPORT_FORMAT, "torch": torch.__version__, "sha256": sha,
                               "onnx": onnx_info, "program": program_info, "meta": dict(meta or {}),
                               "load": "nasforge.export.load_exported(FOLDER) -> (network, architecture)"})
    return {kind: str(p) for kind, p in paths.items()}


def _export_program(net: nn.Module, x: Tensor, expected: Tensor, path: Path) -> dict[str, Any]:
    """``torch.export`` the network (dynamic batch), save it atomically, reload it and check its outputs."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        program = torch.export.export(net, (x,), dynamic_shapes=((({0: batch}),)))
    except Exception as exc:  # an op torch.export cannot trace: the rest of the export stands
        raise InvalidValue("program", True, f"a network torch.export can trace ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]})") from None
    tmp = path.with_suffix(".pt2.tmp")
    torch.export.save(program, str(tmp))
    os.replace(tmp, path)
    got = torch.export.load(str(path)).module()(x).float()
    diff = float((got - expected).abs().max())
    if diff > 1e-4:
        path.unlink(missing_ok=True)
        raise InvalidValue("program", f"max abs diff {diff:.3g}", "outputs within 1e-4 of the PyTorch model")
    return {"exported": True, "max_abs_diff": diff, "load": "torch.export.load('model.pt2').module()"}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"export folder: {str(path)!r} does not exist; expected a folder written by export_model")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise DataError(f"export folder: {str(path)!r} is not valid JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"export folder: {str(path)!r} holds {type(data).__name__}; expected a JSON object")
    return data


def load_exported(out_dir: str | os.PathLike[str],
                  device: str | torch.device = "cpu") -> tuple[nn.Module, Architecture]:
    """Rebuild the network of an :func:`export_model` folder (eval mode, on ``device``) and its architecture.

    ``model.pt`` is verified against the SHA-256 in ``meta.json`` and read with ``weights_only=True``.
    """
    out = Path(out_dir)
    info = _read_json(out / FILES["arch"])
    try:
        space = _space(info["space"], info.get("space_kwargs"))
        arch = space.validate(Architecture.from_json(info["arch"], validate=False))
        shape, classes = space.resolve_input(tuple(info["input_shape"]), info["num_classes"])
    except (KeyError, TypeError):
        raise DataError(f"export folder: {str(out / FILES['arch'])!r} lacks space / arch / input_shape / "
                        "num_classes") from None
    sha = (_read_json(out / FILES["meta"]).get("sha256") or {}).get(FILES["model"]) \
        if (out / FILES["meta"]).is_file() else None
    state = load_checkpoint(out / FILES["model"], sha256=sha)
    if not isinstance(state, Mapping):
        raise DataError(f"export folder: {str(out / FILES['model'])!r} holds {type(state).__name__}; "
                        "expected a state dict")
    return build_with_state(space, arch, shape, classes, state, device).eval(), arch
