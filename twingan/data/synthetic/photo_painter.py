"""The "photo" style: realistic proportions, soft masks, shading fields, small eyes, sensor noise, graded colours."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from twingan.data.synthetic.drawing import Frame, Point, background, ellipse, mirror, symmetric
from twingan.data.synthetic.palettes import (
    BACKGROUND_COLOURS,
    EYE_COLOURS,
    HAIR_COLOURS,
    SHIRT_COLOURS,
    SKIN_TONES,
    mix,
    photo_grade,
)
from twingan.data.synthetic.params import FaceParams


@dataclass(frozen=True)
class _Layer:
    """A soft mask covering image[rows, cols]."""

    rows: slice
    cols: slice
    alpha: np.ndarray


class PhotoPainter:
    """Realistic proportions, soft masks, shading fields, small eyes, noise, graded colours."""

    CENTRE_Y = 0.53

    def __init__(self, params: FaceParams, canvas: int) -> None:
        self.p = params
        self.canvas = canvas
        self.frame = Frame(canvas, 0.5 + 0.025 * params.yaw, self.CENTRE_Y, params.scale, params.roll)
        self.fx = 0.055 * params.yaw  # features shift toward the side the face turns to
        self.lx, self.ly = self.frame.local_grid()
        self.rng = np.random.default_rng([params.seed, 1])
        self.hair = np.asarray(HAIR_COLOURS[params.hair_colour], dtype=np.float32)
        self.skin = np.asarray(SKIN_TONES[params.skin_tone], dtype=np.float32)
        self.img = background(params, canvas, BACKGROUND_COLOURS[params.background_colour])
        # light from the upper left; a smooth field in [-1, 1]
        self.light = np.clip((-self.lx - self.ly) / 0.35, -1.0, 1.0)

    def mask(self, polygons: Sequence[Sequence[Point]], blur: float) -> _Layer | None:
        shapes = [self.frame.pts(poly) for poly in polygons]
        return self._layer(shapes, 0, blur, lambda draw, pts: draw.polygon(pts, fill=255))

    def stroke(self, lines: Sequence[Sequence[Point]], width: float, blur: float) -> _Layer | None:
        w = max(1, round(self.frame.px(width)))
        shapes = [self.frame.pts(line) for line in lines]
        return self._layer(shapes, w, blur, lambda draw, pts: draw.line(pts, fill=255, width=w, joint="curve"))

    def _layer(self, shapes: list[list[Point]], reach: int, blur: float, draw_one) -> _Layer | None:
        """Draw shapes into a mask cropped to their bounding box (plus blur reach): small features stay cheap."""
        radius = self.frame.px(blur)
        pad = reach + math.ceil(3 * radius) + 2
        xs = [x for pts in shapes for x, _ in pts]
        ys = [y for pts in shapes for _, y in pts]
        x0, y0 = max(0, math.floor(min(xs)) - pad), max(0, math.floor(min(ys)) - pad)
        x1, y1 = min(self.canvas, math.ceil(max(xs)) + pad), min(self.canvas, math.ceil(max(ys)) + pad)
        if x0 >= x1 or y0 >= y1:
            return None
        m = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(m)
        for pts in shapes:
            draw_one(draw, [(x - x0, y - y0) for x, y in pts])
        if radius > 0:
            m = m.filter(ImageFilter.GaussianBlur(radius))
        return _Layer(slice(y0, y1), slice(x0, x1), np.asarray(m, dtype=np.float32) * (1.0 / 255.0))

    def paint_layer(
        self, layer: _Layer | None, colour: Union[np.ndarray, Sequence[float]], opacity: float = 1.0
    ) -> None:
        """Blend ``colour`` (an RGB triple or a full-canvas colour field) over the image through the layer's mask."""
        if layer is None:
            return
        region = self.img[layer.rows, layer.cols]
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim == 3:
            colour = colour[layer.rows, layer.cols]
        region += (layer.alpha * opacity)[..., None] * (colour - region)

    def paint(self, size: int) -> Image.Image:
        self.hair_back()
        self.body()
        self.face()
        self.eyes()
        self.nose_and_mouth()
        self.hair_front()
        if self.p.glasses:
            self.glasses()
        arr = photo_grade(np.clip(self.img, 0, 255))
        small = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB").resize(
            (size, size), Image.LANCZOS
        )
        noisy = np.asarray(small, dtype=np.float32) + self.rng.normal(0.0, 3.0, (size, size, 3)).astype(np.float32)
        return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8), "RGB")

    def hair_field(self, darkness: float = 1.0) -> np.ndarray:
        shade = darkness * (1.0 + 0.12 * self.light)
        return np.clip(shade[..., None] * self.hair, 0, 255)

    def hair_back(self) -> None:
        style = self.p.hair_style
        shapes: list[list[Point]] = []
        if style == "long":
            ends = [(0.3, 0.25), (0.33, 0.52), (-0.33, 0.52), (-0.3, 0.25)]
            shapes.append(ellipse(0, -0.03, 0.27, 0.31, 180, 360, 24) + ends)
        elif style == "bangs":
            shapes.append(ellipse(0, -0.03, 0.26, 0.31, 180, 360, 24) + [(0.27, 0.16), (-0.27, 0.16)])
        elif style == "ponytail":
            shapes.append([(0.12, -0.2), (0.3, -0.12), (0.34, 0.1), (0.3, 0.34), (0.24, 0.4), (0.22, 0.12),
                           (0.16, -0.06)])
        elif style == "twintails":
            for side in (-1, 1):
                tail = [(0.2, -0.14), (0.3, -0.1), (0.36, 0.08), (0.35, 0.3), (0.3, 0.44), (0.25, 0.3), (0.23, 0.06)]
                shapes.append(tail if side > 0 else mirror(tail))
        if shapes:
            self.paint_layer(self.mask(shapes, 0.008), self.hair_field(0.72))

    def body(self) -> None:
        shirt = np.asarray(SHIRT_COLOURS[self.p.shirt_colour], dtype=np.float32)
        shade = 1.0 + 0.1 * self.light - 0.15 * np.clip(self.ly - 0.35, 0, 1)
        shoulders = symmetric([(0.0, 0.31), (0.12, 0.31), (0.38, 0.39), (0.48, 0.5), (0.52, 0.7), (0.0, 0.7)])
        self.paint_layer(self.mask([shoulders], 0.012), np.clip(shade[..., None] * shirt, 0, 255))
        neck = [(-0.09, 0.1), (0.09, 0.1), (0.1, 0.46), (-0.1, 0.46)]
        neck_shade = 0.8 + 0.12 * np.clip((self.ly - 0.26) / 0.15, 0, 1)
        self.paint_layer(self.mask([neck], 0.006), neck_shade[..., None] * self.skin)
        ears = [ellipse(-0.215, 0.0, 0.03, 0.055), ellipse(0.215, 0.0, 0.03, 0.055)]
        self.paint_layer(self.mask(ears, 0.005), self.skin * 0.88)

    def face_outline(self) -> list[Point]:
        points = []
        for a in np.radians(np.linspace(0, 360, 56, endpoint=False)):
            s = math.sin(a)
            narrow = 1.0 - 0.16 * max(0.0, s) ** 2
            points.append((0.215 * math.cos(a) * narrow, 0.29 * s))
        return points

    def face(self) -> None:
        r2 = (self.lx / 0.215) ** 2 + (self.ly / 0.29) ** 2
        shade = 1.02 + 0.07 * self.light - 0.22 * np.clip(r2 - 0.45, 0, 1)
        self.paint_layer(self.mask([self.face_outline()], 0.004), np.clip(shade[..., None] * self.skin, 0, 255))
        fx = self.fx
        sockets = [ellipse(fx + side * 0.09, -0.02, 0.06, 0.035) for side in (-1, 1)]
        self.paint_layer(self.mask(sockets, 0.02), self.skin * 0.8, 0.45)
        cheeks = [ellipse(fx + side * 0.12, 0.09, 0.045, 0.03) for side in (-1, 1)]
        self.paint_layer(self.mask(cheeks, 0.025), mix(self.skin, (210, 110, 110), 0.5), 0.25)

    def eyes(self) -> None:
        eye_colour = np.asarray(EYE_COLOURS[self.p.eye_colour], dtype=np.float32)
        brow_colour = self.hair * 0.6 + np.array([20, 16, 14], dtype=np.float32)
        ey, look = -0.005, 0.008 * self.p.yaw
        centres = [(self.fx + side * 0.09, side) for side in (-1, 1)]
        almonds = [ellipse(ex, ey, 0.045, 0.02, 180, 360, 16) + ellipse(ex, ey, 0.045, 0.015, 0, 180, 16)
                   for ex, _ in centres]
        self.paint_layer(self.mask(almonds, 0.003), (226, 222, 216))
        irises = [ellipse(ex + look, ey, 0.017, 0.017, n=20) for ex, _ in centres]
        self.paint_layer(self.mask(irises, 0.002), eye_colour)
        pupils = [ellipse(ex + look, ey, 0.007, 0.007, n=12) for ex, _ in centres]
        self.paint_layer(self.mask(pupils, 0.001), (20, 16, 16))
        lids = [ellipse(ex, ey, 0.047, 0.021, 185, 355, 12) for ex, _ in centres]
        self.paint_layer(self.stroke(lids, 0.006, 0.003), (60, 40, 34), 0.85)
        brows = [[(ex - side * 0.045, ey - 0.045), (ex, ey - 0.058), (ex + side * 0.05, ey - 0.048)]
                 for ex, side in centres]
        self.paint_layer(self.stroke(brows, 0.012, 0.004), brow_colour, 0.9)

    def nose_and_mouth(self) -> None:
        fx = self.fx
        shadow_side = 1 if self.p.yaw >= 0 else -1
        ridge = [(fx + shadow_side * 0.018, 0.0), (fx + shadow_side * 0.024, 0.07), (fx + shadow_side * 0.02, 0.1)]
        self.paint_layer(self.stroke([ridge], 0.014, 0.01), self.skin * 0.72, 0.6)
        bottom = ellipse(fx, 0.112, 0.032, 0.012)
        self.paint_layer(self.mask([bottom], 0.008), self.skin * 0.7, 0.55)
        nostrils = [ellipse(fx + s * 0.016, 0.108, 0.007, 0.004) for s in (-1, 1)]
        self.paint_layer(self.mask(nostrils, 0.003), self.skin * 0.45, 0.7)
        lip = mix(self.skin, (176, 78, 82), 0.55)
        my = 0.19
        if self.p.mouth == "neutral":
            upper = ellipse(fx, my, 0.048, 0.012, 180, 360, 16)
            lower = ellipse(fx, my, 0.044, 0.016, 0, 180, 16)
            self.paint_layer(self.mask([upper, lower], 0.004), lip)
            self.paint_layer(self.stroke([[(fx - 0.045, my), (fx + 0.045, my)]], 0.005, 0.003), self.skin * 0.4, 0.8)
        elif self.p.mouth == "smile":
            lips = ellipse(fx, my - 0.02, 0.055, 0.035, 20, 160, 16) + ellipse(fx, my - 0.03, 0.06, 0.03, 160, 20, 16)
            self.paint_layer(self.mask([lips], 0.004), lip)
            crease = ellipse(fx, my - 0.025, 0.05, 0.028, 25, 155, 12)
            self.paint_layer(self.stroke([crease], 0.005, 0.003), self.skin * 0.4, 0.8)
        else:
            outer = ellipse(fx, my + 0.005, 0.045, 0.03)
            self.paint_layer(self.mask([outer], 0.004), lip)
            self.paint_layer(self.mask([ellipse(fx, my + 0.006, 0.032, 0.017)], 0.004), (60, 24, 26))
            self.paint_layer(self.mask([ellipse(fx, my - 0.004, 0.026, 0.006)], 0.003), (220, 214, 204), 0.8)

    def hair_front(self) -> None:
        style = self.p.hair_style
        top = ellipse(0, -0.03, 0.245, 0.31, 180, 360, 32)
        side_y = 0.02 if style == "short" else 0.1
        if style == "bangs":
            fringe = [(0.215, side_y), (0.19, -0.07), (0.06, -0.075), (-0.06, -0.075), (-0.19, -0.07), (-0.215, side_y)]
        else:
            part = -0.06 if self.p.seed % 2 else 0.06
            fringe = [(0.215, side_y), (0.19, -0.1), (0.1, -0.15), (part, -0.17), (part * 0.5, -0.13),
                      (-0.08, -0.15), (-0.17, -0.12), (-0.215, side_y)]
        shape = [(-0.245, side_y)] + top + [(0.245, side_y)] + fringe
        field = self.hair_field(1.0)
        # soft strands: lighter and darker streaks from the crown, blurred into the hair field
        strands = Image.new("L", (self.canvas, self.canvas), 128)
        draw = ImageDraw.Draw(strands)
        for _ in range(14):
            x = float(self.rng.uniform(-0.2, 0.2))
            line = [(x * 0.3, -0.33), (x * 0.8, -0.25), (x, -0.12)]
            tone = int(self.rng.choice([96, 160]))
            draw.line(self.frame.pts(line), fill=tone, width=max(1, round(self.frame.px(0.01))))
        strands = strands.filter(ImageFilter.GaussianBlur(self.frame.px(0.006)))
        texture = (np.asarray(strands, dtype=np.float32) - 128.0) * (0.35 / 128.0)
        field = np.clip(field * (1.0 + texture[..., None]), 0, 255)
        self.paint_layer(self.mask([shape], 0.006), field)
        if style in ("twintails", "ponytail"):
            sides = (1,) if style == "ponytail" else (-1, 1)
            ties = [ellipse(side * 0.26, -0.1, 0.02, 0.02) for side in sides]
            self.paint_layer(self.mask(ties, 0.003), (200, 40, 60))

    def glasses(self) -> None:
        rims = [ellipse(self.fx + side * 0.09, -0.005, 0.06, 0.04) for side in (-1, 1)]
        bridge = [(self.fx - 0.03, -0.01), (self.fx, -0.02), (self.fx + 0.03, -0.01)]
        self.paint_layer(self.stroke(rims + [bridge], 0.008, 0.002), (36, 34, 34), 0.9)
