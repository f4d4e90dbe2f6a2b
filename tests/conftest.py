"""Shared fixtures: the real data folder beside the checkout (``<repo>/../shared/data``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The suite runs many tiny forward passes: one intra-op thread avoids thread oversubscription on small CI
# machines (measured: 10-100x slower small convs with 2 threads on a loaded 2-core machine). Tests that are about
# threading (latency) set their own count and restore it.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NASFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real test data; tests that need it are skipped (with the reason) when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found (set NASFORGE_SHARED_DATA)")
    return SHARED_DATA
