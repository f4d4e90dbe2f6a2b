"""PAD-NAS: Progressive Automatic Design of search space for one-shot NAS (Xia et al., padnas.txt), Algorithm 1 as
one pipeline over the shared parts: :class:`PadnasConfig` (``configs/padnas*.yaml``) -> :func:`run_padnas`.

M stages (``M``, paper 4; Sec. 3.2, Fig. 2):

* **stage 1** trains the choice-block supernet over the initial op sets (SPOS: one uniform child per step;
  ``epochs[0]`` = 120 at ``lr[0]`` = 0.5 per 1024 images; recipe ``padnas``: momentum SGD 0.9, weight decay 4e-5,
  linear decay; Sec. 4.1);
* **stages 2..M-1**: CES on the previous stage's supernet; the probability ``p`` of every op at every layer over
  the evaluated architectures of non-domination rank < ``rank_limit`` (10; front = rank 1); ops with ``p <= P_th``
  (1 %) are removed (:mod:`nasforge.supernet.opsets`); the pruned supernet keeps the weights of the ops that stay
  and is fine-tuned (``epochs`` / ``lr``: 80 at 0.1, then 40 at 0.1);
* **stage M**: CES on the last supernet: its Pareto front is ``final_front``, its most accurate member ``best``
  ("the architectures with highest accuracy", Algorithm 1 l. 11).

**CES** is the ``nsga2`` strategy: ``population_size`` 64, ``max_iterations`` 40, binary tournaments, two-point
crossover, polynomial mutation; children outside ``Lat_min <= latency <= Lat_max`` (Eq. 2, ms) are discarded
and regenerated. Accuracy is one-shot (:class:`~nasforge.eval.oneshot.OneShotEvaluator`: BN re-calibrated on
``calib_images`` training images, scored on ``score_images`` of ``score_split``); latency from ``latency_lut``
(``build``: every op timed once on this machine's CPU with one thread, as the paper times one phone core, kept in
``lut.json``; ``help:DEVICE``: HELP's measured NB201 latencies; or a ``lut.json``). ``kendall_n`` (nb201 only):
Kendall tau of each trained supernet against the NB201 table (Table 8).

Run folder: ``config.yaml``; ``padnas.sqlite`` (each CES evaluation is a trial tagged with its stage; meta: each
stage's record, the strategy state after every evaluation, timings); ``stageK/supernet.pt`` + ``train_log.jsonl``;
``heatmap_stageK.png`` (Fig. 3, pruned cells marked x) and ``front_stageK.png`` per CES; ``padnas.json``
(``{"stages": [{"stage", "op_sets", "frequencies", "pruned", "front", "kendall_tau", "timings", ...}],
"final_front", "best"}``); at the end ``supernet.pt`` / ``supernet.json`` / ``result.json`` of the last supernet:
``nasforge export RUN_DIR --arch F0`` exports a member (``final_front`` name or architecture). ``--resume``
continues a killed run: finished stages are read back, a CES continues after its last stored evaluation (exact
strategy state), training from the stage checkpoint (exact, mid-epoch).

Where the paper is silent (chosen here): the rate decays linearly to 0 within each stage and restarts at the next
stage's ``lr``; an architecture evaluated twice counts once in the frequencies and is not scored again; a layer
whose ops all fall to ``P_th`` or below keeps its most frequent one(s); CES probabilities are Deb et al.'s
(crossover 0.9, mutation 1/n, eta 20); BN re-calibration and scoring image counts are config values; each stage's
training and CES get seeds derived from ``seed``. One process only (no torchrun).
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Optional, Sequence

import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from ..arch import Architecture
from ..config import SpaceConfig
from ..cost import CostFunction
from ..data import DataConfig, load_data
from ..device import resolve_device, torch_threads
from ..errors import InvalidValue
from ..eval.oneshot import OneShotEvaluator, fixed_batches
from ..eval.rank import rank_consistency
from ..io import atomic_write_text, load_checkpoint, lock_folder, save_checkpoint, write_json
from ..registry import SPACES, get_space
from ..report import plot_cost_tradeoff, plot_op_heatmap
from ..schema import RunName, dump_config, read_yaml, validated
from ..store import SQLiteStore
from ..strategies import Constraint, get_strategy
from ..supernet.distributed import DistContext, env_ranks
from ..supernet.lut import HELP_DEVICES, build_lut, load_lut
from ..supernet.opsets import prune_op_sets, ranked_op_frequencies
from ..supernet.run import CHECKPOINT, RESULT, SupernetRun, build_supernet_for, open_supernet, run_info, write_run_info
from ..supernet.select import export_member
from ..supernet.train import StepRecipe, SupernetTrainer, derived_seed
from ..train import TrainConfig
from ..trial import Candidate, Trial, TrialState
from .base import Method, RunConfig, register_method

__all__ = ["PadnasConfig", "load_padnas_config", "padnas_config_from_dict", "run_padnas", "export_padnas",
           "padnas_summary", "STORE", "SUMMARY"]

STORE, SUMMARY, CONFIG = "padnas.sqlite", "padnas.json", "config.yaml"
#: config fields a resumed run may change
RESUME_MUTABLE = frozenset({"progress", "device", "threads", "out"})
Hook = Callable[[str, Mapping[str, Any]], None]


class PadnasConfig(RunConfig):
    """One PAD-NAS run: the paper's names and defaults (module docstring; ImageNet on ``proxyless-basic``).

    ``epochs`` / ``lr``: one entry per training stage (M - 1), ``lr`` at the recipe's reference batch (1024,
    scaled linearly to ``train.batch_size``); ``recipe`` / ``train``: the training recipe and overrides of it;
    ``lut_fidelity``: random architectures timed end to end to check a built table; ``dropout``: head dropout
    while training; ``checkpoint_every``: steps between training checkpoints (also at every epoch end).
    """

    name: RunName = "padnas"
    method: Literal["padnas"] = "padnas"
    space: SpaceConfig = Field(default_factory=lambda: SpaceConfig(name="proxyless-basic"))
    data: dict[str, Any] = Field(default_factory=lambda: {"source": "embedded"})
    recipe: str = "padnas"
    train: dict[str, Any] = Field(default_factory=dict)
    M: int = Field(4, ge=2)
    epochs: list[float] = Field(default_factory=lambda: [120.0, 80.0, 40.0])
    lr: list[float] = Field(default_factory=lambda: [0.5, 0.1, 0.1])
    P_th: float = Field(0.01, ge=0, lt=1)
    rank_limit: int = Field(10, ge=2)
    population_size: int = Field(64, ge=2)
    max_iterations: int = Field(40, ge=1)
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_prob: Optional[float] = Field(None, ge=0, le=1)
    eta_m: float = Field(20.0, ge=0)
    Lat_min: Optional[float] = Field(None, ge=0)
    Lat_max: Optional[float] = Field(None, gt=0)
    latency_lut: str = "build"
    lut_fidelity: int = Field(30, ge=0)
    calib_images: int = Field(1000, ge=1)
    score_images: int = Field(1000, ge=1)
    eval_batch_size: int = Field(250, ge=1)
    score_split: Literal["val", "test"] = "val"
    kendall_n: int = Field(0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    checkpoint_every: Optional[int] = Field(1000, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    threads: Optional[int] = Field(None, ge=1)
    progress: bool = True
    out: Optional[str] = None

    @model_validator(mode="after")
    def _cross(self) -> "PadnasConfig":
        name = self.space.name
        if SPACES.factory(name).supernet != "choice":
            raise InvalidValue("space", name, "a choice space (nb201, proxyless-basic, proxyless-large): PAD-NAS "
                                              "prunes the operations of a choice-block supernet")
        self.built_space()
        for field in ("epochs", "lr"):
            v = getattr(self, field)
            if len(v) != self.M - 1 or min(v, default=1.0) <= 0:
                raise InvalidValue(field, v, f"{self.M - 1} positive numbers, one per training stage (M - 1, M = "
                                             f"{self.M})")
        if self.Lat_min is not None and self.Lat_max is not None and self.Lat_min > self.Lat_max:
            raise InvalidValue("Lat_min", self.Lat_min, f"at most Lat_max ({self.Lat_max})")
        if "lr" in self.train:
            raise InvalidValue("train.lr", self.train["lr"], "unset (the list 'lr' gives each stage's rate)")
        self.train_config(0)  # recipe name and train overrides, with a one-line error
        lut = self.latency_lut
        if lut.startswith("help:") and (name != "nb201" or lut[5:] not in HELP_DEVICES()):
            raise InvalidValue("latency_lut", lut, "build or a lut.json (help:DEVICE: NB201 only, DEVICE one of "
                                                   f"{', '.join(HELP_DEVICES())})")
        if not lut.startswith("help:") and lut != "build" and not Path(lut).is_file():
            raise InvalidValue("latency_lut", lut, "build, help:DEVICE or an existing lut.json")
        if self.kendall_n and (name != "nb201" or self.kendall_n < 3):
            raise InvalidValue("kendall_n", self.kendall_n, "0, or >= 3 for space nb201 (the packaged table)")
        if self.score_split == "val":
            DataConfig.from_dict(self.data).require_split("val", "CES scores on it; or set score_split: test")
        return self

    def train_config(self, index: int) -> TrainConfig:
        """The training recipe of training stage ``index + 1`` (its ``lr`` on top of ``recipe`` and ``train``)."""
        return TrainConfig.from_recipe(self.recipe, **{**self.train, "lr": self.lr[index]})


def padnas_config_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> PadnasConfig:
    """A validated :class:`PadnasConfig` from a mapping plus ``--set`` overrides (one-line errors)."""
    return validated(PadnasConfig, raw, overrides, {"space": "name"})


def load_padnas_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> PadnasConfig:
    """Read a YAML PAD-NAS config (``configs/padnas*.yaml``) and apply ``--set`` overrides."""
    return padnas_config_from_dict(read_yaml(path), overrides)


# ================================================================================================ the run
@dataclass
class _Ctx:
    """What every step of a run shares."""

    config: PadnasConfig
    dir: Path
    store: SQLiteStore
    splits: Any
    space: Any  # the initial space
    lut: Any
    device: torch.device
    hook: Hook

    @contextmanager
    def timed(self, stage: int, phase: str) -> Iterator[None]:
        """Add the block's wall time to ``timings/<stage>[phase]`` in the store (interrupted attempts included)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            timings = self.store.get_meta(f"timings/{stage}", {})
            timings[phase] = round(timings.get(phase, 0.0) + time.perf_counter() - start, 3)
            self.store.set_meta(f"timings/{stage}", timings)


