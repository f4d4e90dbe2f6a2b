"""Measured inference latency of a built network: eager PyTorch, or ONNX Runtime.

The hardware-aware methods search under a latency budget measured on the target device: PAD-NAS Sec. 3.1 constrains
``Lat_min <= Latency(s*) <= Lat_max`` and Sec. 3.2 predicts latency from a lookup table of per-operation
measurements (Sec. 4.1: 60-70 ms / 50-100 ms on a Pixel 3); BigNAS Sec. 3.2 / 4.4 selects architectures under
latency or FLOPs budgets. This module provides the single measurement primitive they rely on:

* fixed intra-op thread count (``torch.set_num_threads``, restored afterwards; ONNX Runtime's
  ``intra_op_num_threads``), warm-up calls, then :class:`torch.utils.benchmark.Timer.blocked_autorange`, which
  picks a block size that amortises timer overhead and synchronises the accelerator around each block, so CUDA
  timings are correct without manual ``torch.cuda.synchronize`` calls;
* the statistic is the **median** over timed blocks, with the inter-quartile range as its spread.

ONNX export: with the ``onnxscript`` package installed the dynamo exporter (``torch.onnx.export(dynamo=True)``)
is used; without it (the default install) the TorchScript exporter (``dynamo=False``) is used, which needs only
``onnx``/``onnxruntime``. Its deprecation warning is silenced here; the exporter used is recorded in
``LatencyResult.info["onnx_exporter"]``.
"""
from __future__ import annotations

import importlib.util
import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
from torch.utils.benchmark import Measurement, Timer

from ..device import torch_threads
from ..errors import InvalidValue, UnknownName
from .counted import (
    check_shape,
    eval_mode,
    make_input,
    on_device,
    resolve_device,
    run_checked,
)

__all__ = ["BACKENDS", "LatencyResult", "measure_latency", "onnx_exporter"]

#: the measurement backends ``measure_latency`` accepts
BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyResult:
    """One latency measurement of a network on one input batch (times are per forward call of the batch)."""

    median_ms: float
    iqr_ms: float
    mean_ms: float
    runs: int  #: number of timed blocks behind the median and IQR
    batch_size: int
    threads: int
    backend: str
    device: str
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def per_sample_ms(self) -> float:
        """Median latency divided by the batch size."""
        return self.median_ms / self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def onnx_exporter() -> str:
    """``"dynamo"`` when ``onnxscript`` is installed (the dynamo exporter needs it), else ``"torchscript"``."""
    return "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"


def _check_int(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InvalidValue(name, value, f"an int >= {low}")
    return value


def _time(fn: Callable[[], Any], threads: int, warmup: int, repeats: int, min_run_time: float) -> Measurement:
    """Warm up, then ``blocked_autorange`` until at least ``repeats`` blocks are timed (at most 4 rounds)."""
    for _ in range(warmup):
        fn()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    for _ in range(3):
        if len(m.times) >= repeats:
            break
        more = timer.blocked_autorange(min_run_time=min_run_time * (repeats - len(m.times)) / len(m.times))
        m = Measurement.merge([m, more])[0]
    return m


def _torch_fn(net: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def forward() -> Any:
        with torch.no_grad():
            return net(x)

    return forward


def _ort_session(net: nn.Module, x: torch.Tensor, threads: int, device: torch.device) -> tuple[Any, dict[str, Any]]:
    """Export ``net`` (on CPU) to a temporary ONNX file and open an ONNX Runtime session on it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InvalidValue("backend", "onnxruntime", "'torch' (onnxruntime is not installed: "
                           "pip install 'nasforge[onnx]')") from None
    if importlib.util.find_spec("onnx") is None:
        raise InvalidValue("backend", "onnxruntime", "'torch' (onnx is not installed: pip install 'nasforge[onnx]')")
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise InvalidValue("device", str(device), f"a device with an ONNX Runtime provider "
                           f"({', '.join(ort.get_available_providers())})")
    cpu_net, cpu_x = on_device(net, torch.device("cpu")), x.cpu()
    exporter = onnx_exporter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    with tempfile.TemporaryDirectory(prefix="nasforge-onnx-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        try:
            with warnings.catch_warnings(), eval_mode(cpu_net), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(cpu_net, (cpu_x,), path, dynamo=exporter == "dynamo",
                                  input_names=["input"], output_names=["output"])
        except Exception as exc:  # exporters raise many kinds for unsupported ops
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InvalidValue("backend", "onnxruntime", f"'torch' (ONNX export failed: {first})") from None
        session = ort.InferenceSession(path, options, providers=[provider])
    return session, {"onnx_exporter": exporter, "provider": provider}


def measure_latency(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1, threads: int | None = None,
                    warmup: int = 5, repeats: int = 10, min_run_time: float = 0.1,
                    device: str | torch.device = "cpu", backend: str = "torch", seed: int = 0) -> LatencyResult:
    """Median inference latency (ms per forward call of a ``batch_size`` batch) of ``model`` on ``device``.

    ``input_shape`` excludes the batch dimension. ``threads`` fixes the intra-op thread count (default: torch's
    current one) and is restored afterwards. ``warmup`` untimed calls precede at least ``repeats`` timed blocks
    of :meth:`Timer.blocked_autorange` (``min_run_time`` seconds each round). ``backend`` is ``"torch"`` (eager,
    no grad, eval mode) or ``"onnxruntime"``. The input is standard normal from a generator seeded with ``seed``.
    The caller's model is not modified (training flags restored; copied when it lives on another device).
    """
    if backend not in BACKENDS:
        raise UnknownName("backend", backend, BACKENDS)
    shape = check_shape(input_shape)
    batch_size = _check_int("batch_size", batch_size, 1)
    warmup, repeats = _check_int("warmup", warmup, 0), _check_int("repeats", repeats, 1)
    threads = torch.get_num_threads() if threads is None else _check_int("threads", threads, 1)
    if not isinstance(min_run_time, (int, float)) or not 0 < min_run_time <= 60:
        raise InvalidValue("min_run_time", min_run_time, "seconds in (0, 60]")
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    dev = resolve_device(device)
    net = on_device(model, dev)
    x = make_input(net, shape, batch_size, dev, seed=seed)
    info: dict[str, Any] = {}
    with torch_threads(threads), eval_mode(net):
        with torch.no_grad():
            run_checked(net, x)  # a bad input shape fails here, with a one-line error, before any timing
        if backend == "torch":
            fn = _torch_fn(net, x)
        else:
            session, info = _ort_session(net, x, threads, dev)
            feed = {session.get_inputs()[0].name: x.cpu().numpy()}
            fn = lambda: session.run(None, feed)  # noqa: E731
        m = _time(fn, threads, warmup, repeats, float(min_run_time))
    iqr = float(m.iqr) if math.isfinite(m.iqr) else 0.0
    return LatencyResult(median_ms=m.median * 1e3, iqr_ms=iqr * 1e3, mean_ms=m.mean * 1e3, runs=len(m.times),
                         batch_size=batch_size, threads=threads, backend=backend, device=str(dev), info=info)
