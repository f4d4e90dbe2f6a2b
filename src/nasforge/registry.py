"""Registries: one ``name -> factory`` table per kind of plug-in (spaces, strategies, evaluators, executors,
stores, methods).

>>> from nasforge import list_spaces, get_space
>>> space = get_space("nb201")

This module sits in the lowest layer of the package (README, "Architecture"): it imports nothing of nasforge but
:mod:`nasforge.errors`. Each registry knows the *name* of the package that registers its built-in entries and
imports it (``importlib``) the first time the registry is read, the way entry points load third-party plug-ins:
the registry depends on no code of the things it lists, and ``import nasforge`` stays fast (no torch).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, TypeVar

from .errors import UnknownName

T = TypeVar("T")

__all__ = ["Registry", "SPACES", "STRATEGIES", "EVALUATORS", "EXECUTORS", "STORES", "METHODS", "register_space",
           "get_space", "list_spaces", "all_registries"]


class Registry(Generic[T]):
    """A name -> factory table; ``create(name, **kwargs)`` builds an instance, with a clear error for unknown names.

    ``builtins``: dotted names of the modules whose import registers the built-in entries (loaded on first use).
    """

    def __init__(self, kind: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.builtins = builtins
        self._factories: dict[str, Callable[..., T]] = {}
        self._defaults: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.builtins:
                importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._factories

    def factory(self, name: str) -> Callable[..., T]:
        """The registered class / factory ``name`` (its signature tells which constructor arguments it takes)."""
        self._load()
        if name not in self._factories:
            raise UnknownName(self.kind, name, self.names())
        return self._factories[name]

    def create(self, name: str, **kwargs: Any) -> T:
        """A new instance of ``name`` built with ``kwargs``; without kwargs the shared default instance (entries
        of a registry whose instances are immutable values, such as spaces)."""
        factory = self.factory(name)
        if not kwargs and self.kind == "space":
            if name not in self._defaults:
                self._defaults[name] = factory()
            return self._defaults[name]
        return factory(**kwargs)

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {', '.join(self.names())}>"


SPACES: Registry[Any] = Registry("space", ("nasforge.spaces",))
STRATEGIES: Registry[Any] = Registry("strategy", ("nasforge.strategies",))
#: evaluator kind -> its pydantic config model (with ``build(space, **search)``); see :mod:`nasforge.eval`
EVALUATORS: Registry[Any] = Registry("evaluator", ("nasforge.eval",))
EXECUTORS: Registry[Any] = Registry("executor", ("nasforge.execute",))
STORES: Registry[Any] = Registry("store", ("nasforge.store",))
#: method name -> :class:`nasforge.methods.base.Method` (its config model, run, evaluate and select steps)
METHODS: Registry[Any] = Registry("method", ("nasforge.methods",))


def all_registries() -> dict[str, Registry[Any]]:
    """Every registry by kind (the contract tests run the same checks over each one's entries)."""
    return {r.kind: r for r in (SPACES, STRATEGIES, EVALUATORS, EXECUTORS, STORES, METHODS)}


def register_space(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator registering a :class:`~nasforge.spaces.base.SearchSpace` under ``name``."""
    return SPACES.register(name)


def get_space(name: str, **kwargs: Any) -> Any:
    """The registered search space ``name`` (constructed with ``kwargs``, or the shared default instance)."""
    return SPACES.create(name, **kwargs)


def list_spaces() -> list[str]:
    """Names of all registered search spaces."""
    return SPACES.names()
