"""The :class:`Study`: ask -> evaluate -> tell -> store, resumable after a crash (DESIGN.md, "Study").

One loop composes the parts: a strategy proposes candidates (``ask``), an executor evaluates them (several in
flight when it has workers), the strategy learns from each finished trial (``tell``), and the trial store records
everything. The order of writes is what makes a crashed or interrupted search resumable with nothing lost:

1. ``store.create_trial`` records the candidate as *running* (with its seed) **before** it is evaluated;
2. after the evaluation the strategy is told, and ``store.complete_trial`` / ``store.fail_trial`` writes the
   result **together with** the strategy's ``state_dict`` and the study's counters, in ONE transaction.

So the stored strategy state always matches the stored trials. :meth:`Study.resume` reopens the store, marks the
trials left running as interrupted (``store.requeue_interrupted``), restores the strategy from the stored state
(or replays the trials with ``strategy.rebuild`` when none was stored), evaluates again the interrupted trials
the restored strategy is still waiting for, and continues; the trials it asked after the saved state are asked
again by the restored strategy itself. With a deterministic evaluator the resumed search therefore makes the same
decisions as one that was never interrupted.

Failures never stop a search: an evaluation that raises, diverges (NaN loss or metric; nasforge.train's
``DivergedError``) or runs out of memory is recorded as *failed* with its reason (:mod:`nasforge.execute.base`).
Ctrl-C (``KeyboardInterrupt``) stops at once: running trials stay *running* in the store and are evaluated again
on resume.

Seeds: trial ``k`` (the k-th candidate the strategy asked) gets ``SeedSequence(seed, spawn_key=(k,))``'s first
word, recorded in its row; a re-evaluated trial keeps its seed. Outputs in ``run_dir``: ``trials.sqlite``,
``config.yaml`` (resolved), ``best.json``, ``pareto.json`` (multi-objective strategies), ``report.html`` + PNGs.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from .config import (
    SearchConfig,
    build_evaluator,
    build_executor,
    build_space,
    build_strategy,
    config_from_dict,
    dump_config,
    load_config,
    resolved_budget,
)
from .device import resolve_device
from .errors import InvalidValue
from .execute import LocalExecutor
from .execute.base import Executor, TrialOutcome, evaluate_trial
from .io import atomic_write_text, load_checkpoint, lock_folder, write_json
from .pareto import pareto_indices
from .report import write_report
from .report.progress import LogCallback, ProgressBar, StudyCallback
from .store import MemoryStore, SQLiteStore, TrialStore
from .store.base import dumps
from .trial import INTERRUPTED, Candidate, Result, Trial, TrialState

if TYPE_CHECKING:
    from .spaces.base import SearchSpace
    from .strategies.base import Strategy

__all__ = ["Study", "StudyCallback", "ProgressBar", "LogCallback", "trial_seed", "trial_checkpoint", "build_study", "run_search",
           "run_quickstart", "QUICKSTART", "STORE_NAME"]

log = logging.getLogger("nasforge.study")
STORE_NAME = "trials.sqlite"
_STRATEGY_KEY, _STUDY_KEY, _CONFIG_KEY = "strategy_state", "study_state", "config"


def trial_seed(study_seed: int, index: int) -> int:
    """Seed of the ``index``-th asked candidate: first word of ``SeedSequence(study_seed, spawn_key=(index,))``."""
    return int(np.random.SeedSequence(study_seed, spawn_key=(index,)).generate_state(1)[0])


def trial_checkpoint(trial: Trial, run_dir: str | Path | None) -> Path:
    """The trial's recorded checkpoint path or, when the run folder was moved or copied since (the recorded path
    is absolute and gone), the same file under ``run_dir/trials/NNNNN/``."""
    path = Path(str(trial.checkpoint))
    if run_dir is not None and not path.is_file():
        moved = Path(run_dir) / "trials" / f"{trial.id:05d}" / path.name
        if moved.is_file():
            return moved
    return path


def _is_finished(t: Trial) -> bool:
    """Whether a trial counts against the budget: complete, or failed for a reason other than an interruption."""
    return t.state is TrialState.COMPLETE or (t.state is TrialState.FAILED and t.error != INTERRUPTED)


def _finished(trials: Iterable[Trial]) -> list[Trial]:
    return [t for t in trials if _is_finished(t)]


def _jsonable_result(result: Result) -> str | None:
    """``None`` when the store can hold ``result`` as JSON, else why not (checked before the strategy is told)."""
    try:
        for group in ("metrics", "costs", "artifacts", "info"):
            dumps(getattr(result, group), f"result {group}")
    except InvalidValue as exc:
        return f"error: {exc}"
    return None


def _checkpoint_of(result: Result) -> tuple[str | None, str | None]:
    """The checkpoint path and SHA-256 to record: the evaluator's sha256 (``info["checkpoint_sha256"]``), else the
    file's when it is visible here (a Ray worker on another machine may have written it elsewhere)."""
    path, sha = result.artifacts.get("checkpoint"), result.info.get("checkpoint_sha256")
    if path is None or (sha is None and not Path(path).is_file()):
        return None, None
    return str(path), sha


