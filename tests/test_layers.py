"""The package's shape is a contract (README, "Architecture"): import-linter's contracts in pyproject.toml (layers,
independent method pipelines, acyclic siblings) hold, and the whole import graph (function-level and
TYPE_CHECKING imports included) has no cycle."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]


def import_cycles(package: str = "nasforge") -> list[list[str]]:
    """The strongly connected components of more than one module of ``package``'s import graph (grimp)."""
    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    rows, cols = [], []
    for m in modules:
        for imported in graph.find_modules_directly_imported_by(m):
            rows.append(index[m])
            cols.append(index[imported])
    adjacency = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(modules), len(modules)))
    _, labels = connected_components(adjacency, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for m, label in zip(modules, labels):
        groups.setdefault(int(label), []).append(m)
    return [g for g in groups.values() if len(g) > 1]


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    cmd = [str(lint)] if lint.is_file() else [sys.executable, "-m", "importlinter.cli"]
    proc = subprocess.run(cmd + ["--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report[-3000:]
    assert "0 broken" in report and "Layers: nothing imports upward KEPT" in report


def test_no_import_cycles_anywhere_in_the_package():
    assert import_cycles() == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a  # a function-level import still counts\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclepkg") == [["cyclepkg.a", "cyclepkg.b"]]


@pytest.mark.parametrize("module", ["nasforge"])
def test_import_nasforge_stays_light(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
