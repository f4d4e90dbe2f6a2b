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
from typing import Any, Mapping, Sequence

from ..config import SearchConfig, config_from_dict, load_config
from ..errors import InvalidValue
from ..strategies.menas import SUMMARY_NAME, menas_summary
from ..study import Study, build_study
from .base import Method, register_method

__all__ = ["run_menas", "menas_summary", "SUMMARY_NAME", "check_menas_config"]


def check_menas_config(config: SearchConfig) -> SearchConfig:
    """``config`` when it is a MENAS search (strategy ``menas`` and evaluator kind ``menas``), else an error."""
    if config.strategy.name != "menas":
        raise InvalidValue("strategy.name", config.strategy.name, ["menas"], where="run_menas")
    if config.evaluator.kind != "menas":
        raise InvalidValue("evaluator.kind", config.evaluator.kind, ["menas"], where="run_menas")
    return config


def _config(config: SearchConfig | Mapping[str, Any] | str | os.PathLike[str],
            overrides: Sequence[str]) -> SearchConfig:
    """A validated MENAS config (:func:`check_menas_config`) from a config, a mapping or a YAML path."""
    if isinstance(config, SearchConfig):
        config = config_from_dict(config.model_dump(mode="json"), overrides) if overrides else config
    elif isinstance(config, Mapping):
        config = config_from_dict(config, overrides)
    else:
        config = load_config(config, overrides)
    return check_menas_config(config)


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


register_method(Method(name="menas", kind="search", paper="Wei et al., MENAS: Multi-trial Neural Architecture Search "
                       "with Lottery Tickets", config_model=SearchConfig, load_config=load_config, run=run_menas,
                       check=check_menas_config))
