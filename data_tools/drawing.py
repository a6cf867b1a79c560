"""Drawing the synthetic shapes (shared by ``visgrpo-data synth``'s task families).

Six shapes in six colours on a plain canvas, drawn with PIL; ``place`` finds centres and
radii of non-overlapping objects, ``draw_shape`` draws one, ``shape_box`` gives its tight
pixel box and mask.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220),
    "yellow": (230, 200, 20), "purple": (140, 60, 180), "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")


def outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon of ``shape`` centred at (cx, cy) with outer radius r (None: circle)."""
    if shape == "circle":
        return None
    if shape == "square":
        a = r * 0.8
        return [(cx - a, cy - a), (cx + a, cy - a), (cx + a, cy + a), (cx - a, cy + a)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)]
    if shape == "triangle":
        return [(cx + r * np.cos(t), cy + r * np.sin(t)) for t in np.radians([-90, 30, 150])]
    if shape == "star":
        ang = np.radians(np.arange(10) * 36 - 90)
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        return list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang), strict=True))
    if shape == "cross":
        a, b = r * 0.32, r
        pts = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b)]
        pts += [(-x, y) for x, y in reversed(pts)]
        return [(cx + x, cy + y) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def draw_shape(draw: ImageDraw.ImageDraw, shape, cx, cy, r, fill) -> None:
    poly = outline(shape, cx, cy, r)
    if poly is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(poly, fill=fill)


def place(n: int, size: int, rng: np.random.Generator, tries: int = 200, radius: tuple[float, float] = (0.07, 0.12)):
    """Centres and radii of ``n`` non-overlapping objects inside the canvas (or None);
    radii uniform in ``radius`` x ``size``.
    """
    out: list[tuple[float, float, float]] = []
    for _ in range(tries * n):
        r = float(rng.uniform(*radius) * size)
        cx, cy = (float(v) for v in rng.uniform(r + 2, size - r - 2, size=2))
        if all((cx - x) ** 2 + (cy - y) ** 2 > (r + q + 4) ** 2 for x, y, q in out):
            out.append((cx, cy, r))
            if len(out) == n:
                return out
    return None


def shape_box(shape: str, cx: float, cy: float, r: float, size: int) -> tuple[list[float], np.ndarray]:
    """Tight pixel box (xyxy) and the binary mask [size, size] (uint8) of one drawn shape."""
    m = Image.new("L", (size, size), 0)
    draw_shape(ImageDraw.Draw(m), shape, cx, cy, r, 1)
    a = np.asarray(m, np.uint8)
    ys, xs = np.nonzero(a)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)], a
