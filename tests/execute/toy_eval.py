"""A picklable, deterministic, table-free evaluator for executor tests (importable by spawned workers)."""
from __future__ import annotations

import os

from nasforge.trial import Result


class KeyEvaluator:
    """accuracy = a deterministic function of the architecture key; info records the worker's pid."""

    name = "key-hash"

    def evaluate(self, arch, *, seed=None, context=None):
        return Result({"accuracy": int(arch.key()[:6], 16) % 1000 / 10}, info={"pid": os.getpid()})
