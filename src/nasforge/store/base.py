"""The :class:`TrialStore` contract, shared by the SQLite store and the in-memory store.

A store keeps one row per trial (DESIGN.md, "TrialStore") and a small ``meta`` table of JSON values (the study
config, seeds, the strategy's serialised state). All of the public behaviour lives here, on top of seven storage
primitives that the back-ends implement; rows are exchanged with the back-ends *encoded* (JSON text columns), so
the SQLite store and the memory store behave identically by construction (same validation, same JSON round-trip,
same errors), which the contract test suite checks.

Life of a trial: :meth:`TrialStore.create_trial` (state ``running``, id assigned densely from 0) ->
:meth:`TrialStore.complete_trial` or :meth:`TrialStore.fail_trial`, each one atomic write that may also carry
``meta`` entries, so a strategy's state and the trial it has been told about are never separated by a crash.
A finished trial is never rewritten. After a crash, :meth:`TrialStore.requeue_interrupted` fails the trials that
were left running (error ``"interrupted"``) and returns them for re-evaluation.
"""
from __future__ import annotations

import csv
import json
import math
import numbers
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

from ..arch import Architecture
from ..errors import InvalidValue
from ..io import sha256_file  # lazy: nasforge.io imports torch
from ..trial import INTERRUPTED, Candidate, Result, Trial, TrialState

__all__ = ["TrialStore", "TrialStateError", "COLUMNS", "INTERRUPTED"]

#: the columns of a trial row, in table order
COLUMNS = ("id", "arch_key", "arch_json", "arch_str", "state", "metrics", "costs", "artifacts", "info",
           "candidate_info", "parents", "generation", "seed", "started_at", "finished_at", "duration",
           "checkpoint", "checkpoint_sha256", "error")
_STATES = tuple(s.value for s in TrialState)


class TrialStateError(InvalidValue):
    """A trial cannot change state (e.g. writing the result of a trial that is already complete)."""


def _json_default(obj: Any) -> Any:
    """JSON fallback for numpy scalars/arrays (``.item()`` / ``.tolist()``); anything else is an error."""
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
        return obj.item()
    if hasattr(obj, "tolist") and hasattr(obj, "shape"):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def dumps(value: Any, field: str) -> str:
    """Canonical JSON text of ``value``; a value JSON cannot hold raises :class:`InvalidValue` naming ``field``."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(field, f"<{type(value).__name__}: {exc}>"[:120],
                           "JSON values (dict, list, str, int, float, bool, None; numpy scalars/arrays)") from None


def _check_int(field: str, value: Any, allowed: str = "an int in [0, 2**63)") -> int:
    """``value`` as a plain ``int`` in ``[0, 2**63)`` (a SQLite INTEGER; numpy integers accepted, bools refused)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise InvalidValue(field, value, allowed)
    return int(value)


def _check_id(trial_id: Any) -> int:
    return _check_int("trial_id", trial_id)


def _check_state(state: Any) -> str | None:
    if state is None:
        return None
    value = state.value if isinstance(state, TrialState) else state
    if value not in _STATES:
        raise InvalidValue("state", state, _STATES)
    return value


def _check_meta(meta: Mapping[str, Any] | None) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidValue("meta", type(meta).__name__, "a mapping of str keys to JSON values")
    for key in meta:
        if not isinstance(key, str) or not key:
            raise InvalidValue("meta key", key, "a non-empty string")
    return {k: dumps(v, f"meta {k!r}") for k, v in meta.items()}