class Study:
    """A search: ``Study(space, strategy, evaluator, store, budget=..., ...).run()``.

    ``store``: a :class:`~nasforge.store.TrialStore`; default ``run_dir/trials.sqlite``, or memory without a
    ``run_dir``. ``executor``: default in-process. ``budget``: trials to finish (complete or failed).
    ``metric`` / ``mode``: what "best" means. ``seed``: the study seed (trial seeds derive from it; the
    strategy has its own). ``device``: passed to evaluators in the trial context. ``config``: the resolved
    config (mapping or :class:`~nasforge.config.SearchConfig`) written to ``run_dir/config.yaml``.
    """

    def __init__(self, space: "SearchSpace", strategy: "Strategy", evaluator: Any, store: TrialStore | None = None,
                 *, executor: Executor | None = None, budget: int, metric: str = "accuracy", mode: str = "max",
                 seed: int = 0, callbacks: Sequence[StudyCallback] = (), run_dir: str | Path | None = None,
                 config: Any = None, device: str | None = None, report: bool = True) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise InvalidValue("budget", budget, "a positive int (number of trials)")
        if mode not in ("max", "min"):
            raise InvalidValue("mode", mode, ["max", "min"])
        if not callable(getattr(evaluator, "evaluate", None)):
            raise InvalidValue("evaluator", type(evaluator).__name__, "an object with evaluate(arch, seed=, context=)")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidValue("seed", seed, "an int >= 0")
        self.space, self.strategy, self.evaluator = space, strategy, evaluator
        self.run_dir = Path(run_dir).resolve() if run_dir is not None else None
        self._lock: Any = None
        if store is None:
            store = SQLiteStore(self.run_dir / STORE_NAME) if self.run_dir is not None else MemoryStore()
        self.store = store
        if executor is None:
            executor = LocalExecutor()
        self.executor = executor
        self.budget, self.metric, self.mode, self.seed = budget, metric, mode, seed
        self.callbacks = list(callbacks)
        self.config, self.device, self.report = config, device, report
        self._n_asked = 0
        self._requeue: list[Trial] = []
        self._running: dict[cf.Future, Trial] = {}
        self._prepared = False
        self._counts: list[int] | None = None
        self._best: Trial | None = None
        self.interrupted = False

    # ------------------------------------------------------------------------------------------------ state
    @property
    def n_finished(self) -> int:
        """Trials finished so far (complete or failed; interrupted ones do not count)."""
        self._scan()
        return self._counts[0]

    @property
    def n_failed(self) -> int:
        self._scan()
        return self._counts[1]

    def trials(self, state: TrialState | str | None = None) -> list[Trial]:
        """Stored trials (optionally of one state), ordered by id."""
        return self.store.trials(state)

    def _value(self, trial: Trial) -> float | None:
        v = trial.metric(self.metric)
        return None if v is None or not math.isfinite(float(v)) else float(v)

    def _better(self, v: float, than: float | None) -> bool:
        return than is None or (v > than if self.mode == "max" else v < than)

    def _scan(self) -> None:
        """Initialise the running counters and best trial from the store (once)."""
        if self._counts is not None:
            return
        self._counts, self._best = [0, 0], None
        for t in self.store.trials():
            self._count(t)

    def _count(self, t: Trial) -> None:
        if _is_finished(t):
            self._counts[0] += 1
            self._counts[1] += t.state is TrialState.FAILED
        v = self._value(t) if t.state is TrialState.COMPLETE else None
        if v is not None and self._better(v, None if self._best is None else self._value(self._best)):
            self._best = t

    def best_trial(self) -> Trial | None:
        """The complete trial with the best ``metric`` (earliest on ties), or ``None``."""
        self._scan()
        return self._best

    def best_value(self) -> float | None:
        t = self.best_trial()
        return None if t is None else self._value(t)

    def load_checkpoint(self, trial: Trial | int) -> Any:
        """The trial's checkpoint, verified against its recorded SHA-256 (a mismatch raises ``CheckpointError``)."""
        t = self.store.get(trial) if isinstance(trial, int) else trial
        if t.checkpoint is None:
            raise InvalidValue(f"trial {t.id} checkpoint", None, "a trial completed with a checkpoint")
        return load_checkpoint(t.checkpoint, sha256=t.checkpoint_sha256)

    def close(self) -> None:
        """Close the trial store and release the run folder."""
        self.store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "Study":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ setup
    def _prepare(self) -> None:
        """Fresh study: record config and meta. Existing store: restore the strategy and find the trials to redo."""
        if self._prepared:
            return
        self._prepared = True
        self._acquire_lock()
        fresh = len(self.store) == 0
        if not fresh:
            self._restore()
        # written only once the stored state has been accepted: a rejected resume leaves the run folder as it was
        self._write_config()
        self.store.set_meta("study", {"seed": self.seed, "metric": self.metric, "mode": self.mode,
                                      "budget": self.budget, "strategy": self.strategy.name,
                                      "evaluator": getattr(self.evaluator, "name", type(self.evaluator).__name__),
                                      "executor": self.executor.describe(),
                                      "seeds": "trial k: SeedSequence(seed, spawn_key=(k,)).generate_state(1)[0]"})

    def _acquire_lock(self) -> None:
        """One process per run folder: a second search or resume on a folder in use stops with a clear error."""
        if self.run_dir is None or self._lock is not None:
            return
        self._lock = lock_folder(self.run_dir)

    def _restore(self) -> None:
        """Existing store: restore the strategy and find the trials to evaluate again."""
        self.store.requeue_interrupted()
        trials = self.store.trials()
        state, study_state = self.store.get_meta(_STRATEGY_KEY), self.store.get_meta(_STUDY_KEY)
        if state is not None and study_state is not None:
            self.strategy.load_state_dict(state, trials=trials)
            self._n_asked = int(study_state["n_asked"])
            pending = [self.store.get(int(i)) for i in study_state["in_flight"]]
        else:  # no saved state (e.g. a store written by other code): replay the trials
            interrupted = [t for t in trials if t.state is TrialState.FAILED and t.error == INTERRUPTED]
            replay = _finished(trials) + [Trial(id=t.id, arch=t.arch, parents=t.parents, generation=t.generation,
                                                seed=t.seed, info=dict(t.info)) for t in interrupted]
            if replay:
                self.strategy.rebuild(replay)
            self._n_asked = len(trials)
            pending = interrupted
        self._requeue = pending
        log.info("resuming: %d finished, %d to evaluate again", len(_finished(trials)), len(pending))

    def _write_config(self) -> None:
        if self.config is None:
            return
        data = self.config.model_dump(mode="json") if hasattr(self.config, "model_dump") else dict(self.config)
        self.store.set_meta(_CONFIG_KEY, data)
        if self.run_dir is not None:
            atomic_write_text(self.run_dir / "config.yaml", dump_config(data))

    # ------------------------------------------------------------------------------------------------ loop
    def _next(self) -> tuple[Candidate, int]:
        """The next candidate and its seed: an interrupted trial to redo first, else a new ask."""
        if self._requeue:
            t = self._requeue.pop(0)
            return (Candidate(t.arch, tuple(t.parents), t.generation, dict(t.info)),
                    (t.seed if t.seed is not None else 0))
        cand = self.strategy.ask(1)[0]
        seed = trial_seed(self.seed, self._n_asked)
        self._n_asked += 1
        return cand, seed

    def _context(self, trial: Trial) -> dict[str, Any]:
        ctx: dict[str, Any] = {"trial_id": trial.id, "generation": trial.generation}
        if trial.info:
            ctx["candidate"] = dict(trial.info)  # what the strategy said about the candidate (e.g. its kind)
        if self.run_dir is not None:
            ctx["trial_dir"] = str(self.run_dir / "trials" / f"{trial.id:05d}")
        if self.device is not None:
            ctx["device"] = self.device
        if trial.parents:
            parent = self.store.get(trial.parents[0])
            ctx["parent_arch"] = parent.arch
            if parent.checkpoint:
                ctx["parent_checkpoint"] = str(trial_checkpoint(parent, self.run_dir))
                ctx["parent_checkpoint_sha256"] = parent.checkpoint_sha256
        return ctx

    def _blocked(self) -> bool:
        """True while the strategy has nothing to ask yet (a generational strategy waiting for its generation to
        finish) or has finished its schedule; interrupted trials to redo are always available."""
        return not self._requeue and not self.strategy.can_ask()

    def _launch(self) -> None:
        cand, seed = self._next()
        trial = self.store.create_trial(cand, seed=seed)
        for cb in self.callbacks:
            cb.on_trial_start(self, trial)
        future = self.executor.submit(evaluate_trial, self.evaluator, trial.arch, seed, self._context(trial),
                                      (self.metric,))
        self._running[future] = trial

    def _outcome(self, future: cf.Future) -> TrialOutcome:
        try:
            outcome = future.result()
        except Exception as exc:  # the worker itself failed (process died, Ray task lost...)
            return TrialOutcome(reason=f"worker: {type(exc).__name__}: {exc}"[:500], kind="worker")
        if not isinstance(outcome, TrialOutcome):
            return TrialOutcome(reason=f"error: worker returned {type(outcome).__name__}", kind="error")
        if outcome.result is not None:
            problem = _jsonable_result(outcome.result)
            if problem:
                return TrialOutcome(reason=problem, kind="error")
        return outcome

    def _finish(self, future: cf.Future) -> None:
        trial = self._running.pop(future)
        outcome = self._outcome(future)
        told = Trial(id=trial.id, arch=trial.arch, parents=trial.parents, generation=trial.generation,
                     seed=trial.seed, state=TrialState.COMPLETE if outcome.ok else TrialState.FAILED,
                     result=outcome.result, error=outcome.reason)
        self.strategy.tell(told)
        in_flight = sorted(t.id for t in self._running.values()) + [t.id for t in self._requeue]
        # the store holds the trials: save only their ids with the strategy state (linear, not quadratic, I/O)
        meta = {_STRATEGY_KEY: self.strategy.state_dict(include_trials=False),
                _STUDY_KEY: {"n_asked": self._n_asked, "in_flight": in_flight}}
        if outcome.ok:
            path, sha = _checkpoint_of(outcome.result)
            self.store.complete_trial(trial.id, outcome.result, checkpoint=path, checkpoint_sha256=sha, meta=meta)
        else:
            self.store.fail_trial(trial.id, outcome.reason or "error", meta=meta)
        stored = self.store.get(trial.id)
        self._scan()
        self._count(stored)
        for cb in self.callbacks:
            cb.on_trial_end(self, stored)

    def run(self) -> "Study":
        """Run (or continue) the search until ``budget`` trials have finished; then write the outputs.

        Ctrl-C stops at once (the ``KeyboardInterrupt`` is re-raised after the executor is shut down); the trials
        that were running stay *running* in the store and are evaluated again by :meth:`resume`.
        """
        self._prepare()
        self._counts = None  # re-read: resuming changed the store
        for cb in self.callbacks:
            cb.on_study_start(self)
        finished = self.n_finished
        try:
            while True:
                while (len(self._running) < self.executor.max_workers and not self._blocked()
                       and finished + len(self._running) < self.budget):
                    self._launch()
                if not self._running:
                    break
                done, _ = self.executor.wait_first(self._running)
                for future in sorted(done, key=lambda f: self._running[f].id):
                    self._finish(future)
                    finished += 1
        except BaseException as exc:  # Ctrl-C, or an error that is not the trial's (bad config, full disk...)
            self.interrupted = isinstance(exc, KeyboardInterrupt)
            self.executor.shutdown(cancel=True)
            self._running.clear()
            if self.interrupted:
                log.warning("interrupted: %d trials finished; resume with Study.resume(run_dir) / --resume",
                            finished)
            raise
        finally:
            for cb in self.callbacks:
                cb.on_study_end(self)
        self.executor.shutdown()
        self.write_outputs()
        return self

    # ------------------------------------------------------------------------------------------------ outputs
    def summary(self) -> dict[str, Any]:
        """Best trial (architecture string + JSON + metrics) and counts, as written to ``best.json``."""
        best = self.best_trial()
        trials = self.store.trials()
        out: dict[str, Any] = {"metric": self.metric, "mode": self.mode, "budget": self.budget,
                               "n_trials": len(trials), "n_finished": len(_finished(trials)),
                               "n_failed": sum(t.state is TrialState.FAILED and t.error != INTERRUPTED
                                               for t in trials), "best": None}
        if best is not None and best.result is not None:
            out["best"] = {"trial_id": best.id, "arch": str(best.arch), "arch_json": json.loads(best.arch.to_json()),
                           "key": best.arch.key(), "value": self._value(best), "metrics": best.result.metrics,
                           "costs": best.result.costs, "checkpoint": best.checkpoint,
                           "checkpoint_sha256": best.checkpoint_sha256, "seed": best.seed}
        return out

    def cost_fronts(self, costs: Sequence[str] = ("flops", "params")) -> dict[str, list[dict[str, Any]]]:
        """Per cost, the complete trials not dominated in (metric, cost): better metric with lower cost; sorted by
        cost. Costs that no trial reports are left out (e.g. a tabular run without FLOPs)."""
        done = [t for t in self.store.trials(TrialState.COMPLETE) if t.result is not None
                and self._value(t) is not None and not math.isnan(self._value(t))]
        fronts: dict[str, list[dict[str, Any]]] = {}
        for cost in costs:
            have = [t for t in done if cost in t.result.costs]
            if not have:
                continue
            values = np.array([self._value(t) for t in have], dtype=float)
            front = pareto_indices(values, np.array([t.result.costs[cost] for t in have], dtype=float), self.mode)
            fronts[cost] = [{"trial_id": have[i].id, "arch": str(have[i].arch), self.metric: self._value(have[i]),
                             cost: have[i].result.costs[cost]} for i in front]
        return fronts

    def pareto(self) -> dict[str, Any] | None:
        """The Pareto front(s): a multi-objective strategy's own front and every trial's non-domination rank;
        otherwise the trade-off of the metric against each reported cost (FLOPs, params), :meth:`cost_fronts`."""
        front_fn, ranks_fn = getattr(self.strategy, "pareto_front", None), getattr(self.strategy, "ranks", None)
        if not callable(front_fn) or not callable(ranks_fn):
            fronts = self.cost_fronts()
            if not fronts:
                return None
            cost = next(iter(fronts))
            return {"metric": self.metric, "cost": cost, "front": fronts[cost], "fronts": fronts}
        cost = getattr(self.strategy, "hp", {}).get("cost")
        front = [{"trial_id": t.id, "arch": str(t.arch), self.metric: t.metric(self.metric),
                  str(cost): self.strategy.costs(t.arch).get(cost, t.metric(cost)) if cost else None}
                 for t in front_fn()]
        out = {"metric": self.metric, "cost": cost, "front": front,
               "ranks": [{"trial_id": k, "rank": v} for k, v in sorted(ranks_fn().items())]}
        if isinstance(getattr(self.strategy, "duplicates", None), Mapping):  # NSGA-II's duplicate offspring
            out["duplicates"] = dict(self.strategy.duplicates)
        return out

    def write_outputs(self) -> dict[str, Path]:
        """Write ``best.json``, ``pareto.json`` (multi-objective) and the report into ``run_dir``."""
        if self.run_dir is None:
            return {}
        paths = {"best": self.run_dir / "best.json"}
        write_json(paths["best"], self.summary())
        pareto = self.pareto()
        if pareto is not None:
            paths["pareto"] = self.run_dir / "pareto.json"
            write_json(paths["pareto"], pareto)
        extra = getattr(self.strategy, "write_outputs", None)  # a method's own summary (e.g. MENAS menas.json)
        if callable(extra):
            paths.update(extra(self))
        if self.report:
            paths.update(write_report(self.run_dir, self.store, metric=self.metric, mode=self.mode,
                                      pareto=pareto, title=getattr(self.config, "name", None) or "nasforge search"))
        return paths

    # ------------------------------------------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir: str | Path, *, overrides: Sequence[str] = (), executor: Executor | None = None,
               callbacks: Sequence[StudyCallback] | None = None) -> "Study":
        """Reopen the study in ``run_dir`` (its ``config.yaml``), ready to :meth:`run` on from where it stopped.

        ``overrides`` (``["budget=200"]``) change the stored config, e.g. to extend the budget.
        """
        for item in overrides:
            key = item.partition("=")[0].strip()
            if key.split(".")[0] not in RESUME_OVERRIDABLE:
                raise InvalidValue("--set on resume", key, f"{', '.join(RESUME_OVERRIDABLE)} (anything else would mix "
                                                           "trials of different setups in one run; start a new run)")
        run_dir = Path(run_dir)
        if (run_dir / "config.yaml").is_file():
            config = load_config(run_dir / "config.yaml", overrides)
        elif (run_dir / STORE_NAME).is_file():
            with SQLiteStore(run_dir / STORE_NAME) as store:
                raw = store.get_meta(_CONFIG_KEY)
            if raw is None:
                raise InvalidValue("resume", str(run_dir), "a run folder written from a config (config.yaml)")
            config = config_from_dict(raw, overrides)
        else:
            raise InvalidValue("resume", str(run_dir), f"a run folder holding config.yaml and {STORE_NAME}")
        return build_study(config, run_dir, executor=executor, callbacks=callbacks, resume=True)


