"""Built-in search spaces; importing this package registers them."""
from .base import Dimension, SearchSpace  # noqa: F401

# Each module registers its spaces with @register_space on import.
from . import nb201  # noqa: F401,E402
from . import mobilenet  # noqa: F401,E402
from . import bignas  # noqa: F401,E402
from . import proxyless  # noqa: F401,E402
