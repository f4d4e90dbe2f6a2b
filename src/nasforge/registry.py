"""Registries: ``register / get / list`` for search spaces (and, later, strategies, evaluators, executors).

>>> from nasforge import list_spaces, get_space
>>> space = get_space("nb201")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from .errors import UnknownName

if TYPE_CHECKING:
    from .spaces.base import SearchSpace

T = TypeVar("T")

__all__ = ["Registry", "SPACES", "register_space", "get_space", "list_spaces"]


class Registry(Generic[T]):
    """A name -> factory table; ``create(name, **kwargs)`` builds an instance, with a clear error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._defaults: dict[str, T] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        _load_builtins()
        return sorted(self._factories)

    def factory(self, name: str) -> Callable[..., T]:
        """The registered class / factory ``name`` (its signature tells which constructor arguments it takes)."""
        _load_builtins()
        if name not in self._factories:
            raise UnknownName(self.kind, name, self.names())
        return self._factories[name]

    def create(self, name: str, **kwargs: Any) -> T:
        _load_builtins()
        if name not in self._factories:
            raise UnknownName(self.kind, name, self.names())
        if not kwargs:  # default instances are shared: spaces are immutable data
            if name not in self._defaults:
                self._defaults[name] = self._factories[name]()
            return self._defaults[name]
        return self._factories[name](**kwargs)


SPACES: Registry["SearchSpace"] = Registry("space")


def register_space(name: str) -> Callable[[Callable[..., "SearchSpace"]], Callable[..., "SearchSpace"]]:
    """Class decorator registering a :class:`~nasforge.spaces.base.SearchSpace` under ``name``."""
    return SPACES.register(name)


def get_space(name: str, **kwargs: Any) -> "SearchSpace":
    """The registered search space ``name`` (constructed with ``kwargs``, or the shared default instance)."""
    return SPACES.create(name, **kwargs)


def list_spaces() -> list[str]:
    """Names of all registered search spaces."""
    return SPACES.names()


_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import spaces  # noqa: F401  (registers the built-in spaces)
