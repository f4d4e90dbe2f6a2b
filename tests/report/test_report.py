"""Report plots and the self-contained HTML page."""
from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from PIL import Image

from nasforge import get_space
from nasforge.report import best_so_far, pareto_indices, pick_cost, plot_best_so_far, render_html, write_report
from nasforge.store import MemoryStore
from nasforge.trial import Candidate, Result

SPACE = get_space("nb201")


def test_pareto_indices_on_a_hand_made_front():
    values = np.array([90.0, 92.0, 91.0, 95.0, 94.0, 95.0])
    costs = np.array([10.0, 20.0, 30.0, 40.0, 15.0, 50.0])
    # (91, 30) is dominated by (94, 15); (95, 50) by (95, 40); (92, 20) by (94, 15)
    assert pareto_indices(values, costs, "max").tolist() == [0, 4, 3]
    assert pareto_indices(-values, costs, "min").tolist() == [0, 4, 3]
    assert pareto_indices(np.array([]), np.array([]), "max").tolist() == []


@pytest.fixture()
def store() -> MemoryStore:
    """12 trials: 9 complete over 3 generations, one failed (with markup in its error), two running."""
    rng = np.random.default_rng(0)
    s = MemoryStore()
    for i in range(12):
        arch = SPACE.sample(rng)
        t = s.create_trial(Candidate(arch, generation=i // 4), seed=i)
        if i == 5:
            s.fail_trial(t.id, "error: ValueError: <script>alert(1)</script>")
        elif i < 10:
            s.complete_trial(t.id, Result({"accuracy": 80.0 + i}, costs={"flops": 1e6 * (i + 1), "params": 10.0 * i}))
    return s


def test_write_report_makes_pngs_and_a_self_contained_page(tmp_path, store):
    paths = write_report(tmp_path, store, metric="accuracy", mode="max", title="demo <run>")
    for key in ("plot_best", "plot_cost", "plot_generations"):
        with Image.open(paths[key]) as im:
            assert im.format == "PNG" and im.size[0] > 300
    page = paths["report"].read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="best_so_far.png"' not in page
    for blob in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page):
        assert base64.b64decode(blob)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script>" not in page and "&lt;script&gt;" in page  # the error text is escaped
    assert "demo &lt;run&gt;" in page
    best = max((t for t in store.trials() if t.result), key=lambda t: t.result.metrics["accuracy"])
    assert str(best.arch) in page and "Failed trials (1)" in page
    assert "Top 9 of 9 complete trials" in page


def test_cost_choice_and_empty_runs(tmp_path):
    empty = MemoryStore()
    assert pick_cost(empty.trials()) is None
    paths = write_report(tmp_path, empty)
    assert set(paths) == {"plot_best", "report"} and "(none)" in paths["report"].read_text()
    page = render_html([], metric="accuracy", mode="max", images=[], summary={"trials": 0})
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_best_so_far_curve_and_cost_choice(tmp_path, store):
    assert best_so_far(np.array([3.0, 1.0, 4.0, 1.0, 5.0]), "max").tolist() == [3, 3, 4, 4, 5]
    assert best_so_far(np.array([3.0, 1.0, 4.0, 0.5]), "min").tolist() == [3, 1, 1, 0.5]
    path = plot_best_so_far(store.trials(), "accuracy", "min", tmp_path / "b.png")
    assert path.is_file() and path.stat().st_size > 1000
    assert pick_cost(store.trials(), "latency_ms") == "flops" and pick_cost(store.trials(), "params") == "params"
