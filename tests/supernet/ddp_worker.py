"""One rank of the distributed supernet test (tests/supernet/test_ddp.py), launched by torchrun.

Usage: ``torchrun --nproc_per_node 2 ddp_worker.py OUT_DIR``. Every rank builds the supernet from a DIFFERENT seed
(the trainer must broadcast rank 0's weights), trains one epoch of a tiny BigNAS table with the sandwich rule and
writes ``OUT_DIR/rank{r}.pt``: its weights before and after the broadcast, at the end, and its epoch log. Before
that, a second supernet takes ONE step on the first global batch and the rank records the gradients it stepped
with, the weights after the step and that global batch (``one_step``: compared with a single-process step).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from nasforge.data import DataConfig, load_data
from nasforge.spaces.bignas import BigNASSpace, BigNASStage
from nasforge.supernet.distributed import init_distributed, shutdown_distributed
from nasforge.supernet.mbconv import ElasticMBConvSupernet
from nasforge.supernet.train import StepRecipe, SupernetTrainer
from nasforge.train import TrainConfig

SPACE = BigNASSpace(stages=(BigNASStage((4, 8), (1, 2), (3, 5), (1,), 1),
                            BigNASStage((8, 12), (1, 2), (3, 5), (2, 3), 2)),
                    resolutions=(12, 16), stem_widths=(4, 8), head_widths=(16,))
DATA = DataConfig(source="embedded", limit=160, image_size=16, val_fraction=0.25, test_fraction=0.0)
TRAIN = TrainConfig.from_recipe("bignas", batch_size=16, lr=0.2, warmup_epochs=0.0, min_lr_ratio=0.05)


def trainer(net: ElasticMBConvSupernet, splits, ctx=None, **kwargs) -> SupernetTrainer:
    """The trainer of both phases (also built, single-process, by the test for the reference step)."""
    return SupernetTrainer(net, SPACE, splits, recipe=StepRecipe.bignas(), train_config=TRAIN, epochs=1.0, seed=0,
                           dist=ctx, **kwargs)


def one_step(ctx, splits) -> dict:
    """One data-parallel step of a fresh supernet (rank 0's initial weights after the broadcast) on the first
    global batch: the averaged gradients it stepped with and the weights after the step."""
    net = ElasticMBConvSupernet(SPACE, (1, 16, 16), 10, generator=torch.Generator().manual_seed(100 + ctx.rank))
    tr = trainer(net, splits, ctx)
    x, y = next(iter(tr._loader(0)))
    tr.train_step(x, y)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()}
    return {"x": x, "y": y, "grads": grads, "after": {k: v.clone() for k, v in net.state_dict().items()}}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    ctx = init_distributed("gloo", "cpu")
    splits = load_data(DATA)
    step = one_step(ctx, splits)
    net = ElasticMBConvSupernet(SPACE, (1, 16, 16), 10, generator=torch.Generator().manual_seed(100 + ctx.rank))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    tr = trainer(net, splits, ctx, checkpoint_path=out / "supernet.pt", calib_batches=1, eval_batches=1,
                 eval_batch_size=20)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    seen: list[torch.Tensor] = []  # the training inputs this rank's supernet saw (first child of each step)
    hook = net.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
    tr.fit()
    hook.remove()
    torch.save({"rank": ctx.rank, "world": ctx.world_size, "before": before, "start": start,
                "final": net.state_dict(), "history": tr.history,
                "inputs": torch.stack(seen[:4]), "one_step": step}, out / f"rank{ctx.rank}.pt")
    shutdown_distributed(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
