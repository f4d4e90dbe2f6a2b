"""Ray: many trials across the machines of a Ray cluster (``pip install 'nasforge[ray]'``).

``RayExecutor(address="local")`` starts a private local Ray instance (stopped again by :meth:`shutdown`);
``"auto"`` joins the cluster this machine belongs to (``ray start --head`` / a job on a cluster); a URL
(``ray://head:10001`` or ``host:6379``) connects to a remote one. When Ray is already initialised in this process,
the executor uses that instance and leaves it running.

Each trial is one Ray task with ``num_cpus`` CPUs and, when the cluster has GPUs, one GPU (``num_gpus=1``: "one GPU
per network", as MENAS trains its population in parallel, menas.txt "Ablation Studies"; Ray
sets ``CUDA_VISIBLE_DEVICES`` so the evaluator's ``"cuda"`` / ``"auto"`` device is that GPU); on a CPU-only cluster
the tasks ask for no GPU. ``max_workers`` defaults to what the cluster can run at once.

Futures are Ray object references turned into :class:`concurrent.futures.Future` (``ObjectRef.future()``), so the
study waits on them like on any other executor.
"""
from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable

from ..errors import InvalidValue, NasforgeError
from .base import Executor

__all__ = ["RayExecutor", "MissingExtra", "import_ray"]


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

    def __init__(self, address: str = "local", *, workers: int | None = None, num_cpus: float = 1.0,
                 num_gpus: float | None = None, init_kwargs: dict[str, Any] | None = None) -> None:
        self.address = _check_address(address)
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
        self._remotes: dict[Callable[..., Any], Any] = {}
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        if self._ray is None:
            raise InvalidValue("ray executor", "shut down", "an executor that has not been shut down")
        remote = self._remotes.get(fn)
        if remote is None:
            remote = self._remotes[fn] = self._ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                          max_retries=0)(fn)
        ref = remote.remote(*args)
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
                "num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


def _ready(ray: Any, ref: Any) -> bool:
    done, _ = ray.wait([ref], timeout=0)
    return bool(done)