def run_padnas(config: PadnasConfig, out: str | os.PathLike[str], *, resume: bool = False,
               hook: Hook | None = None) -> dict[str, Any]:
    """Run PAD-NAS into the folder ``out`` (module docstring); ``resume`` continues the run there (same config
    except progress / device / threads). ``hook(event, info)`` is called after each CES evaluation
    (``"ces_trial"``), training stage (``"trained"``) and stage (``"stage"``); an exception it raises stops the run
    as a crash would. Returns ``padnas.json``'s content."""
    if (env_ranks() or (0, 1))[1] > 1:
        raise InvalidValue("torchrun", "WORLD_SIZE > 1", "one process (PAD-NAS runs its stages in one process)")
    run_dir = Path(out).resolve()
    if (run_dir / STORE).exists() and not resume:
        raise InvalidValue("--out", str(run_dir), "a new folder, or --resume to continue the PAD-NAS run there")
    lock = lock_folder(run_dir)
    try:
        splits = load_data(config.data)  # bad data fails before anything is written
        space = get_space(config.space.name, **config.space.kwargs)
        with SQLiteStore(run_dir / STORE) as store, torch_threads(config.threads):
            resolved = config.model_dump(mode="json")
            stored = store.get_meta("config") or resolved
            for key in sorted((set(resolved) | set(stored)) - RESUME_MUTABLE):
                if resolved.get(key) != stored.get(key):
                    raise InvalidValue(key, resolved.get(key), [stored.get(key)],
                                       where=f"the run in {run_dir} (--resume keeps its config)")
            store.set_meta("config", resolved)
            atomic_write_text(run_dir / CONFIG, dump_config(resolved))
            store.requeue_interrupted()  # a CES evaluation cut short: the restored strategy asks it again
            ctx = _Ctx(config, run_dir, store, splits, space, _latency_table(config, run_dir, space, splits),
                       resolve_device(config.device), hook or (lambda event, info: None))
            records: list[dict[str, Any]] = []
            for k in range(1, config.M + 1):
                record = store.get_meta(f"stage/{k}")
                if record is None:
                    record = {**_stage(ctx, k, records[-1] if records else None),
                              "timings": store.get_meta(f"timings/{k}", {})}
                    store.set_meta(f"stage/{k}", record)
                records.append(record)
                summary = _write_outputs(ctx, records)
                ctx.hook("stage", {"stage": k})
            _publish(ctx, records[-2])
            return summary
    finally:
        lock.close()


