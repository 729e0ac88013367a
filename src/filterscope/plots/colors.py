"""The widgets' colour scales, for the static figures: one Python copy of the page's constants.

The stops are those of ``js/src/canvas.ts`` (viridis), ``js/src/validation.ts`` (class accuracy,
correct and wrong image cells), ``js/src/cube.ts`` (correlation blues) and ``js/src/layer.ts``
(horizon and change-ratio bands); ``tests/test_plots.py`` reads those files and checks every
constant here against them, so a figure in a report is coloured as the widget colours it.
Palettes are built the way the page builds its 256-step lookup tables: ``colorScale``
(stops evenly spaced) and ``piecewiseScale`` (stops at given positions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ACCURACY_PALETTE",
    "ACCURACY_STOPS",
    "BAND_COLORS",
    "BLUE_PALETTE",
    "BLUE_STOPS",
    "CORRECT_COLOR",
    "HORIZON_NEGATIVE",
    "HORIZON_POSITIVE",
    "VIRIDIS_PALETTE",
    "VIRIDIS_STOPS",
    "WRONG_COLOR",
    "even_palette",
    "piecewise_palette",
]

#: Viridis stops of the page's heat maps and pixel charts (``canvas.ts``, ``VIRIDIS``).
VIRIDIS_STOPS: tuple[str, ...] = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
#: DeepTracker's class-accuracy scale (``validation.ts`` and ``cube.ts``, ``ACCURACY_STOPS``):
#: red at 0, pale yellow at 0.5, light green at 0.52, dark green at 1.
ACCURACY_STOPS: tuple[tuple[float, str], ...] = (
    (0.0, "#dd261c"),
    (0.5, "#ffffbf"),
    (0.52, "#d9ef8b"),
    (1.0, "#0e9247"),
)
#: An image cell where the image is classified correctly / wrongly (``validation.ts``).
CORRECT_COLOR = "#b6eb9d"
WRONG_COLOR = "#e88984"
#: Sequential blues of the cube's correlation face, light to dark (``cube.ts``, ``BLUE_STOPS``).
BLUE_STOPS: tuple[str, ...] = (
    "#c6dbef",
    "#9ecae1",
    "#6baed6",
    "#4292c6",
    "#2171b5",
    "#08519c",
    "#08306b",
)
#: Horizon-graph bands, lowest first, for positive and negative values (``layer.ts``).
HORIZON_POSITIVE: tuple[str, ...] = ("#9ecae1", "#4292c6", "#08519c")
HORIZON_NEGATIVE: tuple[str, ...] = ("#fcae91", "#fb6a4a", "#a50f15")
#: Change-ratio bands, one per threshold from the largest (``layer.ts``, ``BAND_COLORS``).
BAND_COLORS: tuple[str, ...] = ("#c7e9c0", "#74c476", "#31a354", "#006d2c")


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)


def _hex(rgb: np.ndarray) -> str:
    # Math.round of the page: halves go up (numpy rounds them to even).
    r, g, b = (int(np.floor(v + 0.5)) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def piecewise_palette(stops: Sequence[tuple[float, str]], steps: int = 256) -> tuple[str, ...]:
    """``steps`` colours over 0..1 through stops at the given positions (the page's
    ``piecewiseScale``): colour ``i`` is the stops' linear blend at ``i / (steps - 1)``.

    Examples
    --------
    >>> piecewise_palette([(0.0, "#000000"), (1.0, "#ffffff")], steps=3)
    ('#000000', '#808080', '#ffffff')
    """
    positions = np.array([p for p, _ in stops], dtype=np.float64)
    colors = np.array([_rgb(c) for _, c in stops])
    out = []
    for i in range(steps):
        t = 0.0 if steps == 1 else i / (steps - 1)
        k = 0
        while k < len(stops) - 2 and t > positions[k + 1]:
            k += 1
        k1 = min(k + 1, len(stops) - 1)
        p0, p1 = positions[k], positions[k1]
        f = min(max((t - p0) / (p1 - p0), 0.0), 1.0) if p1 > p0 else 0.0
        out.append(_hex(colors[k] + (colors[k1] - colors[k]) * f))
    return tuple(out)


def even_palette(stops: Sequence[str], steps: int = 256) -> tuple[str, ...]:
    """``steps`` colours through evenly spaced stops (the page's ``colorScale``).

    Examples
    --------
    >>> even_palette(["#000000", "#ffffff"], steps=2)
    ('#000000', '#ffffff')
    """
    n = len(stops)
    return piecewise_palette([(i / max(n - 1, 1), c) for i, c in enumerate(stops)], steps)


#: The 256-step palettes the page's lookup tables hold.
ACCURACY_PALETTE = piecewise_palette(ACCURACY_STOPS)
VIRIDIS_PALETTE = even_palette(VIRIDIS_STOPS)
BLUE_PALETTE = even_palette(BLUE_STOPS)
