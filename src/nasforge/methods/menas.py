"""The MENAS pipeline (Wei et al., *Multi-trial Neural Architecture Search with Lottery Tickets*, menas.txt
"Overview" steps 1-5), composed from the parts:

=========================================  =========================================================================
step                                       part
=========================================  =========================================================================
1. random population within the budget     :class:`~nasforge.strategies.menas.MenasStrategy` + a FLOPs
                                           :class:`~nasforge.strategies.Constraint` (``constraints:`` in the config)
2. train (early stop), explore tickets     :class:`~nasforge.eval.menas.MenasEvaluator` (``init`` / ``child``
   (a)-(d), fine-tune tickets (e)          trials) and :func:`~nasforge.prune.explore_lottery_tickets`;
                                           ``ticket`` trials truncate, re-calibrate BN and fine-tune
3. parents: 80% best tickets + 20% largest MenasStrategy's generational barrier
4. children by crossover + mutation,       MenasStrategy breeds; the evaluator inherits the parent's checkpoint
   individual weight sharing               (:func:`~nasforge.prune.inherit_weights`)
5. repeat for G generations                the :class:`~nasforge.study.Study` loop (ask -> evaluate -> tell ->
                                           store), resumable
=========================================  =========================================================================

:func:`run_menas` runs (or resumes) the search and writes ``menas.json`` next to the usual outputs: the lineage of
every trial (ticket -> net, child -> parent ticket or large model, the checkpoint it inherited), per-generation
statistics (the model size and epoch time of Fig. 5 / Fig. 6 in miniature, the parents chosen), the number of
evaluated networks (Table 4's N) and the cost of exploring lottery tickets relative to training.
"""
from __future__ import annotations

import os
import statistics
from typing import Any, Mapping, Sequence

from ..config import MenasEvaluatorConfig, SearchConfig, config_from_dict, load_config
from ..errors import InvalidValue
from ..store import INTERRUPTED
from ..study import Study, build_study
from ..trial import Trial, TrialState

__all__ = ["run_menas", "menas_summary", "SUMMARY_NAME"]

SUMMARY_NAME = "menas.json"


def _config(config: SearchConfig | Mapping[str, Any] | str | os.PathLike[str],
            overrides: Sequence[str]) -> SearchConfig:
    """A validated MENAS config: strategy ``menas`` and evaluator kind ``menas``."""
    if isinstance(config, SearchConfig):
        config = config_from_dict(config.model_dump(mode="json"), overrides) if overrides else config
    elif isinstance(config, Mapping):
        config = config_from_dict(config, overrides)
    else:
        config = load_config(config, overrides)
    if config.strategy.name != "menas":
        raise InvalidValue("strategy.name", config.strategy.name, ["menas"], where="run_menas")
    if not isinstance(config.evaluator, MenasEvaluatorConfig):
        raise InvalidValue("evaluator.kind", config.evaluator.kind, ["menas"], where="run_menas")
    return config


def run_menas(config: SearchConfig | Mapping[str, Any] | str | os.PathLike[str], run_dir: str | os.PathLike[str],
              *, overrides: Sequence[str] = (), resume: bool = False) -> Study:
    """Run the MENAS search of ``config`` (a :class:`SearchConfig`, a mapping or a YAML path) into ``run_dir``, or
    continue the one stored there (``resume=True``; ``overrides`` such as ``["budget=100"]`` then apply to the
    stored config). Returns the finished :class:`Study` (its store still open) after writing ``menas.json``."""
    if resume:
        study = Study.resume(run_dir, overrides=overrides)
        _config(study.config, ())
    else:
        study = build_study(_config(config, overrides), run_dir)
    try:
        study.run()  # the strategy's write_outputs hook writes menas.json with the other outputs
    except BaseException:
        study.close()
        raise
    return study


