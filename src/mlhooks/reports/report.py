"""A self-contained HTML report comparing runs (``mlhooks compare --html``).

One file, no network: the runs, the params that differ, each metric's final and best
value, and each metric's curves as SVG images embedded as data URIs. Every string that
comes from a run (names, ids, params, metric keys) is HTML-escaped, and a Content
Security Policy forbids scripts, so a run named ``<script>...`` stays text.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlhooks.backends.base import Backend
from mlhooks.reports.compare import compare_runs, plot_metric, require, select_runs

MAX_CURVES = 20

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.best { font-weight: 600; color: #1a7f37; }
figure { margin: 1rem 0; } figcaption { color: #59636e; }
footer { margin-top: 3rem; color: #59636e; font-size: .85rem; }
code { background: #f6f8fa; padding: 0 .25rem; }
"""


def e(value: Any) -> str:
    """``value`` as escaped HTML text."""
    return html.escape("" if value is None else str(value), quote=True)


def write_report(
    runs: Any,
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    backend: str | Backend | None = None,
    experiment: str | None = None,
    title: str | None = None,
    goals: Mapping[str, str] | None = None,
) -> Path:
    """Write the comparison of ``runs`` (as :func:`mlhooks.compare_runs` takes them)
    to ``path`` as one HTML file; returns the path."""
    frame = select_runs(runs, backend=backend, experiment=experiment)
    table = compare_runs(frame, metrics=metrics, backend=backend, goals=goals)
    keys = [c[: -len(" (final)")] for c in table.columns if c.endswith(" (final)")]
    curves = [(key, _svg(frame, key, backend)) for key in keys[:MAX_CURVES]]
    page = render(table, curves, title or f"Comparison of {len(table)} runs", goals)
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    return target


def _svg(frame: Any, key: str, backend: str | Backend | None) -> str | None:
    try:
        figure = plot_metric(frame, key, backend=backend)
    except ValueError:
        return None  # no points to draw
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render(
    table: Any,
    curves: Sequence[tuple[str, str | None]],
    title: str,
    goals: Mapping[str, str] | None = None,
) -> str:
    """The report page for a :func:`compare_runs` table and base64 SVG curves."""
    from mlhooks.reports.compare import lower_is_better

    require("pandas")
    names = [_run_name(row) for _, row in table.iterrows()]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<h2>Runs</h2>",
        _runs_table(table, names),
        "<h2>Params that differ</h2>",
        _params_table(table, names),
        "<h2>Metrics</h2>",
        _metrics_table(table, names, curves, goals, lower_is_better),
    ]
    if curves:
        parts.append("<h2>Curves</h2>")
    for key, svg in curves:
        if svg is None:
            continue
        parts.append(
            f'<figure><img src="data:image/svg+xml;base64,{svg}" width="700" '
            f'alt="{e(key)} against step"><figcaption>{e(key)} against step</figcaption>'
            "</figure>"
        )
    from mlhooks.core.version import VERSION as __version__

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Written by mlhooks {e(__version__)} on {e(stamp)}.</footer>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _run_name(row: Any) -> str:
    name = row.get("run_name")
    return str(name) if isinstance(name, str) and name else str(row.get("run_id"))


def _runs_table(table: Any, names: list[str]) -> str:
    rows = ["<table><tr><th>run</th><th>id</th><th>status</th><th>duration</th></tr>"]
    for name, (_, row) in zip(names, table.iterrows(), strict=True):
        rows.append(
            f"<tr><td>{e(name)}</td><td><code>{e(row.get('run_id'))}</code></td>"
            f"<td>{e(row.get('status'))}</td>"
            f'<td class="num">{e(_seconds(row.get("duration_s")))}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def _params_table(table: Any, names: list[str]) -> str:
    columns = [c for c in table.columns if c.startswith("params.")]
    if not columns:
        return "<p>None: every run has the same params.</p>"
    head = "".join(f"<th>{e(name)}</th>" for name in names)
    rows = [f"<table><tr><th>param</th>{head}</tr>"]
    for column in columns:
        cells = "".join(f"<td>{e(_text(v))}</td>" for v in table[column])
        rows.append(f"<tr><th>{e(column[len('params.') :])}</th>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _metrics_table(
    table: Any,
    names: list[str],
    curves: Sequence[tuple[str, str | None]],
    goals: Mapping[str, str] | None,
    lower_is_better: Any,
) -> str:
    keys = [c[: -len(" (final)")] for c in table.columns if c.endswith(" (final)")]
    if not keys:
        return "<p>No metrics.</p>"
    head = "".join(f"<th>{e(name)}</th>" for name in names)
    rows = [f"<table><tr><th>metric</th><th></th>{head}</tr>"]
    for key in keys:
        goal = "lowest" if lower_is_better(key, goals) else "highest"
        for kind in ("final", "best"):
            values = list(table[f"{key} ({kind})"])
            winner = _winner(values, goal == "lowest")
            cells = "".join(
                f'<td class="num{" best" if i == winner else ""}">{e(_number(v))}</td>'
                for i, v in enumerate(values)
            )
            label = f"{kind} ({goal} is best)" if kind == "best" else kind
            rows.append(f"<tr><th>{e(key)}</th><td>{e(label)}</td>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _winner(values: list[Any], lowest: bool) -> int | None:
    present = [(v, i) for i, v in enumerate(values) if _is_number(v)]
    if len(present) < 2:
        return None
    return (min(present) if lowest else max(present))[1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _number(value: Any) -> str:
    return f"{value:.6g}" if _is_number(value) else "-"


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if _is_number(value) else "-"


def _text(value: Any) -> str:
    return "-" if value is None or value != value else str(value)
