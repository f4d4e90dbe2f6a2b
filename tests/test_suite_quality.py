"""The suite guards itself against tests that cannot fail (issue 16): no test may check only that values lie in
their natural range, have some type, or that any(...) element of a collection behaves (tests/weak_asserts.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _sweep_module():
    spec = importlib.util.spec_from_file_location("weak_asserts", HERE / "weak_asserts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_test_checks_only_ranges_types_or_any():
    weak_only, _ = _sweep_module().sweep(HERE)
    assert weak_only == [], "tests whose every assertion is weak (strengthen or delete):\n" + "\n".join(weak_only)


def test_the_sweep_recognises_weak_and_strong_assertions(tmp_path):
    sweep = _sweep_module()
    folder = tmp_path / "tests"
    folder.mkdir()
    (folder / "test_x.py").write_text(
        "def test_range():\n    assert 0 <= acc() <= 100\n    assert len(xs) > 0\n"
        "def test_type():\n    assert isinstance(r, dict) and any(x for x in r)\n"
        "def test_value():\n    assert 0 <= acc() <= 100\n    assert acc() >= 25.0\n"
        "def test_raises():\n    assert x is not None\n    with pytest.raises(ValueError):\n        f()\n")
    weak_only, weak = sweep.sweep(folder)
    assert [w.split()[-1] for w in weak_only] == ["test_range", "test_type"]
    assert len(weak) == 5
