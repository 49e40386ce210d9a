"""Small charts written as SVG text: a horizontal bar chart costs microseconds and no
plotting library, so an integration can draw one on the background worker without
taking the training thread's interpreter lock for long (matplotlib's import and a
render hold it for about a second). The MLflow UI and W&B show SVG artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

_ROW = 22
_LABEL_WIDTH = 220
_BAR_WIDTH = 420
_VALUE_WIDTH = 90
_TOP = 44
_BOTTOM = 34


def bar_chart_svg(values: Mapping[str, float], title: str, axis_label: str = "") -> str:
    """A horizontal bar chart of ``values`` (label -> value, drawn top-down in the order
    given; negative values drawn as zero-length bars), as an SVG document."""
    rows = [(str(label), float(value)) for label, value in values.items()]
    largest = max((value for _, value in rows if value > 0), default=1.0)
    width = _LABEL_WIDTH + _BAR_WIDTH + _VALUE_WIDTH
    height = _TOP + _ROW * max(len(rows), 1) + _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.0f}" y="24" text-anchor="middle" font-size="14" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    for index, (label, value) in enumerate(rows):
        y = _TOP + index * _ROW
        bar = _BAR_WIDTH * max(value, 0.0) / largest if largest else 0.0
        shown = label if len(label) <= 32 else label[:31] + "…"
        parts.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
        )
        parts.append(
            f'<rect x="{_LABEL_WIDTH}" y="{y + 3}" width="{bar:.1f}" height="{_ROW - 6}" '
            'fill="#4c72b0"/>'
        )
        parts.append(f'<text x="{_LABEL_WIDTH + bar + 6:.1f}" y="{y + 15}">{value:.4g}</text>')
    if axis_label:
        parts.append(
            f'<text x="{_LABEL_WIDTH + _BAR_WIDTH / 2:.0f}" y="{height - 10}" '
            f'text-anchor="middle">{escape(axis_label)}</text>'
        )
    parts.append("</svg>\n")
    return "\n".join(parts)


__all__ = ["bar_chart_svg"]
