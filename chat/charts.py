"""Small SVG charts drawn on the server, so the admin needs no chart library and no CDN.

Labels come from the database (usernames, model names) and are escaped by ``format_html``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

Format = Callable[[float], str]
BAR = "#417690"
MUTED = "#999"


def _svg(width: int, height: int, title: str, body: str) -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{}" '
        'width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif" font-size="11" '
        'fill="currentColor"><title>{}</title>{}</svg>',
        title, width, height, width, height, title, mark_safe(body),
    )  # fmt: skip


def column_chart(
    points: Sequence[tuple[str, float]], *, title: str, fmt: Format, width: int = 760, height: int = 240
) -> SafeString:
    """Vertical bars, one per point in order (days, typically), with a labelled y axis."""
    left, right, top, bottom = 72, 8, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((value for _, value in points), default=0)
    parts = [_y_axis(left, top, plot_w, plot_h, peak, fmt)]
    if not points or peak <= 0:
        parts.append(_empty(left + plot_w / 2, top + plot_h / 2))
        return _svg(width, height, title, "".join(parts))
    step = plot_w / len(points)
    every = max(1, round(len(points) / 12))
    for index, (label, value) in enumerate(points):
        bar_h = plot_h * value / peak
        x = left + index * step
        parts.append(
            format_html(
                '<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"><title>{}: {}</title></rect>',
                x + step * 0.1, top + plot_h - bar_h, step * 0.8, bar_h, BAR, label, fmt(value),
            )  # fmt: skip
        )
        if index % every == 0:
            parts.append(
                format_html(
                    '<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>',
                    x + step / 2, top + plot_h + 16, label,
                )  # fmt: skip
            )
    return _svg(width, height, title, "".join(parts))


def _y_axis(left: int, top: int, plot_w: int, plot_h: int, peak: float, fmt: Format) -> str:
    ticks = [(0.0, 0.0)] if peak <= 0 else [(fraction, peak * fraction) for fraction in (0.0, 0.5, 1.0)]
    return format_html_join(
        "",
        '<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="0.5"/>'
        '<text x="{}" y="{:.1f}" text-anchor="end">{}</text>',
        (
            (left, left + plot_w, y, y, MUTED, left - 6, y + 4, fmt(value))
            for fraction, value in ticks
            for y in [top + plot_h * (1 - fraction)]
        ),
    )


def _empty(x: float, y: float) -> SafeString:
    return format_html('<text x="{:.1f}" y="{:.1f}" text-anchor="middle">No usage in this range</text>', x, y)


def bar_chart(rows: Sequence[tuple[str, float]], *, title: str, fmt: Format, width: int = 760) -> SafeString:
    """Horizontal bars, one per row, largest first as given; for people and models."""
    label_w, value_w, row_h, top = 180, 90, 22, 4
    height = top * 2 + max(1, len(rows)) * row_h
    peak = max((value for _, value in rows), default=0)
    if peak <= 0:
        return _svg(width, height, title, _empty(width / 2, height / 2 + 4))
    plot_w = width - label_w - value_w
    parts = []
    for index, (label, value) in enumerate(rows):
        y = top + index * row_h
        short = label if len(label) <= 28 else f"{label[:27]}…"
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{:.1f}" height="{}" fill="{}"><title>{}: {}</title></rect>'
                '<text x="{:.1f}" y="{}">{}</text>',
                label_w - 8, y + 15, short,
                label_w, y + 4, plot_w * value / peak, row_h - 8, BAR, label, fmt(value),
                label_w + plot_w * value / peak + 6, y + 15, fmt(value),
            )  # fmt: skip
        )
    return _svg(width, height, title, "".join(parts))
