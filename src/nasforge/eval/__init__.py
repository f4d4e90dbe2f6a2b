"""Evaluators: turn an architecture into a :class:`~nasforge.trial.Result` (:mod:`nasforge.eval.base`).

Each evaluator kind has a config model registered in :data:`nasforge.registry.EVALUATORS` (``evaluator: {kind:
...}`` of a search config): ``tabular`` (benchmark-table look-up), ``train`` (train from scratch) and ``menas``
(MENAS: inheritance and lottery tickets) and ``one-shot`` (a trained supernet's weights after BN
re-calibration).
"""
from .base import (
           EvalContext,
           Evaluator,
           EvaluatorConfig,
           SupportsEvaluate,
           register_evaluator,
)
from .menas import MenasEvaluator, MenasEvaluatorConfig
from .oneshot import OneShotEvaluator, OneShotEvaluatorConfig
from .tabular import TabularEvaluator, TabularEvaluatorConfig
from .train_eval import TrainEvaluator, TrainEvaluatorConfig

__all__ = ["EvalContext", "Evaluator", "EvaluatorConfig", "SupportsEvaluate", "register_evaluator",
           "TabularEvaluator", "TabularEvaluatorConfig", "TrainEvaluator", "TrainEvaluatorConfig", "MenasEvaluator",
           "MenasEvaluatorConfig", "OneShotEvaluator", "OneShotEvaluatorConfig"]