class TrialStore(ABC):
    """A durable (or in-memory) table of trials plus JSON metadata. Use as a context manager or call ``close``."""

    # ------------------------------------------------------------------------------------ storage primitives
    @abstractmethod
    def _insert(self, row: dict[str, Any]) -> int:
        """Insert ``row`` (all columns but ``id``) atomically with the next dense id; return that id."""

    @abstractmethod
    def _finish(self, trial_id: int, fields: dict[str, Any], meta: dict[str, str]) -> str | None:
        """In ONE atomic write: if trial ``trial_id`` is running, update ``fields`` (which include
        ``finished_at``; ``duration`` is set to ``finished_at - started_at``) and upsert ``meta``.

        Returns the trial's state *before* the write (``"running"`` means done), or ``None`` when there is no
        such trial; in both other cases nothing is written.
        """

    @abstractmethod
    def _rows(self, *, trial_id: int | None = None, state: str | None = None,
              arch_key: str | None = None) -> list[dict[str, Any]]:
        """Rows matching all given filters, ordered by id."""

    @abstractmethod
    def _count(self) -> int:
        """Number of trials."""

    @abstractmethod
    def _get_meta(self, key: str) -> str | None:
        """Stored JSON text of ``key`` or ``None``."""

    @abstractmethod
    def _set_meta(self, items: dict[str, str]) -> None:
        """Upsert JSON texts atomically."""

    @abstractmethod
    def _requeue(self, error: str, now: float) -> list[int]:
        """Atomically mark every running trial failed with ``error``; return their ids."""

    def close(self) -> None:
        """Release resources; the default has none."""

    def __enter__(self) -> "TrialStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ writing
    def create_trial(self, candidate: Candidate, seed: int | None = None) -> Trial:
        """Record a new running trial for ``candidate``; the store assigns its id (0, 1, 2, ...)."""
        if not isinstance(candidate, Candidate):
            raise InvalidValue("candidate", type(candidate).__name__, "a nasforge.trial.Candidate")
        if not isinstance(candidate.arch, Architecture):
            raise InvalidValue("candidate arch", type(candidate.arch).__name__, "a nasforge.Architecture")
        seed = None if seed is None else _check_int("seed", seed, "an int in [0, 2**63) or None")
        parents = [_check_int("parent trial id", p) for p in candidate.parents]
        generation = _check_int("generation", candidate.generation)
        arch = candidate.arch
        row = {"arch_key": arch.key(), "arch_json": arch.to_json(), "arch_str": str(arch),
               "state": TrialState.RUNNING.value, "candidate_info": dumps(candidate.info, "candidate info"),
               "parents": dumps(parents, "parents"), "generation": generation, "seed": seed,
               "started_at": time.time()}
        trial_id = self._insert(row)
        return Trial(id=trial_id, arch=arch, parents=tuple(parents), generation=generation, seed=seed,
                     started_at=row["started_at"], info=json.loads(row["candidate_info"]))

    def _close_trial(self, trial_id: int, fields: dict[str, Any], meta: Mapping[str, Any] | None,
                     target: str) -> None:
        trial_id = _check_id(trial_id)
        encoded_meta = _check_meta(meta)
        now = time.time()
        before = self._finish(trial_id, {**fields, "finished_at": now}, encoded_meta)
        if before is None:
            raise InvalidValue("trial_id", trial_id, f"an existing trial id (0..{len(self) - 1})")
        if before != TrialState.RUNNING.value:
            raise TrialStateError(f"trial {trial_id} state", before,
                                  f"'running' (cannot mark a {before} trial {target}; finished trials are final)")

    def complete_trial(self, trial_id: int, result: Result, *, checkpoint: str | os.PathLike[str] | None = None,
                       checkpoint_sha256: str | None = None, meta: Mapping[str, Any] | None = None) -> None:
        """Store ``result`` for running trial ``trial_id`` and upsert ``meta``, in one transaction.

        ``checkpoint`` is a file path; its SHA-256 is computed (via :mod:`nasforge.io`) unless given.
        Raises :class:`TrialStateError` if the trial is not running (a result is never written twice).
        """
        if not isinstance(result, Result):
            raise InvalidValue("result", type(result).__name__, "a nasforge.trial.Result")
        ckpt, digest = None, None
        if checkpoint is not None:
            ckpt = os.fspath(checkpoint)
            if checkpoint_sha256 is None:
                if not os.path.isfile(ckpt):
                    raise InvalidValue("checkpoint", ckpt, "an existing file (or pass checkpoint_sha256)")
                checkpoint_sha256 = sha256_file(ckpt)
            digest = checkpoint_sha256
        elif checkpoint_sha256 is not None:
            raise InvalidValue("checkpoint_sha256", checkpoint_sha256, "None when no checkpoint path is given")
        if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
            raise InvalidValue("checkpoint_sha256", digest, "a 64-hex-digit SHA-256")
        fields = {"state": TrialState.COMPLETE.value, "metrics": dumps(result.metrics, "result metrics"),
                  "costs": dumps(result.costs, "result costs"),
                  "artifacts": dumps(result.artifacts, "result artifacts"),
                  "info": dumps(result.info, "result info"), "checkpoint": ckpt, "checkpoint_sha256": digest}
        self._close_trial(trial_id, fields, meta, "complete")

    def fail_trial(self, trial_id: int, error: str, *, meta: Mapping[str, Any] | None = None) -> None:
        """Mark running trial ``trial_id`` failed with message ``error`` and upsert ``meta``, in one transaction."""
        if not isinstance(error, str):
            error = repr(error)
        self._close_trial(trial_id, {"state": TrialState.FAILED.value, "error": error}, meta, "failed")

    def set_meta(self, key: str, value: Any) -> None:
        """Store the JSON value ``value`` under ``key`` (replacing any previous value)."""
        self._set_meta(_check_meta({key: value}))

    def requeue_interrupted(self) -> list[Trial]:
        """Fail every trial left ``running`` (by a crash) with error ``"interrupted"``; return them (now failed).

        Call it when a study resumes, before any new trial starts, so the study can evaluate them again.
        """
        return [self.get(i) for i in self._requeue(INTERRUPTED, time.time())]

    # ------------------------------------------------------------------------------------------ reading
    def _decode(self, row: Mapping[str, Any]) -> Trial:
        result = None
        if row["state"] == TrialState.COMPLETE.value:
            result = Result(metrics=json.loads(row["metrics"]), costs=json.loads(row["costs"]),
                            artifacts=json.loads(row["artifacts"]), info=json.loads(row["info"]))
        return Trial(id=row["id"], arch=Architecture.from_json(row["arch_json"], validate=False),
                     state=TrialState(row["state"]), result=result, parents=tuple(json.loads(row["parents"])),
                     generation=row["generation"], seed=row["seed"], started_at=row["started_at"],
                     finished_at=row["finished_at"], error=row["error"], checkpoint=row["checkpoint"],
                     checkpoint_sha256=row["checkpoint_sha256"], info=json.loads(row["candidate_info"] or "{}"))

    def get(self, trial_id: int) -> Trial:
        """The trial with id ``trial_id``."""
        rows = self._rows(trial_id=_check_id(trial_id))
        if not rows:
            raise InvalidValue("trial_id", trial_id, f"an existing trial id (0..{len(self) - 1})")
        return self._decode(rows[0])

    def trials(self, state: TrialState | str | None = None) -> list[Trial]:
        """All trials (or those in ``state``), ordered by id."""
        return [self._decode(r) for r in self._rows(state=_check_state(state))]

    def find(self, arch_or_key: Architecture | str) -> list[Trial]:
        """Every trial of an architecture (given as an :class:`Architecture` or its ``key()``), ordered by id."""
        if isinstance(arch_or_key, Architecture):
            key = arch_or_key.key()
        elif isinstance(arch_or_key, str) and len(arch_or_key) == 16 and all(c in "0123456789abcdef"
                                                                                 for c in arch_or_key):
            key = arch_or_key
        else:
            raise InvalidValue("arch_or_key", arch_or_key, "an Architecture or a 16-hex-digit Architecture.key()")
        return [self._decode(r) for r in self._rows(arch_key=key)]

    def __len__(self) -> int:
        return self._count()

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key`` (a fresh copy), or ``default``."""
        text = self._get_meta(key)
        return default if text is None else json.loads(text)

    def verify_checkpoint(self, trial: Trial | int) -> bool:
        """True when the trial's checkpoint file exists and its SHA-256 equals the recorded one."""
        t = self.get(trial) if isinstance(trial, int) else trial
        if t.checkpoint is None or t.checkpoint_sha256 is None:
            raise InvalidValue(f"trial {t.id} checkpoint", None, "a trial completed with a checkpoint")
        return os.path.isfile(t.checkpoint) and sha256_file(t.checkpoint) == t.checkpoint_sha256

    # ------------------------------------------------------------------------------------------ export
    def to_records(self) -> list[dict[str, Any]]:
        """One flat, JSON-compatible dict per trial: ids, arch (string, key, JSON), state, lineage, timings,
        ``metrics.<name>`` / ``costs.<name>`` columns, artifacts / info / candidate_info as dicts."""
        records = []
        for r in self._rows():
            rec: dict[str, Any] = {"id": r["id"], "state": r["state"], "arch": r["arch_str"], "arch_key": r["arch_key"],
                                   "generation": r["generation"], "parents": json.loads(r["parents"]),
                                   "seed": r["seed"], "started_at": r["started_at"], "finished_at": r["finished_at"],
                                   "duration": r["duration"], "error": r["error"], "checkpoint": r["checkpoint"],
                                   "checkpoint_sha256": r["checkpoint_sha256"]}
            for group in ("metrics", "costs"):
                for name, value in sorted(json.loads(r[group] or "{}").items()):
                    rec[f"{group}.{name}"] = value
            for group in ("artifacts", "info", "candidate_info"):
                rec[group] = json.loads(r[group] or "{}")
            rec["arch_json"] = r["arch_json"]
            records.append(rec)
        return records

    def export_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_records` as CSV (union of columns; lists/dicts as JSON text); returns the path."""
        records = self.to_records()
        columns: dict[str, None] = {}
        for rec in records:
            columns.update(dict.fromkeys(rec))
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns) or ["id"])
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in rec.items()} for rec in records)
        return out


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return dumps(value, "record")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value

