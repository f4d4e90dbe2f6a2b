"""Study callbacks: hooks called by :meth:`nasforge.study.Study.run` (minGPT-style), a tqdm progress bar and a
log line per trial. They read the study through its public attributes only (``budget``, ``n_finished``,
``n_failed``, ``metric``, ``best_value()``).
"""
from __future__ import annotations

import logging
from typing import Any

from ..trial import Trial, TrialState

__all__ = ["StudyCallback", "ProgressBar", "LogCallback"]

log = logging.getLogger("nasforge.study")


class StudyCallback:
    """Hooks called by :meth:`Study.run`; override what you need (minGPT-style)."""

    def on_study_start(self, study: Any) -> None: ...

    def on_trial_start(self, study: Any, trial: Trial) -> None: ...

    def on_trial_end(self, study: Any, trial: Trial) -> None: ...

    def on_study_end(self, study: Any) -> None: ...


class ProgressBar(StudyCallback):
    """A tqdm bar over the budget with the best metric so far and the number of failed trials."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self.kwargs, self.bar = tqdm_kwargs, None

    def on_study_start(self, study: Any) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=study.budget, initial=study.n_finished, desc="search", unit="trial",
                        dynamic_ncols=True, **self.kwargs)
        self._update(study)

    def _update(self, study: Any) -> None:
        best = study.best_value()
        if self.bar is not None:
            self.bar.set_postfix({f"best {study.metric}": "-" if best is None else f"{best:.4g}",
                                  "failed": study.n_failed}, refresh=False)

    def on_trial_end(self, study: Any, trial: Trial) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self._update(study)

    def on_study_end(self, study: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogCallback(StudyCallback):
    """One ``logging`` line per finished trial (logger ``nasforge.study``)."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger, self.level = logger or log, level

    def on_trial_end(self, study: Any, trial: Trial) -> None:
        if trial.state is TrialState.COMPLETE:
            self.logger.log(self.level, "trial %d complete: %s=%s best=%s  %s", trial.id, study.metric,
                            trial.metric(study.metric), study.best_value(), trial.arch)
        else:
            self.logger.log(self.level, "trial %d failed: %s  %s", trial.id, trial.error, trial.arch)
