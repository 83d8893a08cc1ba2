"""What both painters share: the head-local frame that applies the pose, outline helpers, the background."""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from twingan.data.synthetic.params import FaceParams

Point = tuple[float, float]


def ellipse(
    cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 360.0, n: int = 40
) -> list[Point]:
    """Points on an ellipse from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    angles = np.radians(np.linspace(a0, a1, n))
    return list(zip((cx + rx * np.cos(angles)).tolist(), (cy + ry * np.sin(angles)).tolist()))


def mirror(points: Sequence[Point]) -> list[Point]:
    return [(-x, y) for x, y in points]


def symmetric(right_half: Sequence[Point]) -> list[Point]:
    """A left-right symmetric outline from its right half (listed from the centre line round to the centre line)."""
    return list(right_half) + mirror(right_half[::-1])


class Frame:
    """Maps head-local coordinates (origin at the head centre, y down, unit = canvas side at scale 1)
    to canvas pixels, applying the pose: position, scale and roll."""

    def __init__(self, canvas: int, cx: float, cy: float, scale: float, roll_deg: float) -> None:
        self.canvas = canvas
        self.cx, self.cy, self.scale = cx, cy, scale
        rad = math.radians(roll_deg)
        self.cos, self.sin = math.cos(rad), math.sin(rad)

    def pts(self, points: Sequence[Point]) -> list[Point]:
        xy = np.asarray(points, dtype=np.float64)
        k = self.scale * self.canvas
        px = self.cx * self.canvas + (xy[:, 0] * self.cos - xy[:, 1] * self.sin) * k
        py = self.cy * self.canvas + (xy[:, 0] * self.sin + xy[:, 1] * self.cos) * k
        return list(zip(px.tolist(), py.tolist()))

    def px(self, length: float) -> float:
        return length * self.scale * self.canvas

    def local_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Head-local coordinates of every canvas pixel centre (for shading fields)."""
        gx, gy = pixel_grid(self.canvas)
        dx, dy = gx - self.cx, gy - self.cy
        inv = 1.0 / self.scale
        return (dx * self.cos + dy * self.sin) * inv, (-dx * self.sin + dy * self.cos) * inv


@functools.lru_cache(maxsize=4)
def pixel_grid(canvas: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(canvas, dtype=np.float32) + 0.5) / canvas
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    return gx, gy


def spikes(x0: float, x1: float, base_y: float, tip_y: float, count: int, rng: np.random.Generator) -> list[Point]:
    """A zigzag edge from x1 to x0: roots at base_y, tips hanging down to about tip_y."""
    points: list[Point] = []
    xs = np.linspace(x1, x0, 2 * count + 1)
    for i, x in enumerate(xs):
        if i % 2 == 0:
            points.append((float(x), base_y + float(rng.uniform(-0.01, 0.01))))
        else:
            points.append((float(x + rng.uniform(-0.012, 0.012)), tip_y + float(rng.uniform(-0.025, 0.015))))
    return points


def background(params: FaceParams, canvas: int, colour: Sequence[float]) -> np.ndarray:
    """(canvas, canvas, 3) float32 background: flat, vertical gradient or radial vignette."""
    base = np.asarray(colour, dtype=np.float32)
    if params.background_type == "flat":
        return np.broadcast_to(base, (canvas, canvas, 3)).copy()
    gx, gy = pixel_grid(canvas)
    if params.background_type == "gradient":
        column = (1.12 - 0.3 * gy[:, :1])[..., None] * base
        return np.clip(np.broadcast_to(column, (canvas, canvas, 3)), 0, 255)
    shade = 1.1 - 0.45 * np.sqrt((gx - 0.5) ** 2 + (gy - 0.45) ** 2)
    return np.clip(shade[..., None] * base, 0, 255)