#: config fields a resume may change (``--set``); the rest define the run and stay as stored
RESUME_OVERRIDABLE = ("budget", "executor", "progress", "report", "device")


# ==================================================================================================== builders
def _check_where_trials_run(executor: Executor, evaluator: Any, run_dir: Path | None) -> None:
    """Out-of-process executors: the driver drops its copy of the data (each worker loads and caches its own;
    the checked input spec stays). Executors on other machines: ``data.source`` and the run folder must exist
    there too (a one-line error naming the nodes that lack them)."""
    if not executor.in_process and hasattr(evaluator, "release_data"):
        evaluator.release_data()
    if not executor.remote_nodes:
        return
    paths: dict[str, str] = {}
    source = getattr(getattr(evaluator, "data_config", None), "source", None)
    if isinstance(source, str) and Path(source).exists():
        paths["data.source"] = str(Path(source).resolve())
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        paths["out"] = str(run_dir.resolve())
    try:
        executor.check_paths(paths)
    except Exception:
        executor.shutdown(cancel=True)
        raise


def build_study(config: SearchConfig, run_dir: str | Path | None = None, *, executor: Executor | None = None,
                callbacks: Sequence[StudyCallback] | None = None, resume: bool = False) -> Study:
    """A :class:`Study` from a :class:`~nasforge.config.SearchConfig` (space, strategy, evaluator, executor).

    ``run_dir`` defaults to ``config.out``. Without ``resume`` the run folder must not already hold a study.
    The config stored in the run folder is the *resolved* one: the strategy's full hyper-parameters, the budget.
    """
    run_dir = Path(run_dir) if run_dir is not None else (Path(config.out) if config.out else None)
    if run_dir is not None and not resume and (run_dir / STORE_NAME).exists():
        raise InvalidValue("out", str(run_dir), "a new run folder (this one holds a study; resume it with --resume)")
    if config.device is not None:
        resolve_device(config.device)  # an unknown or absent device fails now, not in every trial
    space = build_space(config)
    evaluator = build_evaluator(config, space)
    if hasattr(evaluator, "input_spec"):
        evaluator.input_spec  # loads the data once: a bad path, shape or class count fails before any trial
    strategy = build_strategy(config, space, evaluator)
    budget = resolved_budget(config, strategy)
    resolved = config.model_copy(update={
        "budget": budget, "out": str(run_dir) if run_dir is not None else None,
        "strategy": config.strategy.model_copy(update={"params": dict(strategy.hp)})})
    if callbacks is None:
        callbacks = [ProgressBar()] if config.progress else []
    executor = executor or build_executor(config)
    _check_where_trials_run(executor, evaluator, run_dir)
    return Study(space, strategy, evaluator, executor=executor, budget=budget,
                 metric=config.metric, mode=config.mode, seed=config.seed, callbacks=callbacks, run_dir=run_dir,
                 config=resolved, device=config.device, report=config.report)


