"""Checkpoint bytes per MENAS trial (nasforge issue 12, item 4) on a tiny run of the ``configs/menas-cpu.yaml``
space: 3 init nets, 1 ticket each, 2 children in a second generation (10 trials), short trainings.

    python benchmarks/bench_checkpoint_size.py [RUN_DIR]

Prints one JSON line: per trial (id, kind, file bytes, bytes of the model's tensors, checkpoint keys) and the mean.
Measured 2026-12-04 (2-core CPU, torch 2.13): 15.86 MB per trial with the resumable training state (model +
RMSProp buffers + scheduler + generators), 5.30 MB weights-only (model tensors: 5.25 MB).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from nasforge.methods.menas import run_menas
from nasforge.schema import read_yaml


def main() -> None:
    torch.set_num_threads(1)
    cfg = read_yaml(Path(__file__).resolve().parents[1] / "configs" / "menas-cpu.yaml")
    cfg["data"]["limit"] = 600
    cfg["strategy"]["params"].update(population_size=3, parent_size=2, num_children=2, generations=2,
                                     lottery_tickets=1)
    cfg["evaluator"].update(epochs_init=0.3, epochs_child=0.2, epochs_finetune=0.1, proposals=2, rank_images=60)
    cfg.update(device="cpu", progress=False, report=False)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "run"
    study = run_menas(cfg, out)
    rows = []
    for t in study.trials():
        if t.checkpoint:
            ckpt = torch.load(t.checkpoint, weights_only=True)
            rows.append({"trial": t.id, "kind": t.info.get("kind"), "bytes": Path(t.checkpoint).stat().st_size,
                         "model_bytes": sum(v.numel() * v.element_size() for v in ckpt["model"].values()),
                         "keys": sorted(ckpt)})
    study.close()
    print(json.dumps({"trials": rows, "mean_bytes": sum(r["bytes"] for r in rows) / len(rows),
                      "mean_model_bytes": sum(r["model_bytes"] for r in rows) / len(rows)}))


if __name__ == "__main__":
    main()
