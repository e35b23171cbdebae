"""Sparklines as inline SVG drawn on the server: no script, no chart library,
nothing fetched. A few hundred bytes each."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from agent.web.i18n import _, digits

WIDTH, HEIGHT = 120, 28


def sparkline_svg(values: Sequence[float], label: str = "", width: int = WIDTH,
                  height: int = HEIGHT) -> str:
    """A polyline of ``values`` (oldest first), min and max in the title; '' when
    there are fewer than two finite values."""
    pts = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if len(pts) < 2:
        return ""
    lo, hi = min(pts), max(pts)
    span = (hi - lo) or 1.0
    step = width / (len(pts) - 1)
    coords = " ".join(
        f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}"
        for i, v in enumerate(pts)
    )
    title = escape(_("{label}: {low} to {high} in 24 h").format(
        label=label, low=digits(f"{lo:.4g}"), high=digits(f"{hi:.4g}")), quote=True)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{title}"><title>{title}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{coords}"/>'
        "</svg>"
    )
