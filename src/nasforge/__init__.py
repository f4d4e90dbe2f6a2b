"""nasforge: neural architecture search on PyTorch.

Five published methods (MENAS, BigNAS, LNAS, DCNAS, PAD-NAS) on one shared core: architectures, search spaces,
networks, cost models, data, training, search strategies and a trial store.
"""
from .arch import Architecture, parse
from .errors import NasforgeError
from .registry import get_space, list_spaces, register_space

__version__ = "0.1.0"

__all__ = ["Architecture", "parse", "NasforgeError", "get_space", "list_spaces", "register_space", "__version__"]
