"""``nasforge search`` / ``nasforge runs`` end to end through the CLI entry point."""
from __future__ import annotations

import csv
import json

import pytest

from nasforge.cli import main
from nasforge.store import SQLiteStore
from nasforge.trial import TrialState

CONFIG = """\
name: cli-test
space: nb201
strategy: {name: regularized-evolution, params: {population_size: 5, sample_size: 2}}
evaluator: {kind: tabular, dataset: cifar10, protocol: hp200-test}
budget: 12
seed: 4
report: false
"""


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(CONFIG)
    return path


def test_search_show_export_and_resume_with_a_larger_budget(tmp_path, config, capsys):
    run = tmp_path / "run"
    assert main(["search", str(config), "--out", str(run), "--no-progress", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == 12 and summary["failed"] == 0 and summary["run_dir"] == str(run)
    best = json.loads((run / "best.json").read_text())["best"]
    assert summary["best arch"] == best["arch"] and summary["best accuracy"] == pytest.approx(best["value"])

    assert main(["runs", "show", str(run), "--top", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "state", "accuracy"] and len(table) == 2 + 3
    assert table[2].split()[0] == str(best["trial_id"])  # best first

    assert main(["runs", "show", str(run), "--top", "2", "--metric", "flops"]) == 0
    table = capsys.readouterr().out.splitlines()  # a cost: smallest first
    with SQLiteStore(run / "trials.sqlite") as store:
        cheapest = sorted((t.result.costs["flops"], t.id) for t in store.trials())[:2]
    assert table[0].split()[:3] == ["id", "state", "flops"] and len(table) == 2 + 2
    assert [int(line.split()[0]) for line in table[2:]] == [tid for _, tid in cheapest]
    for fmt in ("table", "json"):
        assert main(["runs", "show", str(run), "--metric", "acuracy", "--format", fmt]) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("nasforge: error: --metric: got 'acuracy'; allowed: 'accuracy', 'flops', 'params', "
                       "'test_accuracy'")

    assert main(["runs", "show", str(run), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["trials"]) == 12 and shown["study"]["seed"] == 4

    out_csv = tmp_path / "trials.csv"
    assert main(["runs", "export", str(run), "--csv", str(out_csv)]) == 0
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == list(range(12)) and all(r["state"] == "complete" for r in rows)
    assert float(rows[best["trial_id"]]["metrics.accuracy"]) == pytest.approx(best["value"])
    capsys.readouterr()

    assert main(["search", "--resume", str(run), "--set", "budget=20", "--no-progress"]) == 0
    with SQLiteStore(run / "trials.sqlite") as store:
        trials = store.trials()
    assert len(trials) == 20 and all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.arch.key() for t in trials}) == 20


def test_executor_flags_become_config_overrides(tmp_path, config, capsys):
    run = tmp_path / "pool"
    argv = ["search", str(config), "--out", str(run), "--no-progress", "--executor", "local", "--workers", "3",
            "--address", "auto", "--set", "budget=4", "--set", "strategy=random"]
    assert main(argv) == 0
    text = (run / "config.yaml").read_text()
    assert "kind: local" in text and "workers: 3" in text and "address: auto" in text
    assert "budget: 4" in text and "name: random" in text


@pytest.mark.parametrize("argv, needle", [
    (["search", "{config}", "--set", "strategy.params.sample_size=0"], "sample_size"),
    (["search", "{config}", "--set", "budgett=3"], "budgett: got 3; allowed: no such field"),
    (["search", "{tmp}/missing.yaml"], "does not exist"),
    (["search"], "a CONFIG.yaml argument or --resume RUN_DIR"),
    (["search", "{config}", "--resume", "{tmp}"], "either CONFIG"),
    (["search", "--resume", "{tmp}/nothing"], "a run folder holding config.yaml"),
    (["runs", "show", "{tmp}/nothing"], "RUN_DIR: got"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, config, capsys, argv, needle):
    argv = [a.format(config=config, tmp=tmp_path) for a in argv]
    assert main([*argv, "--no-progress"] if argv[0] == "search" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasforge: error: ") and needle in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "nothing").exists()  # inspecting never creates a database


def test_runs_export_needs_a_csv_path(tmp_path, config, capsys):
    run = tmp_path / "r"
    assert main(["search", str(config), "--out", str(run), "--no-progress", "--set", "budget=3"]) == 0
    capsys.readouterr()
    assert main(["runs", "export", str(run)]) == 2
    assert "--csv" in capsys.readouterr().err
