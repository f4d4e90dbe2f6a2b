"""`torchrun -m nasforge supernet train` on a choice-block supernet: two gloo ranks train SPOS on NB201 cells
(ops unused by a step's child have no gradient on any rank and stay untouched)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from nasforge.io import load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_train_a_choice_supernet(tmp_path):
    config = {"name": "ddp-choice", "method": "spos", "space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}},
              "data": {"source": "digits", "limit": 400, "val_fraction": 0.2, "test_fraction": 0.0},
              "recipe": "padnas", "train": {"batch_size": 32, "lr": 0.1, "lr_reference_batch": None,
                                            "warmup_epochs": 0},
              "epochs": 1, "dropout": 0.0, "calib_batches": 1, "eval_batches": 1, "eval_batch_size": 40,
              "checkpoint_every": None, "seed": 0, "device": "cpu", "backend": "gloo", "threads": 1}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "nasforge", "supernet", "train",
           str(path), "--out", str(out), "--no-progress", "--format", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 10  # 320 training images / global batch 32
    state = load_checkpoint(out / "supernet.pt", sha256=result["checkpoint_sha256"])["model"]
    from nasforge import get_space
    from nasforge.supernet.choice import choice_supernet

    init = choice_supernet(get_space("nb201", C=4, N=1), (1, 8, 8), 10,
                           generator=torch.Generator().manual_seed(_init_seed(0))).state_dict()
    changed = [k for k in init if k.endswith("weight") and not torch.equal(init[k], state[k])]
    assert changed, "no weight moved"
    assert json.loads((out / "supernet.json").read_text())["supernet"] == "choice"


def _init_seed(seed: int) -> int:
    from nasforge.supernet.train import derived_seed

    return derived_seed(seed, 4)
