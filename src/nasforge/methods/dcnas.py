"""DCNAS: Distribution Consistent Neural Architecture Search (Pan et al., dcnas.txt), Algorithm 1 as one pipeline
over the shared parts: :class:`DcnasConfig` (``configs/dcnas*.yaml``) -> :func:`run_dcnas`.

The supernet is the choice-block supernet of the space with **weight banks** (:mod:`nasforge.supernet.choice`,
``copies = M``): every operator ``C_{l,k}`` holds ``M`` weight copies and an architecture uses copy ``o_{alpha,l}``
at layer ``l``. Algorithm 1, line by line:

1. the supernet with ``M`` copies per operator (seeded initialisation);
2. the pool ``A``: ``N`` architectures sampled uniformly without repeats (:attr:`DcnasConfig.N`);
3. ``Train(N, D, T_w)``: warm-up, one architecture of ``A`` per step, every layer on a random copy;
4. for every layer ``l = 1..L`` (:meth:`ChoiceSupernet.layers`; NB201: every edge of every cell):

   * **T x I pair steps** (I = steps per epoch): draw an operator ``k`` of layer ``l`` (one that holds weights and
     that two members of ``A`` share), two architectures ``alpha_i``, ``alpha_j`` of ``A`` using it, and update
     ``W_{alpha_i}`` by **Eq. 8**: on every layer ``f`` where both use the same operator, ``alpha_i``'s copy gets its
     own gradient plus ``lambda^f_{i,j}`` times the gradient of ``alpha_j``'s loss with respect to ``alpha_j``'s copy
     (Eq. 10-11; ``lambda`` = 0 elsewhere), then one optimizer step (SGD with momentum and weight decay, so the
     combined gradient goes through momentum). ``lambda^f_{i,j} = M_{C_{f,k}}(h_i^{f-1} - h_j^{f-1})``: the **meta
     network** of that operator, one linear layer + sigmoid on the difference of the two architectures' inputs to
     layer ``f`` (averaged over the batch and the spatial positions). Every ``tau`` steps the meta network of
     ``C_{l,k}`` takes one step (**Eq. 12**) on the look-ahead loss of **Eq. 9**: ``alpha_i``'s loss on the same
     batch with the weights of Eq. 8 (computed functionally, so the loss is differentiable in ``lambda``);
   * the **matching matrix** (lines 13-19): for every operator ``k`` of layer ``l`` with weights, the members of
     ``A`` that use it are run on a fixed batch of ``feature_images`` training images (their layers before ``l`` on
     their assigned copies) and ``lambda^l_{i,j}`` is computed for the pairs: all pairs (``matching_anchors:
     null``, the paper), or each member against ``matching_anchors`` anchors drawn (seeded) from those members;
   * **clustering** (line 20): scikit-learn K-means of the matrix's rows (each member's matching degrees) into
     ``M`` clusters;
   * **Eq. 7** (line 21): ``representatives`` members are drawn from each cluster, each is scored (cross-entropy on
     the fixed batch) with every copy ``m`` at layer ``l``, and clusters get distinct copies maximising the summed
     log-likelihood (``scipy.optimize.linear_sum_assignment``). Within a cluster every pair shares the copy, so
     Eq. 7's pairwise term ``log p(D | W, alpha_i, alpha_j)`` is, with the joint likelihood taken as the product of
     the two architectures' likelihoods, a sum of the same per-architecture terms: it ranks the copy choices as
     the first term does. Every member of the cluster gets that copy: ``o_{alpha, l}``;
   * ``Train(N, D, T)``: as the warm-up, with layers ``<= l`` on their assigned copies;
5. ``Train(N, D, T_f)``: the final fine-tune, every layer assigned.

Then the **search** inside ``A`` (Sec. 4.1 "Search"): the SPOS evolution (``spos-evolution``: population 50, 20
iterations, top-10; children outside ``A`` are regenerated) scored by the one-shot evaluator (BN recalibrated per
candidate on ``calib_images`` training images; each candidate on its assigned copies). ``kendall_n`` (nb201):
Kendall tau of the one-shot scores against the NB201 table on members of ``A``.

``sharing`` switches the ablations of Table 3: ``learned`` (DCNAS), ``random`` (every member of ``A`` gets a
uniformly random copy per layer at the start; pair steps become plain training steps, no clustering) and
``M: 1`` (global sharing: the SPOS supernet, trained on ``A``). All variants train the same number of epochs
``T_w + L (2T) + T_f`` (pair-step epochs included).

Learning rate: ``lr`` (0.5 at 1024 images, scaled linearly to the batch size: recipe ``dcnas-supernet``) decays
linearly to 0 over all the epochs above. Where the paper is silent (chosen here): the meta networks are updated
with Adam at ``eta`` (1e-3) and start at weight 0, bias 0 (lambda = 0.5); parts outside the choice layers (stem,
reductions, head) take ``alpha_i``'s gradient only in a pair step; BatchNorm normalises with batch statistics in
training and its statistics are recalibrated per candidate for scoring; an operator without weights (NB201's
``skip_connect``, ``avg_pool_3x3``, ``none``) is neither a pair-step operator nor clustered (its copies are
identical); a cluster smaller than ``representatives`` uses all its members.

Run folder: ``config.yaml``; ``state.pt`` (the resume point: weights, meta networks, optimizers, assignments,
the generator state; written at the end of every epoch-sized chunk of every phase, after every clustering and at
the end); ``log.jsonl`` (one line per chunk / clustering: phase, layer, mean losses, mean lambda, seconds);
``matching/layerNN.npz`` (per operator: the members' indices in ``A``, the anchors, the matrix, the cluster of each
member, the copy of each cluster); ``clusters.json`` (per layer and operator: cluster sizes, Eq. 7 scores, copies);
at the end ``supernet.pt`` / ``supernet.json`` / ``result.json`` (a supernet run folder any evaluator reads),
``assignments.json`` (the pool and every member's copies), ``search.json`` and ``dcnas.json`` (summary, best
architecture). ``--resume`` continues a killed run from the last chunk boundary (at most one epoch of work is
redone; the search is rerun from its start).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import nn
from tqdm.auto import tqdm

from ..arch import Architecture
from ..config import SpaceConfig
from ..data import Batches, DataConfig, load_data
from ..device import resolve_device, torch_threads
from ..errors import InvalidValue
from ..eval.oneshot import OneShotEvaluator, fixed_batches
from ..eval.rank import rank_consistency
from ..io import atomic_write_text, load_checkpoint, lock_folder, save_checkpoint, write_json
from ..registry import SPACES, get_space
from ..schema import RunName, dump_config, read_yaml, validated
from ..strategies import get_strategy
from ..supernet.run import ASSIGNMENTS, CHECKPOINT, RESULT, build_supernet_for, open_supernet, run_info, \
    write_run_info
from ..supernet.select import export_member
from ..supernet.train import derived_seed, frozen_bn_stats
from ..train import TrainConfig
from ..trial import Trial, TrialState
from .base import Method, RunConfig, register_method

__all__ = ["DcnasConfig", "load_dcnas_config", "dcnas_config_from_dict", "run_dcnas", "dcnas_summary",
           "evaluate_dcnas", "export_dcnas",
           "MetaNetworks", "SUMMARY", "STATE"]

SUMMARY, STATE, CONFIG, LOG = "dcnas.json", "state.pt", "config.yaml", "log.jsonl"
#: config fields a resumed run may change
RESUME_MUTABLE = frozenset({"progress", "device", "threads", "out"})
_NO_WEIGHTS = ("none", "skip_connect", "avg_pool_3x3", "identity")


class DcnasConfig(RunConfig):
    """One DCNAS run: the paper's names and defaults (module docstring; dcnas.txt Sec. 4.1, ImageNet).

    ``L`` / ``K``: the supernet's layers and operators per layer, ``None`` = the space's (a value given must match
    the space: 16 and 6 for ``dcnas-mbconv``). ``epochs`` of the paper (150) = ``T_w + L * 2T + T_f``. ``lr`` at
    1024 images (recipe ``dcnas-supernet``, linear decay); ``train``: overrides of the recipe (``batch_size``...).
    """

    name: RunName = "dcnas"
    method: Literal["dcnas"] = "dcnas"
    space: SpaceConfig = Field(default_factory=lambda: SpaceConfig(name="dcnas-mbconv"))
    data: dict[str, Any] = Field(default_factory=lambda: {"source": "embedded"})
    recipe: str = "dcnas-supernet"
    train: dict[str, Any] = Field(default_factory=dict)
    N: int = Field(10000, ge=2)
    M: int = Field(2, ge=1)
    L: Optional[int] = Field(16, ge=1)
    K: Optional[int] = Field(6, ge=1)
    T_w: float = Field(10.0, ge=0)
    T_f: float = Field(44.0, ge=0)
    T: float = Field(3.0, gt=0)
    tau: int = Field(20, ge=1)
    lr: float = Field(0.5, gt=0)
    eta: float = Field(1e-3, gt=0)
    sharing: Literal["learned", "random"] = "learned"
    matching_anchors: Optional[int] = Field(None, ge=2)
    representatives: int = Field(4, ge=1)
    feature_images: int = Field(256, ge=1)
    population_size: int = Field(50, ge=2)
    max_iterations: int = Field(20, ge=1)
    top_k: int = Field(10, ge=2)
    calib_images: int = Field(1000, ge=1)
    score_images: int = Field(1000, ge=1)
    eval_batch_size: int = Field(250, ge=1)
    score_split: Literal["val", "test"] = "val"
    kendall_n: int = Field(0, ge=0)
    search: bool = True
    seed: int = Field(0, ge=0)
    device: str = "auto"
    threads: Optional[int] = Field(None, ge=1)
    progress: bool = True
    out: Optional[str] = None

    @model_validator(mode="after")
    def _cross(self) -> "DcnasConfig":
        name = self.space.name
        if SPACES.factory(name).supernet != "choice":
            raise InvalidValue("space", name, "a choice space (nb201, proxyless-basic, proxyless-large, "
                                              "dcnas-mbconv): DCNAS banks the operators of a choice-block supernet")
        space = self.built_space()
        layers = _layer_count(space)
        if self.L is not None and self.L != layers:
            raise InvalidValue("L", self.L, f"{layers} (the layers of space {name!r}) or null")
        k = max(len(ops) for ops in space.op_sets().values())
        if self.K is not None and self.K != k:
            raise InvalidValue("K", self.K, f"{k} (the operators per layer of space {name!r}) or null")
        if self.N > space.cardinality():
            raise InvalidValue("N", self.N, f"at most {space.cardinality()} (the size of space {name!r})")
        if "lr" in self.train:
            raise InvalidValue("train.lr", self.train["lr"], "unset (the field 'lr' is the paper's rate)")
        self.train_config()
        if self.top_k > self.population_size:
            raise InvalidValue("top_k", self.top_k, f"at most population_size ({self.population_size})")
        if self.kendall_n and (name != "nb201" or self.kendall_n < 3 or self.kendall_n > self.N):
            raise InvalidValue("kendall_n", self.kendall_n, f"0, or 3..N ({self.N}) for space nb201 (the packaged "
                                                            "table)")
        if self.score_split == "val":
            DataConfig.from_dict(self.data).require_split("val", "the search scores on it; or set score_split: test")
        return self

    def train_config(self) -> TrainConfig:
        """The supernet recipe (``recipe`` + ``train`` overrides, at the paper's ``lr``)."""
        return TrainConfig.from_recipe(self.recipe, **{**self.train, "lr": self.lr})

    def total_epochs(self, layers: int) -> float:
        """``T_w + L * 2T + T_f`` (150 with the paper's values)."""
        return self.T_w + layers * 2 * self.T + self.T_f


def _layer_count(space: Any) -> int:
    """L of a choice space: NB201 has one layer per edge per cell (3 stages of N cells, each its own weights)."""
    if space.name == "nb201":
        return len(space.op_sets()) * 3 * space.N
    return len(space.op_sets())


def dcnas_config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> DcnasConfig:
    """A validated :class:`DcnasConfig` from a mapping plus ``--set`` overrides (one-line errors)."""
    return validated(DcnasConfig, raw, overrides, {"space": "name"})


def load_dcnas_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> DcnasConfig:
    """Read a YAML DCNAS config (``configs/dcnas*.yaml``) and apply ``--set`` overrides."""
    return dcnas_config_from_dict(read_yaml(path), overrides)


# ================================================================================================ meta networks
class MetaNetworks(nn.Module):
    """One meta network ``M_{C_{l,k}}`` per layer and operator with weights: one linear layer + sigmoid on the
    pooled input-feature difference ``h_i^{l-1} - h_j^{l-1}`` (dcnas.txt Sec. 3.2.2), giving ``lambda`` in (0, 1)."""

    def __init__(self, channels: Sequence[int], ops: Sequence[Sequence[str]]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({_meta_key(layer, op): nn.Linear(c, 1)
                                   for layer, (c, layer_ops) in enumerate(zip(channels, ops))
                                   for op in layer_ops if op not in _NO_WEIGHTS})
        for net in self.nets.values():  # lambda = 0.5 for every pair at the start (paper silent)
            nn.init.zeros_(net.weight)
            nn.init.zeros_(net.bias)

    def has(self, layer: int, op: str) -> bool:
        return _meta_key(layer, op) in self.nets

    def net(self, layer: int, op: str) -> nn.Linear:
        return self.nets[_meta_key(layer, op)]

    def forward(self, layer: int, op: str, diff: torch.Tensor) -> torch.Tensor:
        """``lambda`` for pooled feature differences ``diff`` (``(..., C)`` -> ``(...)``)."""
        return torch.sigmoid(self.net(layer, op)(diff)).squeeze(-1)


def _meta_key(layer: int, op: str) -> str:
    return f"l{layer}_{op}"


def _pooled(x: torch.Tensor) -> torch.Tensor:
    """A layer input averaged over the batch and the spatial positions (one value per channel)."""
    return x.float().mean(dim=(0, 2, 3))


# ================================================================================================ the run
@dataclass
class _State:
    """Where the run is (all of it goes into ``state.pt``)."""

    phase: int = 0  # index into the phase list
    chunk: int = 0  # chunks of the current phase done
    step: int = 0  # optimizer steps done (the learning-rate schedule)
    assign: np.ndarray | None = None  # (N, L) copy ids, -1 = not assigned yet
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Ctx:
    config: DcnasConfig
    dir: Path
    splits: Any
    space: Any
    pool: list[Architecture]
    ops: np.ndarray  # (N, L) operator of every member at every layer
    net: Any
    meta: MetaNetworks
    optimizer: torch.optim.Optimizer
    meta_optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    device: torch.device
    train_batch: int
    steps_per_epoch: int
    total_steps: int
    base_lr: float
    phases: list[tuple[str, int | None, float]]
    state: _State
    features: tuple[torch.Tensor, torch.Tensor]  # the fixed batch of the matching matrix and Eq. 7


def _phases(config: DcnasConfig, layers: int) -> list[tuple[str, int | None, float]]:
    """Algorithm 1 as ``(kind, layer, epochs)``: warm-up, per layer pairs / cluster / train, fine-tune."""
    out: list[tuple[str, int | None, float]] = [("warmup", None, config.T_w)]
    for layer in range(layers):
        out += [("pairs", layer, config.T), ("cluster", layer, 0.0), ("train", layer, config.T)]
    return out + [("finetune", None, config.T_f)]


def run_dcnas(config: DcnasConfig, out: str | os.PathLike[str], *, resume: bool = False) -> dict[str, Any]:
    """Run DCNAS into the folder ``out`` (module docstring); ``resume`` continues the run there (same config except
    progress / device / threads). Returns ``dcnas.json``'s content."""
    run_dir = Path(out).resolve()
    if (run_dir / STATE).exists() and not resume:
        raise InvalidValue("--out", str(run_dir), "a new folder, or --resume to continue the DCNAS run there")
    lock = lock_folder(run_dir)
    try:
        resolved = config.model_dump(mode="json")
        if resume and (run_dir / CONFIG).is_file():
            stored = read_yaml(run_dir / CONFIG)
            for key in sorted((set(resolved) | set(stored)) - RESUME_MUTABLE):
                if resolved.get(key) != stored.get(key):
                    raise InvalidValue(key, resolved.get(key), [stored.get(key)],
                                       where=f"the run in {run_dir} (--resume keeps its config)")
        atomic_write_text(run_dir / CONFIG, dump_config(resolved))
        with torch_threads(config.threads):
            ctx = _setup(config, run_dir)
            bar = tqdm(total=ctx.total_steps, initial=ctx.state.step, unit="step", desc="dcnas",
                       disable=not config.progress, dynamic_ncols=True, leave=False)
            try:
                while ctx.state.phase < len(ctx.phases):
                    _run_phase(ctx, bar)
            finally:
                bar.close()
            _publish(ctx)
            return _search(ctx)
    finally:
        lock.close()


def _setup(config: DcnasConfig, run_dir: Path) -> _Ctx:
    """Data, pool A (Algorithm 1 l. 2), supernet with M copies (l. 1), meta networks, optimizers, or the state
    of a previous attempt."""
    splits = load_data(config.data)
    space = get_space(config.space.name, **config.space.kwargs)
    device = resolve_device(config.device)
    net = build_supernet_for(space, splits.input_shape, splits.num_classes, copies=config.M,
                             generator=torch.Generator().manual_seed(derived_seed(config.seed, 4)))
    net.copy_seed = derived_seed(config.seed, 7)
    pool = _sample_pool(space, config.N, np.random.default_rng(derived_seed(config.seed, 8)))
    labels = [label for _, label in net.layers()]
    ops = np.array([[str(a[label]) for label in labels] for a in pool], dtype=object)
    with torch.no_grad():  # the channels of every layer's input (for the meta networks)
        net.capture = {}
        with net.activate(space.largest(), copies=[0] * len(labels)):
            net.eval()(torch.zeros(1, *splits.input_shape))
        channels = [net.capture[i].shape[1] for i in range(len(labels))]
        net.capture = None
    meta = MetaNetworks(channels, [space.op_sets()[label] for label in labels])
    net.to(device)
    meta.to(device)
    tc = config.train_config()
    steps_per_epoch = max(1, len(splits.train) // tc.batch_size)
    phases = _phases(config, len(labels))
    total = sum(_steps(e, steps_per_epoch) for _, _, e in phases)
    optimizer = torch.optim.SGD(_param_groups(net, tc.weight_decay), lr=tc.effective_lr, momentum=tc.momentum)
    meta_optimizer = torch.optim.Adam(meta.parameters(), lr=config.eta)
    x, y = next(iter(Batches(splits.train, config.feature_images, train=False, transform=splits.transform(),
                             shuffle=True, device=device, seed=derived_seed(config.seed, 3))))
    ctx = _Ctx(config, run_dir, splits, space, pool, ops, net, meta, optimizer, meta_optimizer,
               np.random.default_rng(derived_seed(config.seed, 0)), device, tc.batch_size, steps_per_epoch, total,
               tc.effective_lr, phases, _State(assign=np.full((len(pool), len(labels)), -1, dtype=np.int64)),
               (x, y))
    if config.sharing == "random":  # Table 3 "Random Assign": every member fixed to random copies from the start
        ctx.state.assign = np.random.default_rng(derived_seed(config.seed, 9)).integers(
            0, config.M, size=ctx.state.assign.shape)
    if (run_dir / STATE).is_file():
        _load_state(ctx, load_checkpoint(run_dir / STATE, map_location="cpu"))
    return ctx


def _sample_pool(space: Any, n: int, rng: np.random.Generator) -> list[Architecture]:
    """``n`` distinct architectures drawn uniformly from ``space`` (Algorithm 1 l. 2)."""
    pool: dict[str, Architecture] = {}
    while len(pool) < n:
        arch = space.sample(rng)
        pool.setdefault(arch.key(), arch)
    return list(pool.values())


def _param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on the >= 2-D weights (convolutions, linear layers), none on BN affine parameters and biases."""
    params = [p for p in net.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def _steps(epochs: float, steps_per_epoch: int) -> int:
    return int(round(epochs * steps_per_epoch))


# ------------------------------------------------------------------------------------------------ phases
def _run_phase(ctx: _Ctx, bar: Any) -> None:
    """The next chunk of the current phase (at most one epoch, or one clustering), then ``state.pt``."""
    kind, layer, epochs = ctx.phases[ctx.state.phase]
    if kind == "cluster":
        if ctx.config.sharing == "learned":
            _cluster_layer(ctx, layer)
        ctx.state.phase, ctx.state.chunk = ctx.state.phase + 1, 0
        _save_state(ctx)
        return
    steps = _steps(epochs, ctx.steps_per_epoch)
    start = ctx.state.chunk * ctx.steps_per_epoch
    n = min(ctx.steps_per_epoch, steps - start)
    if n > 0:
        t0, sums = time.perf_counter(), {}
        seed = derived_seed(ctx.config.seed, 1, ctx.state.phase * 100_000 + ctx.state.chunk)
        batches = Batches(ctx.splits.train, ctx.train_batch, train=True, transform=ctx.splits.transform(),
                          device=ctx.device, seed=seed, drop_last=True)
        for t, (x, y) in zip(range(start, start + n), batches):
            pair = kind == "pairs" and ctx.config.sharing == "learned"
            losses = _pair_step(ctx, layer, t + 1, x, y) if pair else _train_step(ctx, layer, x, y)
            for k, v in losses.items():
                sums.setdefault(k, []).append(v)
            bar.update(1)
        ctx.state.log.append({"phase": kind, "layer": layer, "chunk": ctx.state.chunk, "step": ctx.state.step,
                              "lr": ctx.optimizer.param_groups[0]["lr"],
                              **{k: round(float(np.mean(v)), 5) for k, v in sums.items()},
                              "seconds": round(time.perf_counter() - t0, 3)})
        ctx.state.chunk += 1
    if n <= 0 or start + n >= steps:
        ctx.state.phase, ctx.state.chunk = ctx.state.phase + 1, 0
    _save_state(ctx)


def _copies(ctx: _Ctx, member: int) -> list[int]:
    """Copies of member ``member``: assigned where assigned, a fresh random copy elsewhere (Eq. 8 text)."""
    assign = ctx.state.assign[member]
    drawn = ctx.rng.integers(0, ctx.config.M, size=len(assign))
    return [int(a) if a >= 0 else int(d) for a, d in zip(assign, drawn)]


def _set_lr(ctx: _Ctx) -> float:
    """Linear decay to 0 over every training step of the run."""
    lr = ctx.base_lr * max(0.0, 1.0 - ctx.state.step / max(ctx.total_steps, 1))
    for group in ctx.optimizer.param_groups:
        group["lr"] = lr
    return lr


def _train_step(ctx: _Ctx, layer: int | None, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``Train(N, D, .)``: one member of ``A`` (uniform) on its copies, cross-entropy, one SGD step."""
    member = int(ctx.rng.integers(len(ctx.pool)))
    _set_lr(ctx)
    ctx.net.train()
    ctx.optimizer.zero_grad(set_to_none=True)
    with ctx.net.activate(ctx.pool[member], copies=_copies(ctx, member)):
        loss = F.cross_entropy(ctx.net(x), y)
    loss.backward()
    ctx.optimizer.step()
    ctx.state.step += 1
    return {"loss": float(loss.detach())}


def _forward(ctx: _Ctx, member: int, copies: Sequence[int], x: torch.Tensor, y: torch.Tensor,
             params: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Loss of member ``member`` on its ``copies`` and the inputs of its layers; ``params``: functional weights."""
    ctx.net.capture = {}
    try:
        with ctx.net.activate(ctx.pool[member], copies=copies):
            logits = ctx.net(x) if params is None else torch.func.functional_call(ctx.net, dict(params), (x,))
        return F.cross_entropy(logits, y), ctx.net.capture
    finally:
        ctx.net.capture = None


def _pair_step(ctx: _Ctx, layer: int, t: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Algorithm 1 l. 6-11: a pair sharing an operator of ``layer``, the Eq. 8 update and every ``tau`` steps the
    Eq. 12 meta step through the Eq. 9 look-ahead."""
    pick = _pick_pair(ctx, layer)
    if pick is None:  # no operator of this layer is shared by two members: a plain step
        return _train_step(ctx, layer, x, y)
    k, i, j = pick
    lr = _set_lr(ctx)
    ctx.net.train()
    ci, cj = _copies(ctx, i), _copies(ctx, j)
    named = dict(ctx.net.named_parameters())
    loss_i, h_i = _forward(ctx, i, ci, x, y)
    g_i = dict(zip(named, torch.autograd.grad(loss_i, list(named.values()), allow_unused=True)))
    loss_j, h_j = _forward(ctx, j, cj, x, y)
    g_j = dict(zip(named, torch.autograd.grad(loss_j, list(named.values()), allow_unused=True)))
    # Eq. 10-11: lambda^f on every layer f where alpha_i and alpha_j use the same operator (with weights)
    shared = [(f, op) for f, op in enumerate(ctx.ops[i]) if op == ctx.ops[j][f] and ctx.meta.has(f, op)]
    lambdas = {f: ctx.meta(f, op, _pooled(h_i[f].detach()) - _pooled(h_j[f].detach())) for f, op in shared}
    names = _layer_names(ctx)
    meta_loss = None
    if t % ctx.config.tau == 0:  # Eq. 9 look-ahead, Eq. 12 meta step on M_{C_{l,k}}
        lookahead = {}
        for name, p in named.items():
            if g_i.get(name) is not None:
                lookahead[name] = p.detach() - lr * g_i[name]
        for f, op in shared:
            lam = lambdas[f] if f == layer else lambdas[f].detach()
            for mine, theirs in zip(names[(f, op, ci[f])], names[(f, op, cj[f])]):
                if g_j.get(theirs) is not None:
                    lookahead[mine] = lookahead.get(mine, named[mine].detach()) - lr * lam * g_j[theirs]
        meta_loss, _ = _forward(ctx, i, ci, x, y, params=lookahead)
        if meta_loss.requires_grad:  # else layer l does not reach alpha_i's output (an NB201 cell's dead edge)
            target = ctx.meta.net(layer, k)
            grads = torch.autograd.grad(meta_loss, list(target.parameters()), allow_unused=True)
            ctx.meta_optimizer.zero_grad(set_to_none=True)
            for p, g in zip(target.parameters(), grads):
                p.grad = g
            ctx.meta_optimizer.step()
    # Eq. 8: W_i <- W_i - gamma (grad_i + lambda grad_j) on the shared layers (SGD momentum / decay on top)
    for name, p in named.items():
        p.grad = None if g_i.get(name) is None else g_i[name].clone()
    for f, op in shared:
        lam = float(lambdas[f].detach())
        for mine, theirs in zip(names[(f, op, ci[f])], names[(f, op, cj[f])]):
            if g_j.get(theirs) is not None:
                base = named[mine].grad
                named[mine].grad = lam * g_j[theirs] if base is None else base + lam * g_j[theirs]
    ctx.optimizer.step()
    ctx.state.step += 1
    out = {"loss": float(loss_i.detach()), "loss_j": float(loss_j.detach()),
           "lambda": float(np.mean([float(v.detach()) for v in lambdas.values()])) if lambdas else float("nan")}
    if meta_loss is not None:
        out["lookahead_loss"] = float(meta_loss.detach())
    return out


def _pick_pair(ctx: _Ctx, layer: int) -> tuple[str, int, int] | None:
    """Algorithm 1 l. 6-7: a random operator ``k`` of ``layer`` (with weights, used by >= 2 members) and two
    distinct members of ``A`` using it."""
    ops = [op for op in dict.fromkeys(ctx.ops[:, layer]) if ctx.meta.has(layer, op)
           and int((ctx.ops[:, layer] == op).sum()) >= 2]
    if not ops:
        return None
    k = ops[int(ctx.rng.integers(len(ops)))]
    members = np.flatnonzero(ctx.ops[:, layer] == k)
    i, j = ctx.rng.choice(members, size=2, replace=False)
    return k, int(i), int(j)


def _layer_names(ctx: _Ctx) -> dict[tuple[int, str, int], list[str]]:
    """``(layer, op, copy)`` -> the parameter names of that copy (in the same order for every copy)."""
    cache = getattr(ctx, "_names", None)
    if cache is None:
        ids = {id(p): name for name, p in ctx.net.named_parameters()}
        cache = {}
        for f in range(len(ctx.net.layers())):
            for op in ctx.space.op_sets()[ctx.net.layers()[f][1]]:
                for c in range(ctx.config.M):
                    module = ctx.net.layer_module(f, op, c)
                    cache[(f, op, c)] = [] if module is None else [ids[id(p)] for p in module.parameters()]
        ctx._names = cache  # type: ignore[attr-defined]
    return cache


# ------------------------------------------------------------------------------------------------ clustering
@torch.no_grad()
def _member_inputs(ctx: _Ctx, members: Sequence[int], layer: int) -> torch.Tensor:
    """Pooled inputs ``h^{l-1}`` of ``layer`` for ``members`` on the fixed batch (BN on batch statistics, its
    running statistics left alone)."""
    x, y = ctx.features
    rows = []
    with frozen_bn_stats(ctx.net):
        ctx.net.train()
        for m in members:
            _, h = _forward(ctx, int(m), _copies(ctx, int(m)), x, y)
            rows.append(_pooled(h[layer]))
    return torch.stack(rows)


def _cluster_layer(ctx: _Ctx, layer: int) -> None:
    """Algorithm 1 l. 13-21 for ``layer``: matching matrix per operator, K-means into M clusters, Eq. 7 copies."""
    c, t0 = ctx.config, time.perf_counter()
    record: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    krng = np.random.default_rng(derived_seed(c.seed, 10, layer))
    for op in dict.fromkeys(ctx.ops[:, layer]):
        members = np.flatnonzero(ctx.ops[:, layer] == op)
        if not ctx.meta.has(layer, op) or c.M == 1:
            ctx.state.assign[members, layer] = 0  # copies of an operator without weights are all the same
            continue
        h = _member_inputs(ctx, members, layer)
        anchors = np.arange(len(members)) if c.matching_anchors is None or c.matching_anchors >= len(members) \
            else np.sort(krng.choice(len(members), size=c.matching_anchors, replace=False))
        with torch.no_grad():
            matrix = ctx.meta(layer, op, h[:, None, :] - h[None, anchors, :]).cpu().numpy()
        # M clusters, fewer when fewer distinct rows (layer 1: every member has the same input, lambda is constant)
        clusters = min(c.M, len(np.unique(matrix, axis=0)))
        labels = KMeans(n_clusters=clusters, n_init=10, random_state=int(krng.integers(2**31))).fit_predict(matrix) \
            if clusters > 1 else np.zeros(len(members), dtype=np.int64)
        scores, copy_of = _eq7(ctx, layer, members, labels, krng)
        ctx.state.assign[members, layer] = copy_of[labels]
        arrays.update({f"{op}_members": members, f"{op}_anchors": members[anchors], f"{op}_matrix": matrix,
                       f"{op}_cluster": labels, f"{op}_copy_of_cluster": copy_of})
        record[op] = {"members": int(len(members)), "cluster_sizes": np.bincount(labels, minlength=c.M).tolist(),
                      "copy_of_cluster": copy_of.tolist(), "eq7_loss": np.round(scores, 5).tolist(),
                      "lambda_mean": float(matrix.mean()), "lambda_std": float(matrix.std())}
    (ctx.dir / "matching").mkdir(exist_ok=True)
    if arrays:
        with open(ctx.dir / "matching" / f"layer{layer:02d}.npz", "wb") as fh:
            np.savez_compressed(fh, **arrays)
    clusters = json.loads((ctx.dir / "clusters.json").read_text()) if (ctx.dir / "clusters.json").is_file() else {}
    clusters[ctx.net.layers()[layer][0]] = record
    write_json(ctx.dir / "clusters.json", clusters)
    ctx.state.log.append({"phase": "cluster", "layer": layer, "ops": len(record),
                          "seconds": round(time.perf_counter() - t0, 3)})


@torch.no_grad()
def _eq7(ctx: _Ctx, layer: int, members: np.ndarray, labels: np.ndarray,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 7 on representatives: ``loss[c, m]`` = mean cross-entropy of cluster ``c``'s representatives with copy
    ``m`` at ``layer``; clusters take distinct copies of least total loss (most likely). Returns (loss, copy of
    each cluster)."""
    M, x, y = ctx.config.M, *ctx.features
    loss = np.zeros((M, M))
    with frozen_bn_stats(ctx.net):
        ctx.net.train()
        for cluster in range(M):
            inside = members[labels == cluster]
            if len(inside) == 0:
                continue
            reps = rng.choice(inside, size=min(ctx.config.representatives, len(inside)), replace=False)
            for r in reps:
                copies = _copies(ctx, int(r))
                for m in range(M):
                    copies[layer] = m
                    loss[cluster, m] += float(_forward(ctx, int(r), copies, x, y)[0]) / len(reps)
    rows, cols = linear_sum_assignment(loss)
    copy_of = np.zeros(M, dtype=np.int64)
    copy_of[rows] = cols
    return loss, copy_of


# ------------------------------------------------------------------------------------------------ state
def _save_state(ctx: _Ctx) -> None:
    s = ctx.state
    save_checkpoint(ctx.dir / STATE, {
        "format": "nasforge.dcnas/1", "model": ctx.net.state_dict(), "meta": ctx.meta.state_dict(),
        "optimizer": ctx.optimizer.state_dict(), "meta_optimizer": ctx.meta_optimizer.state_dict(),
        "phase": s.phase, "chunk": s.chunk, "step": s.step, "assign": torch.from_numpy(s.assign.copy()),
        "rng": json.dumps(ctx.rng.bit_generator.state), "log": json.dumps(s.log)})
    atomic_write_text(ctx.dir / LOG, "".join(json.dumps(r, sort_keys=True) + "\n" for r in s.log))


def _load_state(ctx: _Ctx, ckpt: Mapping[str, Any]) -> None:
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != "nasforge.dcnas/1":
        raise InvalidValue(STATE, type(ckpt).__name__, "a DCNAS state written by this version")
    ctx.net.load_state_dict(ckpt["model"])
    ctx.meta.load_state_dict(ckpt["meta"])
    ctx.optimizer.load_state_dict(ckpt["optimizer"])
    ctx.meta_optimizer.load_state_dict(ckpt["meta_optimizer"])
    ctx.state = _State(phase=int(ckpt["phase"]), chunk=int(ckpt["chunk"]), step=int(ckpt["step"]),
                       assign=ckpt["assign"].numpy().copy(), log=json.loads(ckpt["log"]))
    ctx.rng.bit_generator.state = json.loads(ckpt["rng"])


# ------------------------------------------------------------------------------------------------ outputs
def _publish(ctx: _Ctx) -> None:
    """The trained supernet as a supernet run folder, with the pool and every member's copies."""
    c = ctx.config
    ctx.net.assignments = {a.key(): tuple(int(v) for v in row) for a, row in zip(ctx.pool, ctx.state.assign)}
    write_json(ctx.dir / ASSIGNMENTS, {
        "layers": [name for name, _ in ctx.net.layers()], "M": c.M, "sharing": c.sharing,
        "pool": [ctx.space.format(a) for a in ctx.pool],
        "assignments": {k: list(v) for k, v in ctx.net.assignments.items()}})
    sha = save_checkpoint(ctx.dir / CHECKPOINT, {"model": ctx.net.state_dict()})
    write_run_info(ctx.dir, run_info(ctx.space, c.space.kwargs, ctx.net, c.data, method="dcnas", seed=c.seed,
                                     calib_batches=math.ceil(c.calib_images / c.eval_batch_size),
                                     eval_batch_size=c.eval_batch_size))
    write_json(ctx.dir / RESULT, {"checkpoint": CHECKPOINT, "checkpoint_sha256": sha, "steps": ctx.state.step,
                                  "epochs": c.total_epochs(len(ctx.net.layers()))})


def _search(ctx: _Ctx) -> dict[str, Any]:
    """SPOS evolution inside ``A`` with the one-shot evaluator (Sec. 4.1 "Search"), and the Kendall tau."""
    c = ctx.config
    summary: dict[str, Any] = {"method": "dcnas", "N": c.N, "M": c.M, "L": len(ctx.net.layers()),
                               "sharing": c.sharing, "steps": ctx.state.step,
                               "epochs": c.total_epochs(len(ctx.net.layers())),
                               "train_seconds": round(sum(r.get("seconds", 0.0) for r in ctx.state.log), 2)}
    need = c.search or c.kendall_n
    if need:
        evaluator = OneShotEvaluator(open_supernet(ctx.dir, str(ctx.device)), calib_images=c.calib_images,
                                     score_images=c.score_images, batch_size=c.eval_batch_size,
                                     split=c.score_split, seed=c.seed, device=str(ctx.device))
    if c.kendall_n:
        rank = rank_consistency(evaluator, n=c.kendall_n, seed=c.seed, out_dir=ctx.dir, pool=ctx.pool)
        summary["rank"] = {k: rank[k] for k in ("n", "kendall_tau", "spearman_rho", "params_tau", "truth_metric")}
    if c.search:
        t0 = time.perf_counter()
        strategy = get_strategy("spos-evolution", ctx.space, seed=derived_seed(c.seed, 11), pool=ctx.pool,
                                population_size=c.population_size, max_iterations=c.max_iterations,
                                top_k=c.top_k, mutation_num=c.population_size // 2,
                                crossover_num=c.population_size // 2)
        rows, known = [], {}
        for n in range(strategy.budget):
            cand = strategy.ask(1)[0]
            result = known.get(cand.arch.key()) or evaluator.evaluate(cand.arch)
            known[cand.arch.key()] = result
            strategy.tell(Trial(id=n, arch=cand.arch, state=TrialState.COMPLETE, result=result,
                                parents=cand.parents, generation=cand.generation))
            rows.append({"id": n, "generation": cand.generation, "arch": ctx.space.format(cand.arch),
                         "accuracy": result.metrics["accuracy"], **result.costs})
        best = strategy.best()
        write_json(ctx.dir / "search.json", {"evaluations": rows})
        summary["search_seconds"] = round(time.perf_counter() - t0, 2)
        summary["best"] = {"arch": ctx.space.format(best.arch), "accuracy": best.result.metrics["accuracy"],
                           **best.result.costs}
    write_json(ctx.dir / SUMMARY, summary)
    return summary


# ================================================================================================ eval, export
def _run_member(run_dir: str | os.PathLike[str], arch: Any, device: str) -> tuple[DcnasConfig, Any, Architecture]:
    """The finished run in ``run_dir`` (its supernet with the assignments) and ``arch``: ``best`` (the search's
    result in dcnas.json) or an architecture string of the run's space."""
    folder = Path(run_dir)
    if not (folder / RESULT).is_file() or not (folder / CONFIG).is_file():
        raise InvalidValue("RUN_DIR", str(run_dir), "a finished DCNAS run folder (result.json; --resume it)")
    config = load_dcnas_config(folder / CONFIG)
    run = open_supernet(folder, device)
    if arch == "best":
        best = (json.loads((folder / SUMMARY).read_text()).get("best") or {}) if (folder / SUMMARY).is_file() else {}
        if not best:
            raise InvalidValue("--arch", arch, "an architecture string (this run has no search result)")
        arch = best["arch"]
    if not isinstance(arch, str):
        raise InvalidValue("--arch", arch, "best or an architecture string")
    return config, run, run.space.parse(arch)


def evaluate_dcnas(run_dir: str | os.PathLike[str], arch: str, *, calib_batches: int | None = None,
                   device: str | None = "cpu", split: str | None = None) -> dict[str, Any]:
    """``nasforge supernet eval``: one-shot accuracy of ``arch`` on its assigned copies (BN recalibrated on
    ``calib_batches`` x ``eval_batch_size`` training images, default the config's ``calib_images``)."""
    config, run, child = _run_member(run_dir, arch, device or "cpu")
    calib = config.calib_images if calib_batches is None else calib_batches * config.eval_batch_size
    evaluator = OneShotEvaluator(run, calib_images=calib, score_images=config.score_images,
                                 batch_size=config.eval_batch_size, split=split, seed=config.seed,
                                 device=device or "cpu")
    r = evaluator.evaluate(child)
    return {"arch": run.space.format(child), "in_pool": child.key() in run.net.assignments,
            "copies": "".join(map(str, run.net.copies_of(child))), "split": evaluator.split,
            "accuracy": r.metrics["accuracy"], **r.costs}


def export_dcnas(run_dir: str | os.PathLike[str], arch: str, out_dir: str | os.PathLike[str], *,
                 onnx: bool | None = None, device: str = "cpu") -> dict[str, Any]:
    """``nasforge export RUN_DIR --arch best|ARCH``: the standalone network of ``arch`` with its assigned copies
    (plain PyTorch + ONNX), BN calibrated on ``calib_images`` training images."""
    config, run, child = _run_member(run_dir, arch, device)
    calib = fixed_batches(run.splits, "train", config.calib_images, config.eval_batch_size, resolve_device(device),
                          seed=config.seed, train=True)
    res = export_member(run.net, child, out_dir, space=run.space, calib_batches=calib, calib_steps=len(calib),
                        onnx=onnx, device=device, meta={"run_dir": str(Path(run_dir).resolve()),
                                                        "copies": list(run.net.copies_of(child))},
                        space_kwargs=config.space.kwargs)
    return {"arch": run.space.format(child), "files": ", ".join(sorted(Path(p).name for p in res.files.values())),
            "onnx max abs diff": res.onnx_max_abs_diff}


def dcnas_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The row ``nasforge supernet train`` prints."""
    best = result.get("best") or {}
    return {"N": result["N"], "M": result["M"], "L": result["L"], "sharing": result["sharing"],
            "steps": result["steps"], "kendall_tau": (result.get("rank") or {}).get("kendall_tau"),
            "best_accuracy": best.get("accuracy"), "best_arch": best.get("arch")}


register_method(Method(name="dcnas", kind="supernet",
                       paper="Pan et al., Distribution Consistent Neural Architecture Search (DCNAS)",
                       config_model=DcnasConfig, load_config=load_dcnas_config, run=run_dcnas,
                       summary=dcnas_summary, evaluate=evaluate_dcnas, export=export_dcnas))
