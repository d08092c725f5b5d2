"""Charts drawn on the server as inline SVG: nothing to load, nothing to run (the UI loads nothing from
outside, and the page's Content-Security-Policy allows no inline style: only SVG presentation attributes).

Readable without colour: every fill is also a pattern (solid, hatched, dotted, lined…) named in the legend,
every bar carries its number as text, and every bar has a ``<title>`` ("SI: 2 answered within 8 h") that
screen readers and tooltips read. The chart as a whole is ``role="img"`` labelled by its ``<title>`` and
``<desc>``; the table behind it is the page's (``<details>`` "Show table"), never only the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

__all__ = ["FILLS", "Bar", "column_chart", "grouped_bars", "stacked_bars"]

WIDTH: Final = 720
FONT: Final = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class _Fill:
    background: str
    ink: str
    shape: str  # solid | hatch | cross | dots | hlines | vlines | open | backhatch

    def pattern(self, pid: str) -> str:
        bg = f'<rect width="8" height="8" fill="{self.background}"/>'
        marks = {
            "hatch": f'<path d="M-2 2l4-4M0 8l8-8M6 10l4-4" stroke="{self.ink}" stroke-width="1.6"/>',
            "backhatch": f'<path d="M-2 6l4 4M0 0l8 8M6 -2l4 4" stroke="{self.ink}" stroke-width="1.6"/>',
            "cross": f'<path d="M0 0l8 8M8 0l-8 8" stroke="{self.ink}" stroke-width="1.2"/>',
            "dots": f'<circle cx="4" cy="4" r="1.7" fill="{self.ink}"/>',
            "hlines": f'<path d="M0 4h8" stroke="{self.ink}" stroke-width="1.6"/>',
            "vlines": f'<path d="M4 0v8" stroke="{self.ink}" stroke-width="1.6"/>',
        }.get(self.shape, "")
        return f'<pattern id="{pid}" width="8" height="8" patternUnits="userSpaceOnUse">{bg}{marks}</pattern>'

    def paint(self, pid: str) -> str:
        if self.shape == "solid":
            return self.background
        if self.shape == "open":
            return "#ffffff"
        return f"url(#{pid})"


FILLS: Final[dict[str, tuple[str, _Fill]]] = {
    # key: (how the legend names the pattern, the fill)
    "received": ("solid", _Fill("#0b4f8a", "#0b4f8a", "solid")),
    "sent": ("hatched", _Fill("#dbe7f3", "#0b4f8a", "hatch")),
    "within_8h": ("solid", _Fill("#1d6b32", "#1d6b32", "solid")),
    "within_3d": ("dotted", _Fill("#cfe8d5", "#1d6b32", "dots")),
    "within_7d": ("lined across", _Fill("#eef7f0", "#1d6b32", "hlines")),
    "on_time_extended": ("lined up", _Fill("#ffffff", "#1d6b32", "vlines")),
    "late": ("cross-hatched", _Fill("#f6d5d6", "#a4161a", "cross")),
    "refused": ("back-hatched", _Fill("#e6e8eb", "#1b1f24", "backhatch")),
    "paused": ("dotted", _Fill("#fff1cc", "#8a5a00", "dots")),
    "open": ("blank", _Fill("#ffffff", "#1b1f24", "open")),
    "overdue": ("solid dark", _Fill("#7a1013", "#7a1013", "solid")),
    "median": ("solid", _Fill("#0b4f8a", "#0b4f8a", "solid")),
    "p90": ("hatched", _Fill("#dbe7f3", "#0b4f8a", "hatch")),
    "count": ("solid", _Fill("#56606b", "#56606b", "solid")),
}


def _defs(chart_id: str, keys: Sequence[str]) -> str:
    patterns = "".join(FILLS[k][1].pattern(f"{chart_id}-{k}") for k in dict.fromkeys(keys))
    return f"<defs>{patterns}</defs>"


def _paint(chart_id: str, key: str) -> str:
    return FILLS[key][1].paint(f"{chart_id}-{key}")


def _frame(chart_id: str, title: str, description: str, height: int, body: str) -> Markup:
    return Markup(  # noqa: S704 - every text in ``body`` was escaped where it was put in
        f'<svg class="chart" id="{chart_id}" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
        f"{body}</svg>"
    )


def _legend(chart_id: str, items: Sequence[tuple[str, str]], y: int) -> str:
    """One row of swatches with their names (and the pattern's name, for those who cannot tell colours)."""
    out, x = [], 0
    for key, text in items:
        name = f"{text} ({FILLS[key][0]})"
        out.append(
            f'<g class="legend-item"><rect x="{x}" y="{y}" width="16" height="12" fill="{_paint(chart_id, key)}" '
            f'stroke="#1b1f24" stroke-width="0.8"/><text x="{x + 21}" y="{y + 10}" {FONT}>{escape(name)}</text></g>'
        )
        x += 26 + int(len(name) * 6.4)
    return "".join(out)


def _nice(top: int) -> int:
    """A round upper bound of an axis (at least 1)."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if top <= step * 4:
            return step * 4 if top > 0 else 4
    return top


def column_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
) -> Markup:
    """Vertical bars, one group per category (a month, a week) and one bar per series ``(key, label, values)``,
    each with its number above it."""
    left, top_pad, plot_h, bottom = 44, 34, 190, 44
    height = top_pad + plot_h + bottom
    top = _nice(max((v for _, _, values in series for v in values), default=0))
    group = (WIDTH - left - 8) / max(1, len(categories))
    bar = max(1.0, min(22.0, (group - 6) / max(1, len(series))))  # never narrower than a line, never negative
    parts = [_defs(chart_id, [k for k, _, _ in series]), _legend(chart_id, [(k, t) for k, t, _ in series], 4)]
    for i in range(5):  # grid lines and their values
        value = top * i // 4
        y = top_pad + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d5dae0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT} fill="#56606b">{value}</text>'
        )
    for ci, category in enumerate(categories):
        x0 = left + ci * group + (group - bar * len(series)) / 2
        for si, (key, label, values) in enumerate(series):
            value = values[ci]
            h = plot_h * value / top
            x, y = x0 + si * bar, top_pad + plot_h - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 2, 0.5):.1f}" height="{h:.1f}" '
                f'fill="{_paint(chart_id, key)}" stroke="#1b1f24" stroke-width="0.6">'
                f"<title>{escape(f'{category}: {value} {label.lower()}')}</title></rect>"
            )
            if value:
                parts.append(
                    f'<text x="{x + (bar - 2) / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" {FONT}>{value}</text>'
                )
        parts.append(
            f'<text x="{left + ci * group + group / 2:.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" '
            f"{FONT}>{escape(category)}</text>"
        )
    return _frame(chart_id, title, description, height, "".join(parts))


def stacked_bars(
    *,
    chart_id: str,
    title: str,
    description: str,
    rows: Sequence[tuple[str, dict[str, int]]],
    buckets: Sequence[tuple[str, str]],
) -> Markup:
    """One horizontal bar per row (a counterpart), split into ``buckets`` ``(key, label)``; each part shows
    its number where it fits and names itself in its ``<title>``; the bar's total is written at its end."""
    left, row_h, top_pad = 70, 30, 52
    shown = [(k, t) for k, t in buckets if any(counts.get(k, 0) for _, counts in rows)]
    height = top_pad + row_h * max(1, len(rows)) + 10
    most = max((sum(c.values()) for _, c in rows), default=0) or 1
    span = WIDTH - left - 50
    parts = [_defs(chart_id, [k for k, _ in shown])]
    half = (len(shown) + 1) // 2
    parts.append(_legend(chart_id, shown[:half], 4))
    parts.append(_legend(chart_id, shown[half:], 24))
    for ri, (name, counts) in enumerate(rows):
        y = top_pad + ri * row_h
        x = float(left)
        parts.append(
            f'<text x="{left - 8}" y="{y + 17}" text-anchor="end" {FONT} font-weight="600">{escape(name)}</text>'
        )
        for key, label in shown:
            n = counts.get(key, 0)
            if not n:
                continue
            w = span * n / most
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="20" fill="{_paint(chart_id, key)}" '
                f'stroke="#1b1f24" stroke-width="0.8"><title>{escape(f"{name}: {n} {label}")}</title></rect>'
            )
            if w >= 20:
                cx = x + w / 2
                parts.append(
                    f'<rect x="{cx - 9:.1f}" y="{y + 7}" width="18" height="14" rx="2" fill="#ffffff" opacity="0.9"/>'
                    f'<text x="{cx:.1f}" y="{y + 18}" text-anchor="middle" {FONT}>{n}</text>'
                )
            x += w
        parts.append(
            f'<text x="{x + 6:.1f}" y="{y + 18}" {FONT} fill="#56606b">{sum(counts.values())}</text>'
        )
    if not rows:
        parts.append(
            f'<text x="{left}" y="{top_pad + 17}" {FONT} fill="#56606b">No requests in this period.</text>'
        )
    return _frame(chart_id, title, description, height, "".join(parts))


