"""Data-parallel supernet training (nasforge.supernet.distributed) with two real gloo ranks launched by torchrun.

Each rank takes half of every global batch; every rank samples the same children; gradients are averaged across
ranks before the one optimizer step, so the replicas must stay bit-identical (and move away from their start), and
one 2-rank step must equal one single-process step on the same global batch.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasforge.data import load_data
from nasforge.device import seeded_torch
from nasforge.errors import InvalidValue
from nasforge.io import load_checkpoint
from nasforge.supernet.distributed import DistContext, env_ranks, init_distributed, shard
from nasforge.supernet.mbconv import ElasticMBConvSupernet
from nasforge.supernet.train import child_losses, frozen_bn_stats, plan_children, step_seed

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, dict, dict]:
    """Run ddp_worker.py under torchrun with two gloo ranks (once for the tests below): its folder, rank 0's and
    rank 1's records."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    return tmp_path, r0, r1


def _worker_module():
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_one_two_rank_step_equals_a_single_process_step(two_ranks):
    """The gradients a rank steps with are the single-process gradients of the global batch: the mean of the two
    half-batch gradients (each rank's loss is the mean over its half; BatchNorm uses the batch statistics of the
    half a rank holds and dropout the rank's seed, so the single-process reference runs the same children on the
    two halves with those seeds, sums the gradients and halves them, then takes the same optimizer step). Dropping
    the average over ranks (a sum: twice the gradient) or the all-reduce (each rank its own half) fails here."""
    _, r0, r1 = two_ranks
    worker = _worker_module()
    x, y = r0["one_step"]["x"], r0["one_step"]["y"]
    assert torch.equal(x, r1["one_step"]["x"]) and x.shape[0] == 16  # both ranks read the same global batch
    net = ElasticMBConvSupernet(worker.SPACE, (1, 16, 16), 10, generator=torch.Generator().manual_seed(100))
    tr = worker.trainer(net, load_data(worker.DATA))  # single process, rank 0's initial weights
    assert torch.equal(next(iter(tr._loader(0)))[0], x)  # ... which is the single-process run's first batch
    children = plan_children(worker.SPACE, tr.arch_rng, tr.recipe)
    net.train()
    tr.optimizer.zero_grad(set_to_none=True)
    with frozen_bn_stats(net):
        for rank, (xs, ys) in enumerate(zip(x.chunk(2), y.chunk(2))):
            with seeded_torch(step_seed(0, 0, rank)):
                child_losses(net, xs, ys, children, tr.recipe)
    for p in net.parameters():
        if p.grad is not None:
            p.grad.div_(2)
    grads = dict(net.named_parameters())
    used = [n for n, p in grads.items() if p.grad is not None]
    for record in (r0["one_step"], r1["one_step"]):
        assert {n for n, g in record["grads"].items() if g is not None} == set(used)
        for n in used:
            torch.testing.assert_close(record["grads"][n], grads[n].grad, rtol=1e-5, atol=1e-8, msg=n)
    tr.optimizer.step()
    after = net.state_dict()
    for record in (r0["one_step"], r1["one_step"]):
        for k, v in after.items():
            torch.testing.assert_close(record["after"][k], v, rtol=1e-5, atol=1e-7, msg=k)


@pytest.mark.slow
def test_two_gloo_ranks_train_identical_replicas(two_ranks):
    tmp_path, r0, r1 = two_ranks
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    keys = list(r0["final"])
    # different initial weights per rank, made equal by the broadcast from rank 0
    assert not torch.equal(r0["before"]["stem.conv.weight"], r1["before"]["stem.conv.weight"])
    assert all(torch.equal(r0["start"][k], r0["before"][k]) and torch.equal(r1["start"][k], r0["before"][k])
               for k in keys)
    # bit-identical replicas after a full epoch of sandwich steps on different shards, and they trained
    assert all(torch.equal(r0["final"][k], r1["final"][k]) for k in keys)
    moved = [k for k in keys if k.endswith("weight") and not torch.equal(r0["final"][k], r0["start"][k])]
    assert len(moved) > 10
    # each rank saw its own half of every global batch (16 -> 8 images), never the other rank's images
    assert r0["inputs"].shape[1] == 8 and r1["inputs"].shape[1] == 8
    assert not torch.equal(r0["inputs"], r1["inputs"])
    # only rank 0 evaluates; both ranks log the same rank-averaged losses
    assert r0["history"][0]["loss"] == r1["history"][0]["loss"]
    assert "acc_largest" in r0["history"][0] and "acc_largest" not in r1["history"][0]
    ckpt = load_checkpoint(tmp_path / "supernet.pt")
    assert ckpt["world_size"] == 2 and all(torch.equal(ckpt["model"][k], r0["final"][k]) for k in keys)


def test_single_process_context_and_shards():
    assert env_ranks({}) is None
    assert env_ranks({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    with pytest.raises(InvalidValue, match="environment variable RANK: got 4; allowed: 0..3"):
        env_ranks({"RANK": "4", "WORLD_SIZE": "4"})
    ctx = init_distributed("auto", "cpu") if "WORLD_SIZE" not in os.environ else DistContext()
    assert not ctx.distributed and ctx.is_main
    x = torch.arange(8)
    assert torch.equal(shard(x, DistContext(rank=1, world_size=2)), torch.arange(4, 8))
    with pytest.raises(InvalidValue, match="train.batch_size: got 7; allowed: a multiple of the world size 2"):
        shard(torch.arange(7), DistContext(rank=0, world_size=2))
    with pytest.raises(InvalidValue, match="backend"):
        init_distributed("mpi", "cpu")