def _stage(ctx: _Ctx, k: int, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Stage ``k`` of Algorithm 1: CES on the previous supernet (k > 1), pruning (1 < k < M), training (k < M)."""
    c = ctx.config
    record: dict[str, Any] = {"stage": k, "frequencies": None, "front": None, "pruned": {}, "kendall_tau": None}
    op_sets = ctx.space.op_sets() if prev is None else prev["op_sets"]
    if prev is not None:
        run = _supernet(ctx, prev)
        with ctx.timed(k, "ces_s"):
            strategy = _ces(ctx, k, run)
        trials = [t for t in ctx.store.trials(TrialState.COMPLETE) if t.info.get("stage") == k]
        freqs, counted = ranked_op_frequencies(op_sets, trials, strategy.ranks(), c.rank_limit)
        record.update(frequencies=freqs, counted=counted, evaluated=len({t.arch.key() for t in trials}),
                      front=_front(run.space, strategy.pareto_front()), duplicates=strategy.duplicates)
        if k < c.M:  # Algorithm 1 l. 7: prune; the last stage only searches
            op_sets, record["pruned"] = prune_op_sets(op_sets, freqs, c.P_th)
    record["op_sets"] = {label: list(ops) for label, ops in op_sets.items()}
    record["size"] = math.prod(len(ops) for ops in op_sets.values())
    if k < c.M:
        with ctx.timed(k, "train_s"):
            record["training"] = _train(ctx, k, prev, op_sets)
        ctx.hook("trained", {"stage": k})
        if c.kendall_n:
            with ctx.timed(k, "kendall_s"):
                record["kendall"] = _kendall(ctx, _supernet(ctx, record))
            record["kendall_tau"] = record["kendall"]["kendall_tau"]
    return record


# ================================================================================================ steps
def _latency_table(c: PadnasConfig, run_dir: Path, space: Any, splits: Any) -> Any:
    """The latency predictor of CES: a table built here once (``lut.json``; every op timed on this machine's CPU
    with one thread, as the paper times one phone core), HELP's NB201 table, or a given ``lut.json``."""
    if c.latency_lut == "build":
        path = run_dir / "lut.json"
        if path.is_file():
            return load_lut(path).check(space, splits.input_shape)
        return build_lut(space, splits.input_shape, splits.num_classes, threads=1, device="cpu",
                         fidelity=c.lut_fidelity, seed=c.seed, out=path, progress=c.progress)
    lut = load_lut(c.latency_lut)
    return lut.check(space, splits.input_shape) if callable(getattr(lut, "check", None)) else lut


def _supernet(ctx: _Ctx, record: Mapping[str, Any]) -> SupernetRun:
    """The trained supernet of a stage record (checkpoint verified against its SHA-256), as a :class:`SupernetRun`
    the one-shot evaluator reads."""
    c, training = ctx.config, record["training"]
    net = build_supernet_for(ctx.space.restrict(record["op_sets"]), ctx.splits.input_shape, ctx.splits.num_classes,
                             generator=torch.Generator().manual_seed(0))
    ckpt = load_checkpoint(ctx.dir / training["checkpoint"], sha256=training["checkpoint_sha256"])
    net.load_state_dict(ckpt["model"])
    info = run_info(net.space, c.space.kwargs, net, c.data, method="padnas", seed=c.seed,
                    calib_batches=math.ceil(c.calib_images / c.eval_batch_size), eval_batch_size=c.eval_batch_size)
    return SupernetRun(ctx.dir / f"stage{record['stage']}", info, net.space, net.to(ctx.device), ctx.splits,
                       training["checkpoint_sha256"])


def _evaluator(ctx: _Ctx, run: SupernetRun) -> OneShotEvaluator:
    c = ctx.config
    return OneShotEvaluator(run, calib_images=c.calib_images, score_images=c.score_images,
                            batch_size=c.eval_batch_size, split=c.score_split, seed=c.seed, device=str(ctx.device))


def _train(ctx: _Ctx, k: int, prev: dict[str, Any] | None, op_sets: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Train stage ``k``'s supernet: from scratch (k = 1) or the previous one pruned to ``op_sets`` (inherited
    weights); continues from ``stageK/supernet.pt`` when a crash left one."""
    c = ctx.config
    folder = ctx.dir / f"stage{k}"
    folder.mkdir(exist_ok=True)
    if prev is None:
        net = build_supernet_for(ctx.space, ctx.splits.input_shape, ctx.splits.num_classes,
                                 generator=torch.Generator().manual_seed(derived_seed(c.seed, 4)))
    else:
        net = _supernet(ctx, prev).net.restrict(op_sets)
    tc = c.train_config(k - 1)
    recipe = StepRecipe.spos(dropout=c.dropout, weight_decay=tc.weight_decay, label_smoothing=tc.label_smoothing,
                             decay_norm_and_bias=tc.decay_norm_and_bias)
    trainer = SupernetTrainer(net, net.space, ctx.splits, recipe=recipe, train_config=tc, epochs=c.epochs[k - 1],
                              seed=derived_seed(c.seed, 5, k), dist=DistContext(device=ctx.device),
                              checkpoint_path=folder / CHECKPOINT, checkpoint_every=c.checkpoint_every,
                              log_path=folder / "train_log.jsonl",
                              calib_batches=math.ceil(c.calib_images / c.eval_batch_size),
                              eval_batches=math.ceil(c.score_images / c.eval_batch_size), eval_split=c.score_split,
                              eval_batch_size=c.eval_batch_size, run_config={**c.model_dump(mode="json"), "stage": k},
                              progress=c.progress)
    trainer.resume()
    result = trainer.fit()
    return {"checkpoint": f"stage{k}/{CHECKPOINT}", "checkpoint_sha256": result.checkpoint_sha256,
            "epochs": c.epochs[k - 1], "lr": tc.effective_lr, "steps": result.steps,
            "last_epoch": result.history[-1] if result.history else None}


def _ces(ctx: _Ctx, k: int, run: SupernetRun) -> Any:
    """Constrained Evolutionary Search on ``run``'s supernet; every evaluation is a trial of the store (tagged
    ``stage: k``) written together with the strategy state, so a resumed CES continues exactly."""
    c = ctx.config
    bounds = [Constraint("latency_ms", c.Lat_min, c.Lat_max)] if (c.Lat_min, c.Lat_max) != (None, None) else []
    strategy = get_strategy("nsga2", run.space, seed=derived_seed(c.seed, 6, k), metric="accuracy", mode="max",
                            constraints=bounds, cost="latency_ms", population_size=c.population_size,
                            max_iterations=c.max_iterations, crossover_prob=c.crossover_prob,
                            mutation_prob=c.mutation_prob, eta_m=c.eta_m,
                            cost_fn=CostFunction(run.space, ctx.splits.input_shape, ctx.splits.num_classes,
                                                 lookup=ctx.lut.cost))
    done = [t for t in ctx.store.trials(TrialState.COMPLETE) if t.info.get("stage") == k]
    state = ctx.store.get_meta(f"ces/{k}")
    if state is not None:
        strategy.load_state_dict(state, trials=done)
    if strategy.n_asked >= strategy.budget:
        return strategy
    evaluator, known = _evaluator(ctx, run), {t.arch.key(): t.result for t in done}
    with tqdm(total=strategy.budget, initial=strategy.n_asked, desc=f"CES stage {k}", unit="arch",
              disable=not c.progress, leave=False) as bar:
        while strategy.n_asked < strategy.budget:
            cand = strategy.ask(1)[0]
            trial = ctx.store.create_trial(Candidate(cand.arch, cand.parents, cand.generation,
                                                     {**cand.info, "stage": k}))
            result = known.get(cand.arch.key())
            if result is None:  # a repeat of an evaluated architecture is not scored again
                result = known[cand.arch.key()] = evaluator.evaluate(cand.arch)
                result.costs["latency_ms"] = float(ctx.lut.latency_ms(cand.arch))
            strategy.tell(Trial(id=trial.id, arch=cand.arch, state=TrialState.COMPLETE, result=result,
                                parents=cand.parents, generation=cand.generation))
            ctx.store.complete_trial(trial.id, result, meta={f"ces/{k}": strategy.state_dict(include_trials=False)})
            bar.update(1)
            ctx.hook("ces_trial", {"stage": k, "trial": trial.id, "n": strategy.n_asked})
    return strategy


def _front(space: Any, front: Sequence[Trial]) -> list[dict[str, Any]]:
    """The Pareto front by increasing latency, one row per distinct architecture, named F0, F1, ..."""
    rows: dict[str, dict[str, Any]] = {}
    for t in front:
        rows.setdefault(t.arch.key(), {"arch": space.format(t.arch), "accuracy": t.result.metrics["accuracy"],
                                       **{k: t.result.costs[k] for k in ("latency_ms", "params", "flops")},
                                       "trial_id": t.id})
    return [{"name": f"F{i}", **row} for i, row in enumerate(rows.values())]


def _kendall(ctx: _Ctx, run: SupernetRun) -> dict[str, Any]:
    """Kendall tau of the one-shot scores of ``run`` against the NB201 table (Table 8), on up to ``kendall_n``."""
    n = min(ctx.config.kendall_n, math.prod(len(ops) for ops in run.space.op_sets().values()))
    if n < 3:
        return {"n": n, "kendall_tau": None}
    summary = rank_consistency(_evaluator(ctx, run), n=n, seed=ctx.config.seed)
    return {k: summary[k] for k in ("n", "kendall_tau", "spearman_rho", "params_tau", "truth_metric")}


def _write_outputs(ctx: _Ctx, records: list[dict[str, Any]]) -> dict[str, Any]:
    """``padnas.json`` and, per CES, the op-probability heatmap and the accuracy-latency plot."""
    c = ctx.config
    trials = ctx.store.trials(TrialState.COMPLETE)
    for r in records:
        k = r["stage"]
        if r["frequencies"] is not None and not (ctx.dir / f"front_stage{k}.png").is_file():
            plot_op_heatmap(r["frequencies"], ctx.dir / f"heatmap_stage{k}.png", pruned=r["pruned"],
                            title=f"stage {k}: op probability (rank < {c.rank_limit})",
                            ops=[op for ops in ctx.space.op_sets().values() for op in ops])
            plot_cost_tradeoff([t for t in trials if t.info.get("stage") == k], "accuracy", "max", "latency_ms",
                               ctx.dir / f"front_stage{k}.png")
    final = records[-1]["front"] if len(records) == c.M else None
    summary = {"method": "padnas", "M": c.M, "P_th": c.P_th, "rank_limit": c.rank_limit, "Lat_min": c.Lat_min,
               "Lat_max": c.Lat_max, "latency_lut": c.latency_lut, "stages": records, "final_front": final,
               "best": max(final, key=lambda r: (r["accuracy"], -r["latency_ms"])) if final else None}
    write_json(ctx.dir / SUMMARY, summary)
    return summary


def _publish(ctx: _Ctx, record: Mapping[str, Any]) -> None:
    """The last supernet as the run folder's own (``supernet.pt`` / ``supernet.json`` / ``result.json``)."""
    run = _supernet(ctx, record)
    sha = save_checkpoint(ctx.dir / CHECKPOINT, {"model": run.net.state_dict(), "stage": record["stage"]})
    write_run_info(ctx.dir, run.info)
    write_json(ctx.dir / RESULT, {"checkpoint": CHECKPOINT, "checkpoint_sha256": sha, "stage": record["stage"],
                                  "op_sets": record["op_sets"]})


