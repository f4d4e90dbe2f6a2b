"""A self-contained ``report.html`` for a run: summary, best trial, plots (embedded as base64 PNG), top trials,
Pareto front and failures. No JavaScript, no external files: the page can be mailed or archived as is."""
from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..trial import Trial, TrialState

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left} th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em;word-break:break-all} .plots img{max-width:49%;border:1px solid #eee;margin:2px}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            text = html.escape(_fmt(v))
            cells.append(f"<td{cls}><code>{text}</code></td>" if c == "arch" else f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _trial_row(t: Trial, metric: str, costs: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": t.id, metric: t.metric(metric), "generation": t.generation, "arch": str(t.arch)}
    for c in costs:
        row[c] = t.metric(c)
    if t.started_at is not None and t.finished_at is not None:
        row["seconds"] = round(t.finished_at - t.started_at, 3)
    return row


def render_html(trials: Sequence[Trial], *, metric: str, mode: str, images: Sequence[Path],
                summary: Mapping[str, Any], pareto: Mapping[str, Any] | None = None, title: str = "nasforge search",
                top: int = 15) -> str:
    """The report page as a string (``images`` are embedded)."""
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.metric(metric) is not None]
    complete.sort(key=lambda t: float(t.metric(metric)), reverse=mode == "max")
    costs = sorted({c for t in complete if t.result for c in t.result.costs})
    extra = sorted({m for t in complete if t.result for m in t.result.metrics} - {metric})
    failed = [t for t in trials if t.state is TrialState.FAILED]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>Generated {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))} by nasforge.</p>",
             "<h2>Summary</h2>", _table([dict(summary)], list(summary))]
    best = complete[0] if complete else None
    if best is not None and best.result is not None:
        row = {"trial": best.id, "arch": str(best.arch), **best.result.metrics, **best.result.costs}
        parts += ["<h2>Best architecture</h2>", _table([row], list(row))]
    if images:
        parts += ["<h2>Plots</h2><div class='plots'>", *(_image(p) for p in images), "</div>"]
    if pareto and pareto.get("front"):
        cols = list(pareto["front"][0])
        parts += [f"<h2>Pareto front ({html.escape(str(pareto.get('metric')))} vs "
                  f"{html.escape(str(pareto.get('cost')))})</h2>", _table(pareto["front"], cols)]
    cols = ["id", metric, *extra, *costs, "generation", "seconds", "arch"]
    rows = [{**_trial_row(t, metric, costs), **{m: t.metric(m) for m in extra}} for t in complete[:top]]
    parts += [f"<h2>Top {min(top, len(complete))} of {len(complete)} complete trials</h2>", _table(rows, cols)]
    parts += [f"<h2>Failed trials ({len(failed)})</h2>",
              _table([{"id": t.id, "error": t.error, "arch": str(t.arch)} for t in failed], ["id", "error", "arch"])]
    parts.append("</body></html>")
    return "\n".join(parts)
