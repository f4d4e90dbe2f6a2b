"""``nasforge search`` and ``nasforge runs``: run, resume, inspect and export searches.

``nasforge search CONFIG.yaml [--set key=value ...] [--out RUN_DIR]`` runs the search a YAML config describes
(``configs/*.yaml``); ``nasforge search --resume RUN_DIR`` continues an interrupted or crashed one;
``--executor local|pool|ray --workers N --address ...`` choose where trials run.
``nasforge runs show RUN_DIR`` lists the trials (``--format json`` for the full records) and
``nasforge runs export RUN_DIR --csv out.csv`` writes them as CSV.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import InvalidValue
from .base import command, emit

__all__ = ["cmd_search", "cmd_runs", "open_run"]


def _search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML search config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set budget=50 --set strategy.params.sample_size=5")
    p.add_argument("--out", help="run folder (default: the config's 'out', else runs/<name>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the search stored in RUN_DIR")
    p.add_argument("--executor", choices=["local", "pool", "ray"], help="where trials run (default: the config's)")
    p.add_argument("--workers", type=int, help="parallel trials for the pool / ray executors")
    p.add_argument("--address", help="ray cluster: local (start one), auto (join this machine's) or a URL")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _executor_overrides(args: argparse.Namespace) -> list[str]:
    out = list(args.overrides)
    for flag, key in (("executor", "executor.kind"), ("workers", "executor.workers"), ("address", "executor.address")):
        value = getattr(args, flag)
        if value is not None:
            out.append(f"{key}={value}")
    if args.no_progress:
        out.append("progress=false")
    return out


@command("search", help="run (or resume) an architecture search from a YAML config")
def cmd_search(args: argparse.Namespace) -> int:
    """Run the architecture search described by a YAML config (configs/*.yaml), or resume one.

    The run folder gets trials.sqlite, config.yaml (resolved), best.json, pareto.json (multi-objective
    strategies) and report.html with PNG plots. Ctrl-C stops cleanly; continue with --resume RUN_DIR.
    """
    from ..config import load_config
    from ..study import Study, build_study

    overrides = _executor_overrides(args)
    if args.resume and args.config:
        raise InvalidValue("search", f"{args.config} with --resume {args.resume}",
                           "either CONFIG (a new search) or --resume RUN_DIR (its stored config is used)")
    if args.resume:
        study = Study.resume(args.resume, overrides=overrides)
    elif args.config:
        config = load_config(args.config, overrides)
        out = args.out or config.out or f"runs/{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        study = build_study(config, out)
    else:
        raise InvalidValue("search", None, "a CONFIG.yaml argument or --resume RUN_DIR")
    with study:
        try:
            study.run()
        except KeyboardInterrupt:
            print(f"nasforge: search stopped; continue it with: nasforge search --resume {study.run_dir}",
                  file=sys.stderr)
            raise
        summary = study.summary()
    best = summary.get("best") or {}
    if summary["n_finished"] and summary["n_finished"] == summary["n_failed"]:
        emit(args, {"run_dir": str(study.run_dir), "trials": summary["n_finished"], "failed": summary["n_failed"]})
        print(f"nasforge: error: every trial failed; see the errors with: nasforge runs show {study.run_dir}",
              file=sys.stderr)
        return 1
    row: dict[str, Any] = {"run_dir": str(study.run_dir), "trials": summary["n_finished"],
                           "failed": summary["n_failed"], f"best {summary['metric']}": best.get("value")}
    row.update({f"best {k}": v for k, v in (best.get("metrics") or {}).items() if k != summary["metric"]})
    row.update({"best trial": best.get("trial_id"), "best arch": best.get("arch")})
    emit(args, row)
    return 0


cmd_search.configure = _search_options  # type: ignore[attr-defined]


def open_run(run_dir: str | Path) -> Any:
    """The :class:`~nasforge.store.SQLiteStore` of a run folder (or of a ``.sqlite`` file); never creates one."""
    from ..store import SQLiteStore
    from ..study import STORE_NAME

    path = Path(run_dir)
    db = path / STORE_NAME if path.is_dir() else path
    if not db.is_file():
        raise InvalidValue("RUN_DIR", str(run_dir), f"a run folder holding {STORE_NAME} (written by nasforge search)")
    return SQLiteStore(db)


def _runs_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "export"], help="show: list trials; export: write them as CSV")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (or its trials.sqlite)")
    p.add_argument("--csv", metavar="PATH", help="export: the CSV file to write")
    p.add_argument("--top", type=int, default=None, help="show: only the N best complete trials")
    p.add_argument("--metric", default=None, help="show: the metric or cost shown and sorted by with --top (default: "
                                                 "the run's metric); one the run's trials report")


def _known_names(records: list[dict[str, Any]], study: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """``(metric names, cost names)`` the run's trials report, plus the study's own metric."""
    metrics = {k.split(".", 1)[1] for rec in records for k in rec if k.startswith("metrics.")}
    costs = {k.split(".", 1)[1] for rec in records for k in rec if k.startswith("costs.")}
    if study.get("metric") and study["metric"] not in costs:
        metrics.add(study["metric"])
    return metrics, costs


def _show_rows(store: Any, metric: str, mode: str, top: int | None,
               study: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The table of ``runs show``: one row per trial; ``metric`` must be a metric or cost of the run (else a
    one-line :class:`InvalidValue` listing them). With ``top``: the best by ``metric`` (the run's ``mode`` for a
    metric, smallest first for a cost that is not the run's metric)."""
    records = store.to_records()
    metrics, costs = _known_names(records, study or {})
    if metric not in metrics | costs:
        raise InvalidValue("--metric", metric, sorted(metrics | costs) or "a metric of a complete trial (none yet)")
    if metric in costs and metric not in metrics and metric != (study or {}).get("metric"):
        mode = "min"
    group = "metrics" if metric in metrics else "costs"
    rows = []
    for rec in records:
        row = {"id": rec["id"], "state": rec["state"], metric: rec.get(f"{group}.{metric}"),
               "gen": rec["generation"]}
        row.update({k.split(".", 1)[1]: v for k, v in rec.items() if k.startswith("costs.")})
        row["seconds"] = None if rec["duration"] is None else round(rec["duration"], 2)
        row["arch"] = rec["arch"] if rec["state"] != "failed" else f"{rec['arch']}  [{rec['error']}]"
        rows.append(row)
    if top is not None:
        if top < 1:
            raise InvalidValue("--top", top, "a positive int")
        scored = [r for r in rows if isinstance(r.get(metric), (int, float))]
        rows = sorted(scored, key=lambda r: r[metric], reverse=mode == "max")[:top]
    return rows


@command("runs", help="inspect a search: 'runs show RUN_DIR', 'runs export RUN_DIR --csv out.csv'")
def cmd_runs(args: argparse.Namespace) -> int:
    """Inspect the trials of a run folder.

      nasforge runs show RUN_DIR [--top N] [--metric NAME] [--format json]
      nasforge runs export RUN_DIR --csv trials.csv
    """
    with open_run(args.run_dir) as store:
        study = store.get_meta("study", {}) or {}
        metric, mode = args.metric or study.get("metric", "accuracy"), study.get("mode", "max")
        if args.action == "export":
            if not args.csv:
                raise InvalidValue("--csv", None, "the CSV path to write (runs export RUN_DIR --csv out.csv)")
            path = store.export_csv(args.csv)
            emit(args, {"exported": len(store), "csv": str(path)})
            return 0
        if args.format == "json":
            if args.metric is not None:  # checked here too, although the JSON holds every metric
                _show_rows(store, metric, mode, None, study)
            emit(args, {"study": study, "trials": store.to_records()})
            return 0
        emit(args, _show_rows(store, metric, mode, args.top, study))
    return 0


cmd_runs.configure = _runs_options  # type: ignore[attr-defined]