def _row(t: Trial, by_id: Mapping[int, Trial]) -> dict[str, Any]:
    """One trial's lineage record."""
    res = t.result
    row: dict[str, Any] = {"id": t.id, "kind": t.info.get("kind"), "generation": t.generation,
                           "parents": list(t.parents), "state": t.state.value, "arch": t.arch.to_dict(),
                           "accuracy": res.metrics.get("accuracy") if res else None,
                           "params": res.costs.get("params") if res else None,
                           "flops": res.costs.get("flops") if res else None,
                           "checkpoint": t.checkpoint, "checkpoint_sha256": t.checkpoint_sha256, "error": t.error}
    for key in ("ticket_rank", "proxy_accuracy", "op", "selected_as", "inherit_from"):
        if key in t.info:
            row[key] = t.info[key]
    if t.parents:
        row["parent_kinds"] = [by_id[p].info.get("kind") if p in by_id else None for p in t.parents]
    if res is not None and "inherited_from" in res.info:
        row["inherited_from"] = res.info["inherited_from"]
    return row


def _generation_stats(trials: list[Trial]) -> dict[str, Any]:
    """Fig. 5 / Fig. 6 in miniature for one generation: sizes, epoch times, best accuracy."""
    done = [t for t in trials if t.state is TrialState.COMPLETE and t.result is not None]
    epoch_s = [t.result.info["train_seconds"] / t.result.info["epochs"] for t in done
               if t.result.info.get("epochs") and t.result.info.get("train_seconds") is not None]
    kinds = [t.info.get("kind") for t in trials]
    return {"nets": sum(k in ("init", "child") for k in kinds), "tickets": kinds.count("ticket"),
            "failed": sum(t.state is TrialState.FAILED and t.error != INTERRUPTED for t in trials),
            "interrupted": sum(t.error == INTERRUPTED for t in trials),
            "mean_params": statistics.fmean(t.result.costs["params"] for t in done) if done else None,
            "mean_flops": statistics.fmean(t.result.costs["flops"] for t in done) if done else None,
            "mean_epoch_seconds": statistics.fmean(epoch_s) if epoch_s else None,
            "best_accuracy": max((t.result.metrics["accuracy"] for t in done), default=None)}


def menas_summary(study: Study) -> dict[str, Any]:
    """Lineage, per-generation statistics, evaluated networks and lottery-ticket cost of a MENAS study."""
    trials = [t for t in study.trials() if t.state is not TrialState.RUNNING]
    by_id = {t.id: t for t in trials}
    generations: dict[int, list[Trial]] = {}
    for t in trials:
        generations.setdefault(t.generation, []).append(t)
    selections = {s["generation"]: s for s in getattr(study.strategy, "selections", [])}
    per_gen = {str(g): {**_generation_stats(ts), "parents_chosen": selections.get(g)}
               for g, ts in sorted(generations.items())}
    costs = [t.result.info["lottery_cost"] for t in trials if t.result is not None and "lottery_cost" in t.result.info]
    # the measure: a net's exploration time over its OWN training time (E_init or E_child epochs)
    per_net = [c["explore_s"] / c["train_seconds"] for c in costs if c.get("train_seconds")]
    explore = sum(c["explore_s"] for c in costs)
    train = sum(t.result.info.get("train_seconds") or 0.0 for t in trials if t.result is not None)
    finished = [t for t in trials if t.state is TrialState.COMPLETE or t.error != INTERRUPTED]
    pareto = study.pareto() or {}
    return {"evaluated_networks": len(finished), "best": study.summary()["best"], "generations": per_gen,
            "pareto": pareto.get("fronts", {}),
            "lottery_cost": {"explore_s": explore, "train_s": train,
                             "share_of_search": explore / (explore + train) if explore + train > 0 else None,
                             "per_net_fraction_median": statistics.median(per_net) if per_net else None,
                             "per_net_fraction_max": max(per_net) if per_net else None},
            "lineage": [_row(t, by_id) for t in trials]}
