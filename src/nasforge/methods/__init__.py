"""The NAS methods, each one short pipeline over the shared parts, registered in
:data:`nasforge.registry.METHODS` (:mod:`nasforge.methods.base`): ``menas`` (a search), ``bignas`` and ``spos``
(supernet training), ``padnas`` (progressive supernet training, search and operation pruning), ``dcnas``
(distribution-consistent supernet training with weight banks, search inside its pool), ``darts``
(differentiable cell search) and ``lnas`` (DARTS with lottery-ticket pruning of weights and / or architecture parameters)."""
from . import bignas, darts, dcnas, lnas, menas, padnas  # noqa: F401  (register the built-in methods)
from .base import Method, get_method, method_of_run, register_method

__all__ = ["Method", "get_method", "method_of_run", "register_method"]