def run_search(config: SearchConfig, run_dir: str | Path | None = None, **kwargs: Any) -> Study:
    """Build and run a study. The store stays open for inspection (``study.close()``) unless the run fails."""
    study = build_study(config, run_dir, **kwargs)
    try:
        return study.run()
    except BaseException:
        study.close()
        raise


#: ``nasforge quickstart``: regularized evolution over small NAS-Bench-201 cells, each trained from scratch for
#: one epoch on 3,000 images of the embedded Fashion-MNIST (a few minutes on a laptop CPU). Same as
#: ``configs/quickstart.yaml``.
QUICKSTART: dict[str, Any] = {
    "name": "quickstart",
    "space": {"name": "nb201", "kwargs": {"C": 8, "N": 1}},
    "data": {"source": "embedded", "limit": 3000, "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0},
    "strategy": {"name": "regularized-evolution", "params": {"population_size": 6, "sample_size": 3}},
    "evaluator": {"kind": "train", "epochs": 1.0, "recipe": "nb201",
                  "train": {"batch_size": 32, "lr": 0.05, "nan_check_interval": 10}},
    "budget": 20,
    "metric": "accuracy",
    "mode": "max",
    "executor": {"kind": "local"},
    "seed": 0,
    "device": "auto",
}


def run_quickstart(out_dir: str | Path, *, overrides: Sequence[str] = (), progress: bool = True) -> Study:
    """Run the quickstart search (:data:`QUICKSTART`) into ``out_dir``; returns the finished :class:`Study`."""
    config = config_from_dict(QUICKSTART, [*overrides, f"progress={str(progress).lower()}"])
    return run_search(config, out_dir)