@dataclass(frozen=True)
class Bar:
    key: str  # the fill
    label: str  # what it measures, for the title ("median")
    value: float
    text: str  # how its value is written ("4 d 0 h")


def grouped_bars(
    *,
    chart_id: str,
    title: str,
    description: str,
    rows: Sequence[tuple[str, Sequence[Bar]]],
    legend: Sequence[tuple[str, str]] = (),
) -> Markup:
    """Horizontal bars, one group per row, each bar with its value written after it."""
    longest = max((len(name) for name, _ in rows), default=0)
    left, top_pad = min(320, max(60, 14 + int(longest * 7.2))), 28 if legend else 6
    per = max((len(bars) for _, bars in rows), default=1)
    row_h = 16 * per + 10
    height = top_pad + row_h * max(1, len(rows)) + 6
    most = max((b.value for _, bars in rows for b in bars), default=0) or 1
    span = WIDTH - left - 110
    parts = [_defs(chart_id, [b.key for _, bars in rows for b in bars] + [k for k, _ in legend])]
    if legend:
        parts.append(_legend(chart_id, legend, 4))
    for ri, (name, bars) in enumerate(rows):
        y0 = top_pad + ri * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y0 + 8 * per + 4}" text-anchor="end" {FONT} font-weight="600">'
            f"{escape(name)}</text>"
        )
        for bi, b in enumerate(bars):
            y = y0 + bi * 16
            w = max(1.0, span * b.value / most)
            parts.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="13" fill="{_paint(chart_id, b.key)}" '
                f'stroke="#1b1f24" stroke-width="0.6"><title>{escape(f"{name}: {b.label} {b.text}")}</title></rect>'
                f'<text x="{left + w + 6:.1f}" y="{y + 11}" {FONT}>{escape(b.text)}</text>'
            )
    if not rows:
        parts.append(
            f'<text x="{left}" y="{top_pad + 12}" {FONT} fill="#56606b">Nothing in this period.</text>'
        )
    return _frame(chart_id, title, description, height, "".join(parts))
