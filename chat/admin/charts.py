"""Small SVG charts drawn on the server, so the admin needs no chart library and no CDN.

Labels come from the database (usernames, model names) and are escaped by ``format_html``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

Format = Callable[[float], str]
BAR = "#417690"
MUTED = "#999"


def _svg(width: int, height: int, title: str, body: str) -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{title}" '
        'width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11" '
        'fill="currentColor"><title>{title}</title>{body}</svg>',
        title=title,
        w=width,
        h=height,
        body=mark_safe(body),
    )


def _n(value: float) -> str:
    # format_html escapes its arguments into strings, so numbers are formatted first.
    return f"{value:.1f}"


def _rect(x: float, y: float, width: float, height: float, tip: str) -> SafeString:
    return format_html(
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
        _n(x),
        _n(y),
        _n(width),
        _n(height),
        BAR,
        tip,
    )


def _text(x: float, y: float, text: str, anchor: str = "start") -> SafeString:
    return format_html('<text x="{}" y="{}" text-anchor="{}">{}</text>', _n(x), _n(y), anchor, text)


def column_chart(
    points: Sequence[tuple[str, float]], *, title: str, fmt: Format, width: int = 760, height: int = 240
) -> SafeString:
    """Vertical bars, one per point in order (days, typically), with a labelled y axis."""
    left, right, top, bottom = 72, 8, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((value for _, value in points), default=0)
    parts = [_y_axis(left, top, plot_w, plot_h, peak, fmt)]
    if not points or peak <= 0:
        parts.append(_text(left + plot_w / 2, top + plot_h / 2, "No usage in this range", "middle"))
        return _svg(width, height, title, "".join(parts))
    step = plot_w / len(points)
    # About a dozen labels fit under the axis; bars without one keep their tooltip.
    every = max(1, round(len(points) / 12))
    for index, (label, value) in enumerate(points):
        bar_h = plot_h * value / peak
        x = left + index * step
        parts.append(_rect(x + step * 0.1, top + plot_h - bar_h, step * 0.8, bar_h, f"{label}: {fmt(value)}"))
        if index % every == 0:
            parts.append(_text(x + step / 2, top + plot_h + 16, label, "middle"))
    return _svg(width, height, title, "".join(parts))


def _y_axis(left: int, top: int, plot_w: int, plot_h: int, peak: float, fmt: Format) -> str:
    fractions = [0.0] if peak <= 0 else [0.0, 0.5, 1.0]
    lines = []
    for fraction in fractions:
        y = top + plot_h * (1 - fraction)
        lines.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="0.5"/>',
                left,
                left + plot_w,
                _n(y),
                _n(y),
                MUTED,
            )
        )
        lines.append(_text(left - 6, y + 4, fmt(peak * fraction), "end"))
    return "".join(lines)


def bar_chart(rows: Sequence[tuple[str, float]], *, title: str, fmt: Format, width: int = 760) -> SafeString:
    """Horizontal bars, one per row in the order given; for people and models."""
    label_w, value_w, row_h, top = 180, 90, 22, 4
    height = top * 2 + max(1, len(rows)) * row_h
    peak = max((value for _, value in rows), default=0)
    if peak <= 0:
        return _svg(
            width, height, title, _text(width / 2, height / 2 + 4, "No usage in this range", "middle")
        )
    plot_w = width - label_w - value_w
    parts = []
    for index, (label, value) in enumerate(rows):
        y = top + index * row_h
        bar_w = plot_w * value / peak
        short = label if len(label) <= 28 else f"{label[:27]}…"
        parts.append(_text(label_w - 8, y + 15, short, "end"))
        parts.append(_rect(label_w, y + 4, bar_w, row_h - 8, f"{label}: {fmt(value)}"))
        parts.append(_text(label_w + bar_w + 6, y + 15, fmt(value)))
    return _svg(width, height, title, "".join(parts))
