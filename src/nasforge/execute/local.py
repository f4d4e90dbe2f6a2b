"""In-process execution: the default :class:`~nasforge.execute.base.Executor` (one evaluation at a time)."""
from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable

from .base import Executor

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Runs each submitted function immediately in the calling process and returns a finished future.

    No pickling, no extra process: the simplest way to search, and the only one where a debugger stops inside an
    evaluation. Exceptions are stored in the future; ``KeyboardInterrupt`` propagates at once.
    """

    name = "local"
    in_process = True

    def __init__(self) -> None:
        self.max_workers = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # stored like a real executor would; BaseException (Ctrl-C) propagates
            future.set_exception(exc)
        return future

    def shutdown(self, *, cancel: bool = False) -> None:
        """Nothing to release."""
