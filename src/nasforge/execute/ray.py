"""Ray: many trials across the machines of a Ray cluster (``pip install 'nasforge[ray]'``).

``RayExecutor(address="local")`` starts a private local Ray instance (stopped again by :meth:`shutdown`);
``"auto"`` joins the cluster this machine belongs to (``ray start --head`` / a job on a cluster); a URL
(``ray://head:10001`` or ``host:6379``) connects to a remote one. When Ray is already initialised in this process,
the executor uses that instance and leaves it running.

Each trial is one Ray task with ``num_cpus`` CPUs and, when the cluster has GPUs, one GPU (``num_gpus=1``: "one GPU
per network", as MENAS trains its population in parallel, menas.txt "Ablation Studies"; Ray
sets ``CUDA_VISIBLE_DEVICES`` so the evaluator's ``"cuda"`` / ``"auto"`` device is that GPU); on a CPU-only cluster
the tasks ask for no GPU. ``max_workers`` defaults to what the cluster can run at once.

Worker processes are reused across trials (``fresh_process=False``, the default), GPU tasks included (Ray's own
default gives a GPU task a fresh process per call): an evaluator's per-process data cache then decodes a dataset
once per worker, not once per trial; after each trial the worker returns its cached CUDA blocks to the driver
(``torch.cuda.empty_cache``). ``fresh_process=True`` restores one process per trial.

On a cluster of several nodes, :meth:`RayExecutor.check_paths` runs a tiny task on every alive node and fails in
one line when a path the trials read or write (``data.source``, the run folder) is missing on some of them: they
must be on a filesystem every node mounts at the same path.

Futures are Ray object references turned into :class:`concurrent.futures.Future` (``ObjectRef.future()``), so the
study waits on them like on any other executor.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import socket
from typing import Any, Callable, Mapping

from ..errors import InvalidValue, NasforgeError
from .base import Executor

__all__ = ["RayExecutor", "MissingExtra", "import_ray", "missing_paths"]


class MissingExtra(NasforgeError):
    """An optional dependency is not installed; the message names the pip extra that provides it."""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`MissingExtra` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingExtra("executor 'ray': the ray package is not installed; "
                           "install it with: pip install 'nasforge[ray]'") from None
    return ray


def _check_address(address: Any) -> str:
    if not isinstance(address, str) or not address:
        raise InvalidValue("executor.address", address, "'local', 'auto', 'ray://HOST:PORT' or 'HOST:PORT'")
    return address


class RayExecutor(Executor):
    """Trials as Ray tasks; see the module docstring for ``address`` and GPU placement."""

    name = "ray"
    remote_nodes = True

    def __init__(self, address: str = "local", *, workers: int | None = None, num_cpus: float = 1.0,
                 num_gpus: float | None = None, fresh_process: bool = False,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        self.address = _check_address(address)
        if not isinstance(fresh_process, bool):
            raise InvalidValue("executor.fresh_process", fresh_process, "true or false")
        self.fresh_process = fresh_process
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise InvalidValue("executor.workers", workers, "a positive int or None (as many as the cluster fits)")
        if not isinstance(num_cpus, (int, float)) or num_cpus <= 0:
            raise InvalidValue("executor.num_cpus", num_cpus, "a number > 0 (CPUs per trial)")
        if num_gpus is not None and (not isinstance(num_gpus, (int, float)) or num_gpus < 0):
            raise InvalidValue("executor.num_gpus", num_gpus, "a number >= 0 or None (1 when the cluster has GPUs)")
        self._ray = import_ray()
        self._owns_ray = False
        if not self._ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            if self.address != "local":
                kwargs["address"] = self.address
            try:
                self._ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InvalidValue("executor.address", self.address,
                                   f"a reachable Ray cluster, or 'local' to start one ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:160]})") from None
            self._owns_ray = True
        resources = self._ray.cluster_resources()
        cluster_gpus = float(resources.get("GPU", 0))
        self.num_gpus = float(num_gpus) if num_gpus is not None else (1.0 if cluster_gpus > 0 else 0.0)
        self.num_cpus = float(num_cpus)
        by_cpu = int(float(resources.get("CPU", 1)) // self.num_cpus)
        by_gpu = int(cluster_gpus // self.num_gpus) if self.num_gpus > 0 else by_cpu
        self.max_workers = workers if workers is not None else max(1, min(by_cpu, by_gpu))
        self._remote: Any = None
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        if self._ray is None:
            raise InvalidValue("ray executor", "shut down", "an executor that has not been shut down")
        if self._remote is None:  # max_calls 0: a worker runs any number of trials (1: a fresh process each)
            self._remote = self._ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0,
                                            max_calls=1 if self.fresh_process else 0)(_run_trial)
        ref = self._remote.remote(fn, *args)
        self._refs = [r for r in self._refs if not _ready(self._ray, r)] + [ref]
        return ref.future()

    def shutdown(self, *, cancel: bool = False) -> None:
        """Cancel tasks in flight when asked; stop Ray if this executor started it."""
        ray, self._ray = self._ray, None
        if ray is None:
            return
        if cancel:
            for ref in self._refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass
        self._refs.clear()
        if self._owns_ray:
            ray.shutdown()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.max_workers, "address": self.address,
                "num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "fresh_process": self.fresh_process}

    def check_paths(self, paths: Mapping[str, str]) -> None:
        """Fail in one line when a path (``{field: path}``) is missing on some alive node of the cluster."""
        if self._ray is None or not paths:
            return
        missing = missing_paths(self._ray, list(paths.values()))
        for field, path in paths.items():
            nodes = sorted(node for node, lost in missing.items() if path in lost)
            if nodes:
                raise InvalidValue(field, path, f"a path every Ray node sees (missing on {len(nodes)} of "
                                                f"{len(missing)} nodes: {', '.join(nodes[:4])}); put it on a "
                                                f"filesystem all nodes mount at the same path")


def _run_trial(fn: Callable[..., Any], *args: Any) -> Any:
    """One trial in a (reused) Ray worker; the worker's cached CUDA memory is released afterwards."""
    try:
        return fn(*args)
    finally:
        import torch  # the worker imported it already, through the evaluator

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _missing_here(paths: list[str]) -> tuple[str, list[str]]:
    return socket.gethostname(), [p for p in paths if not os.path.exists(p)]


def missing_paths(ray: Any, paths: list[str]) -> dict[str, list[str]]:
    """``{node: [paths missing there]}`` over every alive node of the cluster (one pinned task per node)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_missing_here)
    refs = {}
    for node in ray.nodes():
        if node.get("Alive"):
            name = node.get("NodeManagerAddress") or node["NodeID"][:8]
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            refs[name] = probe.options(scheduling_strategy=strategy).remote(paths)
    return {name: ray.get(ref, timeout=120)[1] for name, ref in refs.items()}


def _ready(ray: Any, ref: Any) -> bool:
    done, _ = ray.wait([ref], timeout=0)
    return bool(done)
