"""What a NAS method is to the rest of nasforge: a :class:`Method` entry in :data:`nasforge.registry.METHODS`.

A method is one short pipeline module (``methods/<name>.py``) over the shared parts. It owns its config model and
declares the steps the command line can run; the CLI (:mod:`nasforge.cli`) knows no method by name, it looks the
method up by the ``method:`` field of a config or of a run folder's ``config.yaml`` and calls these steps:

* ``kind="search"`` methods run as a search (``nasforge search CONFIG``): a strategy + evaluator pair in a
  :class:`~nasforge.study.Study` (MENAS). ``check(config)`` rejects a search config that is not theirs.
* ``kind="supernet"`` methods train a weight-sharing supernet into a run folder (``nasforge supernet train``):
  ``load_config(path, overrides)``, ``run(config, out, resume=...)``, ``summary(result)`` (the CLI's row), and
  optionally ``evaluate(run_dir, arch, ...)`` (``supernet eval``), ``select(run_dir, budgets, ...)`` (``supernet
  select``) and ``export(run_dir, arch, out, onnx=...)`` (``nasforge export RUN_DIR --arch``).

Method modules never import one another (an import-linter ``independence`` contract checks it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Literal

from pydantic import field_validator, model_validator

from ..data import DataConfig
from ..errors import InvalidValue
from ..io import atomic_write_text, lock_folder
from ..registry import METHODS, get_space
from ..schema import ConfigModel, dump_config, read_yaml

__all__ = ["Method", "RunConfig", "register_method", "get_method", "method_of_run", "open_run_folder",
           "RUN_CONFIG", "RESUME_MUTABLE"]

RUN_CONFIG = "config.yaml"
#: config fields a resumed run may change
RESUME_MUTABLE = frozenset({"progress", "device", "threads", "out"})


class RunConfig(ConfigModel):
    """Base of the methods' run configs (fields ``space`` and ``data`` declared by each): ``space: NAME`` stands
    for ``{name: NAME}``, and the ``data`` block is checked field by field (one-line errors)."""

    @model_validator(mode="before")
    @classmethod
    def _space_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("space"), str):
            data = {**data, "space": {"name": data["space"]}}
        return data

    @field_validator("data", check_fields=False)
    @classmethod
    def _data(cls, v: Any) -> Any:
        DataConfig.from_dict(v)  # raises InvalidValue naming the data field
        return v

    def built_space(self) -> Any:
        """The configured space (``self.space``: name + kwargs); constructor arguments it does not take are a
        one-line error naming ``space.kwargs``."""
        try:
            return get_space(self.space.name, **self.space.kwargs)
        except TypeError as exc:
            raise InvalidValue("space.kwargs", self.space.kwargs, f"constructor arguments of {self.space.name!r} "
                                                                  f"({exc})") from None


@dataclass(frozen=True)
class Method:
    """A registered NAS method (module docstring)."""

    name: str
    kind: Literal["search", "supernet"]
    #: the paper, as the README cites it
    paper: str
    #: the pydantic config model of a run (``SupernetConfig``; a search method's is ``SearchConfig``)
    config_model: type
    load_config: Callable[..., Any]
    run: Callable[..., Any]
    summary: Callable[[Any], dict[str, Any]] | None = None
    evaluate: Callable[..., dict[str, Any]] | None = None
    select: Callable[..., Any] | None = None
    export: Callable[..., dict[str, Any]] | None = None
    check: Callable[[Any], Any] | None = None

    def step(self, name: str, command: str) -> Callable[..., Any]:
        """The step ``name`` (``evaluate`` / ``select`` / ``export``), or a one-line error naming the command."""
        fn = getattr(self, name)
        if fn is None:
            with_step = [m for m in METHODS.names() if getattr(METHODS.factory(m), name) is not None]
            raise InvalidValue("method", self.name, f"a method with '{command}': {', '.join(with_step)}")
        return fn


def register_method(method: Method) -> Method:
    """Register ``method`` under its name (the registry maps a name to the :class:`Method` itself)."""
    METHODS.register(method.name)(method)  # type: ignore[arg-type]
    return method


def get_method(name: str, kind: str | None = None, field: str = "method") -> Method:
    """The registered method ``name``; with ``kind``, one of that kind (a one-line error naming ``field``)."""
    if name not in METHODS:
        raise InvalidValue(field, name, METHODS.names())
    method: Method = METHODS.factory(name)  # type: ignore[assignment]
    if kind is not None and method.kind != kind:
        allowed = [m for m in METHODS.names() if METHODS.factory(m).kind == kind]
        raise InvalidValue(field, name, allowed)
    return method


def method_of_run(config: dict[str, Any], default: str, kind: str | None = None) -> Method:
    """The method a (raw) config names in its ``method`` field (``default`` when it names none)."""
    name = config.get("method", default) if isinstance(config, dict) else default
    return get_method(str(name), kind)


def open_run_folder(config: Any, out: str | os.PathLike[str], resume: bool) -> tuple[Path, IO[str]]:
    """Lock the run folder ``out`` and write the resolved ``config.yaml``. A new run needs a folder without one
    unless ``resume``; a resumed run keeps its config (all fields but :data:`RESUME_MUTABLE`). Returns the folder
    and the lock (close it to release)."""
    run_dir = Path(out).resolve()
    if (run_dir / RUN_CONFIG).exists() and not resume:
        raise InvalidValue("--out", str(run_dir), "a new folder, or --resume to continue the run there")
    lock = lock_folder(run_dir)
    resolved = config.model_dump(mode="json")
    if (run_dir / RUN_CONFIG).exists():
        stored = read_yaml(run_dir / RUN_CONFIG)
        for key in sorted((set(resolved) | set(stored)) - RESUME_MUTABLE):
            if resolved.get(key) != stored.get(key):
                lock.close()
                raise InvalidValue(key, resolved.get(key), [stored.get(key)],
                                   where=f"the run in {run_dir} (--resume keeps its config)")
    atomic_write_text(run_dir / RUN_CONFIG, dump_config(resolved))
    return run_dir, lock