# ================================================================================================ export
def _member(space: Any, run_dir: Path, text: str) -> Architecture:
    """A final-front member by name (``F0``...), or an architecture string / JSON of the run's final space."""
    if not isinstance(text, str):
        raise InvalidValue("--arch", text, "a final_front name (F0, F1, ...) or an architecture string / JSON")
    text = text.strip()
    final = (json.loads((run_dir / SUMMARY).read_text()).get("final_front") or []) if (run_dir / SUMMARY).is_file() \
        else []
    text = {m["name"]: m["arch"] for m in final}.get(text, text)
    if text.startswith("{"):
        return space.validate(Architecture.from_json(text, validate=False))
    return space.parse(text.split(":", 1)[1] if text.startswith(f"{space.name}:") else text)


def export_padnas(run_dir: str | os.PathLike[str], arch: str, out_dir: str | os.PathLike[str], *,
                  onnx: bool | None = None, device: str = "cpu") -> dict[str, Any]:
    """Export ``arch`` (:func:`_member`) from the final supernet of a finished run (``nasforge export RUN_DIR
    --arch F0``): plain PyTorch + ONNX, BN calibrated on the images CES calibrated on."""
    folder = Path(run_dir)
    if not (folder / RESULT).is_file():
        raise InvalidValue("RUN_DIR", str(run_dir), "a finished PAD-NAS run folder (result.json; --resume it)")
    config = load_padnas_config(folder / CONFIG)
    run = open_supernet(folder, device)
    child = _member(run.space, folder, arch)
    calib = fixed_batches(run.splits, "train", config.calib_images, config.eval_batch_size, resolve_device(device),
                          seed=config.seed, train=True)
    res = export_member(run.net, child, out_dir, space=run.space, calib_batches=calib, calib_steps=len(calib),
                        onnx=onnx, device=device, meta={"run_dir": str(folder.resolve()), "config_name": config.name},
                        space_kwargs=config.space.kwargs)
    return {"arch": run.space.format(child), "files": ", ".join(sorted(Path(p).name for p in res.files.values())),
            "onnx max abs diff": res.onnx_max_abs_diff}


def padnas_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The row ``nasforge supernet train`` prints: search-space size per stage, front size, best member."""
    best = result.get("best") or {}
    return {"stages": len(result["stages"]), "space_sizes": [r["size"] for r in result["stages"]],
            "final_front": len(result.get("final_front") or []), "best_accuracy": best.get("accuracy"),
            "best_latency_ms": best.get("latency_ms"), "best_arch": best.get("arch")}


register_method(Method(name="padnas", kind="supernet",
                       paper="Xia et al., Progressive Automatic Design of Search Space for One-Shot NAS (PAD-NAS)",
                       config_model=PadnasConfig, load_config=load_padnas_config, run=run_padnas,
                       summary=padnas_summary, export=export_padnas))
