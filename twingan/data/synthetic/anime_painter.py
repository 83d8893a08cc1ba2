"""The "anime" style: big cranium, pointed chin, tall eyes, cel colours with one shadow tone, dark line art."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from twingan.data.synthetic.drawing import Frame, Point, background, ellipse, mirror, spikes, symmetric
from twingan.data.synthetic.palettes import (
    ANIME_SKIN,
    BACKGROUND_COLOURS,
    EYE_COLOURS,
    RGB,
    SHIRT_COLOURS,
    anime_hair,
    mix,
    saturate,
    scale_rgb,
)
from twingan.data.synthetic.params import FaceParams


class AnimePainter:
    """Big cranium, pointed chin, tall eyes, cel colours with one shadow tone, dark line art."""

    CENTRE_Y = 0.5

    def __init__(self, params: FaceParams, canvas: int) -> None:
        self.p = params
        self.canvas = canvas
        self.frame = Frame(canvas, 0.5 + 0.025 * params.yaw, self.CENTRE_Y, params.scale, params.roll)
        self.fx = 0.06 * params.yaw
        self.rng = np.random.default_rng([params.seed, 2])
        self.hair = anime_hair(params.hair_colour)
        self.hair_shadow = scale_rgb(self.hair, 0.7)
        self.hair_line = scale_rgb(self.hair, 0.3)
        self.skin = ANIME_SKIN[params.skin_tone]
        self.skin_shadow = mix(scale_rgb(self.skin, 0.86), (230, 120, 130), 0.15)
        self.line = (52, 30, 34)
        self.line_w = max(1, round(self.frame.px(0.009)))
        bg = background(params, canvas, saturate(BACKGROUND_COLOURS[params.background_colour], 1.35, 6.0))
        self.img = Image.fromarray(np.round(bg).astype(np.uint8), "RGB")
        self.draw = ImageDraw.Draw(self.img)

    def shape(self, points: Sequence[Point], fill: Sequence[int], outline: Sequence[int] | None = None,
              width: float | None = None) -> None:
        pts = self.frame.pts(points)
        self.draw.polygon(pts, fill=tuple(fill))
        if outline is not None:
            w = self.line_w if width is None else max(1, round(self.frame.px(width)))
            self.draw.line(pts + [pts[0]], fill=tuple(outline), width=w, joint="curve")

    def line_(self, points: Sequence[Point], colour: Sequence[int], width: float) -> None:
        width_px = max(1, round(self.frame.px(width)))
        self.draw.line(self.frame.pts(points), fill=tuple(colour), width=width_px, joint="curve")

    def paint(self, size: int) -> Image.Image:
        self.hair_back()
        self.body()
        self.face()
        self.eyes()
        self.nose_and_mouth()
        self.hair_front()
        if self.p.glasses:
            self.glasses()
        return self.img.resize((size, size), Image.LANCZOS)

    def hair_back(self) -> None:
        style = self.p.hair_style
        shapes: list[list[Point]] = []
        if style == "long":
            ends = spikes(-0.34, 0.34, 0.5, 0.58, 5, self.rng)
            shapes.append(ellipse(0, -0.06, 0.3, 0.3, 180, 360, 24) + [(0.34, 0.25)] + ends + [(-0.34, 0.25)])
        elif style == "bangs":
            ends = [(0.29, 0.22), (-0.29, 0.22)]
            shapes.append(ellipse(0, -0.06, 0.3, 0.3, 180, 360, 24) + ends)
        elif style == "ponytail":
            shapes.append([(0.1, -0.3), (0.34, -0.26), (0.44, -0.06), (0.42, 0.2), (0.36, 0.4), (0.33, 0.22),
                           (0.3, 0.3), (0.3, 0.06), (0.2, -0.12)])
        elif style == "twintails":
            for side in (-1, 1):
                tail = [(0.2, -0.22), (0.36, -0.2), (0.44, 0.0), (0.43, 0.26), (0.38, 0.48), (0.35, 0.32),
                        (0.31, 0.44), (0.3, 0.2), (0.27, -0.02)]
                shapes.append(tail if side > 0 else mirror(tail))
        for s in shapes:
            self.shape(s, self.hair_shadow, self.hair_line)

    def body(self) -> None:
        shirt = saturate(SHIRT_COLOURS[self.p.shirt_colour], 1.3, 6.0)
        shoulders = symmetric([(0.0, 0.37), (0.1, 0.37), (0.34, 0.42), (0.44, 0.52), (0.48, 0.7), (0.0, 0.7)])
        self.shape(shoulders, shirt, self.line)
        neck = [(-0.065, 0.2), (0.065, 0.2), (0.07, 0.4), (0, 0.46), (-0.07, 0.4)]
        self.shape(neck, self.skin, self.line)
        self.shape([(-0.066, 0.24), (0, 0.32), (0.066, 0.24), (0.066, 0.2), (-0.066, 0.2)], self.skin_shadow)
        for side in (-1, 1):
            self.shape(ellipse(side * 0.245, 0.07, 0.035, 0.05), self.skin, self.line)

    def face_outline(self) -> list[Point]:
        cranium = ellipse(0, -0.05, 0.255, 0.27, 180, 360, 28)
        jaw_right = [(0.252, 0.06), (0.235, 0.16), (0.17, 0.26), (0.06, 0.33), (0.0, 0.345)]
        jaw_left = [(-x, y) for x, y in reversed(jaw_right[:-1])]
        return cranium + jaw_right + jaw_left

    def face(self) -> None:
        self.shape(self.face_outline(), self.skin, self.line)
        # hard shadow under the fringe, clipped to the face
        shadow = Image.new("L", (self.canvas, self.canvas), 0)
        ImageDraw.Draw(shadow).polygon(self.frame.pts(self.fringe(0.045)), fill=255)
        face = Image.new("L", (self.canvas, self.canvas), 0)
        ImageDraw.Draw(face).polygon(self.frame.pts(self.face_outline()), fill=255)
        shadow = ImageChops.darker(shadow, face)
        self.img.paste(self.skin_shadow, (0, 0), shadow)
        blush = mix(self.skin, (245, 120, 130), 0.35)
        for side in (-1, 1):
            self.shape(ellipse(self.fx + side * 0.14, 0.16, 0.04, 0.018), blush)

    def eyes(self) -> None:
        iris_colour = saturate(EYE_COLOURS[self.p.eye_colour], 1.4, 10.0)
        iris_dark = scale_rgb(iris_colour, 0.55)
        look = 0.01 * self.p.yaw
        for side in (-1, 1):
            ex, ey = self.fx + side * 0.115, 0.065
            self.shape(ellipse(ex, ey, 0.066, 0.08), (252, 252, 255))
            ix, iy = ex + look, ey + 0.008
            self.shape(ellipse(ix, iy, 0.046, 0.066), iris_colour, self.line, 0.006)
            self.shape(ellipse(ix, iy, 0.046, 0.066, 195, 345, 16), iris_dark)
            self.shape(ellipse(ix, iy + 0.005, 0.02, 0.032), (24, 16, 24))
            self.shape(ellipse(ix - 0.016, iy - 0.024, 0.015, 0.017), (255, 255, 255))
            self.shape(ellipse(ix + 0.018, iy + 0.03, 0.007, 0.007), (255, 255, 255))
            upper = ellipse(ex, ey, 0.072, 0.085, 195, 345, 18)
            outer_x = ex + side * 0.085
            lash = upper + [(outer_x, ey - 0.035)] + [(x, y + 0.018) for x, y in reversed(upper)]
            if side < 0:
                lash = upper + [(x, y + 0.018) for x, y in reversed(upper)] + [(outer_x, ey - 0.035)]
            self.shape(lash, (30, 20, 26))
            self.line_(ellipse(ex, ey, 0.06, 0.08, 60, 120, 8), self.line, 0.007)
            brow = [(ex - side * 0.05, ey - 0.105), (ex + side * 0.005, ey - 0.12), (ex + side * 0.06, ey - 0.11)]
            self.line_(brow, self.hair_line, 0.009)

    def nose_and_mouth(self) -> None:
        fx = self.fx
        self.line_([(fx + 0.008, 0.165), (fx + 0.002, 0.18)], self.line, 0.007)
        my = 0.255
        if self.p.mouth == "neutral":
            self.line_([(fx - 0.028, my), (fx + 0.028, my)], self.line, 0.008)
        elif self.p.mouth == "smile":
            self.line_(ellipse(fx, my - 0.025, 0.04, 0.03, 30, 150, 10), self.line, 0.009)
        else:
            mouth = [(fx - 0.04, my - 0.01)] + ellipse(fx, my - 0.01, 0.04, 0.05, 0, 180, 14)
            self.shape(mouth, (150, 40, 50), self.line, 0.008)
            self.shape(ellipse(fx, my + 0.025, 0.022, 0.012), (236, 120, 128))

    def fringe(self, drop: float = 0.0) -> list[Point]:
        """The front hair: the cap over the cranium with a spiky (or straight-cut) lower edge."""
        style = self.p.hair_style
        top = ellipse(0, -0.06, 0.285, 0.3, 180, 360, 32)
        side_y = 0.1 if style == "short" else 0.24
        side_r = [(0.285, -0.06), (0.29, side_y), (0.245, side_y - 0.1), (0.22, -0.06)]
        side_l = [(-0.22, -0.06), (-0.245, side_y - 0.1), (-0.29, side_y), (-0.285, -0.06)]
        if style == "bangs":
            edge = [(0.2, -0.02), (0.1, -0.02), (0.08, -0.04), (0.06, -0.02), (-0.06, -0.02), (-0.08, -0.04),
                    (-0.1, -0.02), (-0.2, -0.02)]
        else:
            edge = spikes(-0.22, 0.22, -0.13, -0.01, 4, np.random.default_rng([self.p.seed, 3]))
        shape = top + side_r + edge + side_l
        return [(x, y + drop) for x, y in shape]

    def hair_front(self) -> None:
        self.shape(self.fringe(), self.hair, self.hair_line)
        rng = np.random.default_rng([self.p.seed, 4])
        for x in (-0.16, -0.08, 0.0, 0.08, 0.16):
            x_end = x + float(rng.uniform(-0.02, 0.02))
            self.line_([(x * 0.3, -0.33), (x * 0.8, -0.24), (x_end, -0.15)], self.hair_line, 0.005)
        highlight = self.hair_highlight()
        for side in (-1, 1):
            band = [(side * 0.1, -0.165), (side * 0.2, -0.14), (side * 0.21, -0.125), (side * 0.11, -0.145)]
            self.shape(band, highlight)
        if self.p.hair_style == "twintails":
            for side in (-1, 1):
                self.shape(ellipse(side * 0.3, -0.19, 0.03, 0.03), (240, 60, 90), self.line, 0.006)
        elif self.p.hair_style == "ponytail":
            self.shape(ellipse(0.28, -0.24, 0.03, 0.03), (240, 60, 90), self.line, 0.006)

    def hair_highlight(self) -> RGB:
        return mix(self.hair, (255, 255, 255), 0.45)

    def glasses(self) -> None:
        for side in (-1, 1):
            rim = ellipse(self.fx + side * 0.115, 0.065, 0.085, 0.075)
            pts = self.frame.pts(rim)
            self.draw.line(pts + [pts[0]], fill=(40, 30, 60), width=max(1, round(self.frame.px(0.012))), joint="curve")
        self.line_([(self.fx - 0.03, 0.05), (self.fx + 0.03, 0.05)], (40, 30, 60), 0.012)
