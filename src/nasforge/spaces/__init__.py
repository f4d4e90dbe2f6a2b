"""Built-in search spaces; importing this package registers them."""
# Each module registers its spaces with @register_space on import.
from . import (
    bignas,  # noqa: F401,E402
    darts,  # noqa: F401,E402
    mobilenet,  # noqa: F401,E402
    nb201,  # noqa: F401,E402
    proxyless,  # noqa: F401,E402
)
from .base import Dimension, SearchSpace  # noqa: F401
