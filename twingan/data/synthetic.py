"""Built-in synthetic two-domain faces: one set of face parameters, two drawing styles.

:func:`render` draws a :class:`FaceParams` either as a "photo" (realistic
proportions, soft shading, small eyes, sensor noise, subdued colours) or as an
"anime" face (big cranium, tall eyes with highlights, pointed chin, flat cel
colours with one hard shadow tone, dark line art, spiky hair). The identity
traits (hair colour and style, eye colour, skin tone, mouth, pose, background,
clothes, glasses) are the same in both, while shapes and shading differ, so a
translation model has to learn a real mapping, not a colour shift.

:func:`generate_dataset` writes unpaired training folders and a paired test
set whose parameters are saved, so translation and cross-domain search can be
scored against ground truth (:func:`load_test_params`, :func:`hair_colour_of`),
and the training folders carry ``labels.csv`` files (:data:`SYNTHETIC_ATTRIBUTES`)
for attribute-conditioned training.
Everything is deterministic: parameters come from per-index seeds derived from
the dataset seed, and rendering uses no global random state.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from twingan.errors import ConfigError, DatasetError, ImageLoadError
from twingan.data.image_io import load_image, save_image
from twingan.utils.atomic import atomic_write_text
from twingan.utils.progress import progress_bar

PathLike = Union[str, os.PathLike]
RGB = tuple[int, int, int]
Point = tuple[float, float]

GENERATOR_VERSION = 1
"""Bumped whenever a change to sampling or drawing changes the pixels of a given seed."""

STYLES: tuple[str, ...] = ("photo", "anime")

HAIR_COLOURS: dict[str, RGB] = {
    "black": (34, 30, 32),
    "brown": (108, 66, 36),
    "blonde": (226, 190, 110),
    "red": (192, 52, 34),
    "blue": (46, 86, 204),
    "pink": (238, 128, 182),
    "silver": (186, 192, 204),
    "green": (52, 152, 74),
}
EYE_COLOURS: dict[str, RGB] = {
    "brown": (112, 70, 38),
    "blue": (58, 118, 204),
    "green": (64, 150, 86),
    "grey": (128, 138, 150),
    "amber": (204, 126, 36),
}
SKIN_TONES: dict[str, RGB] = {
    "light": (246, 218, 194),
    "fair": (232, 190, 158),
    "tan": (198, 148, 108),
    "dark": (134, 92, 64),
}
# Anime skin is drawn lighter and pinker than the photographic tone of the same category.
_ANIME_SKIN: dict[str, RGB] = {
    "light": (255, 236, 222),
    "fair": (252, 218, 192),
    "tan": (232, 184, 144),
    "dark": (176, 124, 90),
}
BACKGROUND_COLOURS: dict[str, RGB] = {
    "white": (236, 234, 228),
    "grey": (140, 142, 146),
    "sky": (140, 186, 228),
    "mint": (150, 214, 180),
    "peach": (240, 188, 150),
    "lavender": (186, 166, 226),
    "yellow": (236, 214, 110),
    "slate": (58, 66, 84),
}
SHIRT_COLOURS: dict[str, RGB] = {
    "white": (232, 232, 228),
    "black": (36, 36, 40),
    "navy": (36, 50, 100),
    "red": (176, 40, 44),
    "green": (46, 112, 70),
    "grey": (120, 120, 124),
}
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bangs", "twintails", "ponytail")
MOUTHS: tuple[str, ...] = ("neutral", "smile", "open")
BACKGROUND_TYPES: tuple[str, ...] = ("flat", "gradient", "radial")

YAW_RANGE = (-1.0, 1.0)
ROLL_RANGE_DEG = (-10.0, 10.0)
SCALE_RANGE = (0.9, 1.1)
GLASSES_PROBABILITY = 0.2

# Image-relative box (x0, y0, x1, y1) that is hair in every style, pose and hair style:
# above the forehead, below the top of the hair. The renderer's geometry keeps it so.
HAIR_PROBE_BOX = (0.46, 0.27, 0.54, 0.31)

MIN_SIZE, MAX_SIZE = 16, 1024
MANIFEST_NAME = "synthetic.json"
TEST_PARAMS_NAME = "params.jsonl"
_STREAM_IDS = {"train_photo": 0, "train_anime": 1, "test": 2}
_POOL_MIN_TASKS = 64


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceParams:
    """Everything that defines one synthetic face, shared by both drawing styles.

    Categorical fields hold palette names (keys of the module's palettes).
    ``yaw`` in [-1, 1] turns the face sideways (features shift left/right);
    ``roll`` is the head tilt in degrees; ``scale`` the head size factor;
    ``seed`` drives small per-image details (hair strand jitter, sensor noise).
    """

    hair_colour: str
    hair_style: str
    eye_colour: str
    skin_tone: str
    mouth: str
    background_colour: str
    background_type: str
    shirt_colour: str
    glasses: bool
    yaw: float
    roll: float
    scale: float
    seed: int

    def __post_init__(self) -> None:
        choices = {
            "hair_colour": HAIR_COLOURS,
            "hair_style": HAIR_STYLES,
            "eye_colour": EYE_COLOURS,
            "skin_tone": SKIN_TONES,
            "mouth": MOUTHS,
            "background_colour": BACKGROUND_COLOURS,
            "background_type": BACKGROUND_TYPES,
            "shirt_colour": SHIRT_COLOURS,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"FaceParams.{name}={value!r} is not one of {sorted(allowed)}")

    @property
    def hair_colour_index(self) -> int:
        """Index of the hair colour in HAIR_COLOURS (the label :func:`hair_colour_of` estimates)."""
        return HAIR_COLOUR_NAMES.index(self.hair_colour)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FaceParams":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"face parameters lack {missing}")
        return cls(**{n: data[n] for n in names})


HAIR_COLOUR_NAMES: tuple[str, ...] = tuple(HAIR_COLOURS)
EYE_COLOUR_NAMES: tuple[str, ...] = tuple(EYE_COLOURS)
GLASSES_VALUES: tuple[str, ...] = ("no", "yes")

SYNTHETIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair": HAIR_COLOUR_NAMES,
    "eyes": EYE_COLOUR_NAMES,
    "mouth": MOUTHS,
    "glasses": GLASSES_VALUES,
}
"""The attribute schema of the synthetic faces (``model.attributes``); ``train/*/labels.csv`` use it."""
LABELS_NAME = "labels.csv"


def attribute_values(params: FaceParams) -> dict[str, str]:
    """The :data:`SYNTHETIC_ATTRIBUTES` value names of one face, e.g. {'hair': 'blue', ..., 'glasses': 'no'}."""
    return {
        "hair": params.hair_colour,
        "eyes": params.eye_colour,
        "mouth": params.mouth,
        "glasses": GLASSES_VALUES[int(params.glasses)],
    }


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw one face's parameters from ``rng`` (uniform over every palette and range)."""

    def pick(options: Iterable[str]) -> str:
        options = tuple(options)
        return options[int(rng.integers(len(options)))]

    return FaceParams(
        hair_colour=pick(HAIR_COLOURS),
        hair_style=pick(HAIR_STYLES),
        eye_colour=pick(EYE_COLOURS),
        skin_tone=pick(SKIN_TONES),
        mouth=pick(MOUTHS),
        background_colour=pick(BACKGROUND_COLOURS),
        background_type=pick(BACKGROUND_TYPES),
        shirt_colour=pick(SHIRT_COLOURS),
        glasses=bool(rng.random() < GLASSES_PROBABILITY),
        yaw=round(float(rng.uniform(*YAW_RANGE)), 4),
        roll=round(float(rng.uniform(*ROLL_RANGE_DEG)), 3),
        scale=round(float(rng.uniform(*SCALE_RANGE)), 4),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def params_for_index(seed: int, stream: str, index: int) -> FaceParams:
    """The parameters of image ``index`` of ``stream`` ('train_photo', 'train_anime' or 'test').

    Each index has its own seed (dataset seed, stream, index), so any image can
    be regenerated alone and the two training streams are independent.
    """
    if stream not in _STREAM_IDS:
        raise ValueError(f"unknown stream {stream!r}; expected one of {sorted(_STREAM_IDS)}")
    return sample_params(np.random.default_rng([seed, _STREAM_IDS[stream], index]))


# ----------------------------------------------------------------------------------------------
# Colour helpers
# ----------------------------------------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _scale_rgb(colour: Sequence[float], factor: float) -> RGB:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in colour)  # type: ignore[return-value]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _saturate(colour: Sequence[float], amount: float, lift: float = 0.0) -> RGB:
    """Push a colour away from its grey level by ``amount`` (1 = unchanged) and brighten by ``lift``."""
    c = np.asarray(colour, dtype=np.float32)
    grey = float(c @ _LUMA)
    out = grey + (c - grey) * amount + lift
    return tuple(int(v) for v in np.clip(np.round(out), 0, 255))  # type: ignore[return-value]


PHOTO_SATURATION = 0.72
"""Photos are graded toward grey by this factor after drawing (subdued colours)."""


def _photo_grade(arr: np.ndarray) -> np.ndarray:
    grey = arr @ _LUMA
    return grey[..., None] + (arr - grey[..., None]) * PHOTO_SATURATION


def _anime_hair(name: str) -> RGB:
    return _saturate(HAIR_COLOURS[name], 1.3, 8.0)


def hair_palette(style: str) -> np.ndarray:
    """(K, 3) float array: how each HAIR_COLOURS entry looks in ``style`` (the reference for :func:`hair_colour_of`)."""
    _check_style(style)
    base = np.array([HAIR_COLOURS[n] for n in HAIR_COLOUR_NAMES], dtype=np.float32)
    if style == "photo":
        return _photo_grade(base)
    return np.array([_anime_hair(n) for n in HAIR_COLOUR_NAMES], dtype=np.float32)


def hair_colour_of(image: Union[Image.Image, np.ndarray], style: str) -> int:
    """Estimate the hair colour category (index into HAIR_COLOURS) of a face drawn in ``style``.

    Takes the per-channel median of HAIR_PROBE_BOX, a region the renderer keeps
    covered by hair in every pose and hair style, and returns the nearest colour
    of :func:`hair_palette`. Works on renders and on translations into ``style``.
    """
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an RGB image or a uint8 (H, W, 3) array, got {arr.dtype} {arr.shape}")
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = HAIR_PROBE_BOX
    r0, c0 = int(y0 * h), int(x0 * w)
    r1, c1 = max(r0 + 1, math.ceil(y1 * h)), max(c0 + 1, math.ceil(x1 * w))
    median = np.median(arr[r0:r1, c0:c1].reshape(-1, 3).astype(np.float32), axis=0)
    distances = np.linalg.norm(hair_palette(style) - median, axis=1)
    return int(np.argmin(distances))


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 360.0, n: int = 40
) -> list[Point]:
    """Points on an ellipse from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    angles = np.radians(np.linspace(a0, a1, n))
    return list(zip((cx + rx * np.cos(angles)).tolist(), (cy + ry * np.sin(angles)).tolist()))


def _mirror(points: Sequence[Point]) -> list[Point]:
    return [(-x, y) for x, y in points]


def _symmetric(right_half: Sequence[Point]) -> list[Point]:
    """A left-right symmetric outline from its right half (listed from the centre line round to the centre line)."""
    return list(right_half) + _mirror(right_half[::-1])


class _Frame:
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
        gx, gy = _pixel_grid(self.canvas)
        dx, dy = gx - self.cx, gy - self.cy
        inv = 1.0 / self.scale
        return (dx * self.cos + dy * self.sin) * inv, (-dx * self.sin + dy * self.cos) * inv


@functools.lru_cache(maxsize=4)
def _pixel_grid(canvas: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(canvas, dtype=np.float32) + 0.5) / canvas
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    return gx, gy


def _supersampling(size: int, style: str) -> int:
    """Canvas size factor: photos are soft anyway (2x); anime line art needs 4x up to 128 px."""
    if style == "photo":
        return 2
    return max(2, min(4, 512 // size))


def _spikes(x0: float, x1: float, base_y: float, tip_y: float, count: int, rng: np.random.Generator) -> list[Point]:
    """A zigzag edge from x1 to x0: roots at base_y, tips hanging down to about tip_y."""
    points: list[Point] = []
    xs = np.linspace(x1, x0, 2 * count + 1)
    for i, x in enumerate(xs):
        if i % 2 == 0:
            points.append((float(x), base_y + float(rng.uniform(-0.01, 0.01))))
        else:
            points.append((float(x + rng.uniform(-0.012, 0.012)), tip_y + float(rng.uniform(-0.025, 0.015))))
    return points


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def render(params: FaceParams, style: str, size: int = 64) -> Image.Image:
    """Draw ``params`` in ``style`` ('photo' or 'anime') as a size x size RGB image.

    Drawn supersampled and reduced with Lanczos; identical params give identical pixels.
    """
    _check_style(style)
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"synthetic image size {size!r} is out of range; use {MIN_SIZE}..{MAX_SIZE} pixels")
    canvas = size * _supersampling(size, style)
    if style == "photo":
        return _PhotoPainter(params, canvas).paint(size)
    return _AnimePainter(params, canvas).paint(size)


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ConfigError(f"unknown synthetic style {style!r}; use one of {', '.join(STYLES)}")


def _background(params: FaceParams, canvas: int, colour: Sequence[float]) -> np.ndarray:
    """(canvas, canvas, 3) float32 background: flat, vertical gradient or radial vignette."""
    base = np.asarray(colour, dtype=np.float32)
    if params.background_type == "flat":
        return np.broadcast_to(base, (canvas, canvas, 3)).copy()
    gx, gy = _pixel_grid(canvas)
    if params.background_type == "gradient":
        column = (1.12 - 0.3 * gy[:, :1])[..., None] * base
        return np.clip(np.broadcast_to(column, (canvas, canvas, 3)), 0, 255)
    shade = 1.1 - 0.45 * np.sqrt((gx - 0.5) ** 2 + (gy - 0.45) ** 2)
    return np.clip(shade[..., None] * base, 0, 255)


@dataclass(frozen=True)
class _Layer:
    """A soft mask covering image[rows, cols]."""

    rows: slice
    cols: slice
    alpha: np.ndarray


class _PhotoPainter:
    """Realistic proportions, soft masks, shading fields, small eyes, noise, graded colours."""

    CENTRE_Y = 0.53

    def __init__(self, params: FaceParams, canvas: int) -> None:
        self.p = params
        self.canvas = canvas
        self.frame = _Frame(canvas, 0.5 + 0.025 * params.yaw, self.CENTRE_Y, params.scale, params.roll)
        self.fx = 0.055 * params.yaw  # features shift toward the side the face turns to
        self.lx, self.ly = self.frame.local_grid()
        self.rng = np.random.default_rng([params.seed, 1])
        self.hair = np.asarray(HAIR_COLOURS[params.hair_colour], dtype=np.float32)
        self.skin = np.asarray(SKIN_TONES[params.skin_tone], dtype=np.float32)
        self.img = _background(params, canvas, BACKGROUND_COLOURS[params.background_colour])
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
        arr = _photo_grade(np.clip(self.img, 0, 255))
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
            shapes.append(_ellipse(0, -0.03, 0.27, 0.31, 180, 360, 24) + ends)
        elif style == "bangs":
            shapes.append(_ellipse(0, -0.03, 0.26, 0.31, 180, 360, 24) + [(0.27, 0.16), (-0.27, 0.16)])
        elif style == "ponytail":
            shapes.append([(0.12, -0.2), (0.3, -0.12), (0.34, 0.1), (0.3, 0.34), (0.24, 0.4), (0.22, 0.12),
                           (0.16, -0.06)])
        elif style == "twintails":
            for side in (-1, 1):
                tail = [(0.2, -0.14), (0.3, -0.1), (0.36, 0.08), (0.35, 0.3), (0.3, 0.44), (0.25, 0.3), (0.23, 0.06)]
                shapes.append(tail if side > 0 else _mirror(tail))
        if shapes:
            self.paint_layer(self.mask(shapes, 0.008), self.hair_field(0.72))

    def body(self) -> None:
        shirt = np.asarray(SHIRT_COLOURS[self.p.shirt_colour], dtype=np.float32)
        shade = 1.0 + 0.1 * self.light - 0.15 * np.clip(self.ly - 0.35, 0, 1)
        shoulders = _symmetric([(0.0, 0.31), (0.12, 0.31), (0.38, 0.39), (0.48, 0.5), (0.52, 0.7), (0.0, 0.7)])
        self.paint_layer(self.mask([shoulders], 0.012), np.clip(shade[..., None] * shirt, 0, 255))
        neck = [(-0.09, 0.1), (0.09, 0.1), (0.1, 0.46), (-0.1, 0.46)]
        neck_shade = 0.8 + 0.12 * np.clip((self.ly - 0.26) / 0.15, 0, 1)
        self.paint_layer(self.mask([neck], 0.006), neck_shade[..., None] * self.skin)
        ears = [_ellipse(-0.215, 0.0, 0.03, 0.055), _ellipse(0.215, 0.0, 0.03, 0.055)]
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
        sockets = [_ellipse(fx + side * 0.09, -0.02, 0.06, 0.035) for side in (-1, 1)]
        self.paint_layer(self.mask(sockets, 0.02), self.skin * 0.8, 0.45)
        cheeks = [_ellipse(fx + side * 0.12, 0.09, 0.045, 0.03) for side in (-1, 1)]
        self.paint_layer(self.mask(cheeks, 0.025), _mix(self.skin, (210, 110, 110), 0.5), 0.25)

    def eyes(self) -> None:
        eye_colour = np.asarray(EYE_COLOURS[self.p.eye_colour], dtype=np.float32)
        brow_colour = self.hair * 0.6 + np.array([20, 16, 14], dtype=np.float32)
        ey, look = -0.005, 0.008 * self.p.yaw
        centres = [(self.fx + side * 0.09, side) for side in (-1, 1)]
        almonds = [_ellipse(ex, ey, 0.045, 0.02, 180, 360, 16) + _ellipse(ex, ey, 0.045, 0.015, 0, 180, 16)
                   for ex, _ in centres]
        self.paint_layer(self.mask(almonds, 0.003), (226, 222, 216))
        irises = [_ellipse(ex + look, ey, 0.017, 0.017, n=20) for ex, _ in centres]
        self.paint_layer(self.mask(irises, 0.002), eye_colour)
        pupils = [_ellipse(ex + look, ey, 0.007, 0.007, n=12) for ex, _ in centres]
        self.paint_layer(self.mask(pupils, 0.001), (20, 16, 16))
        lids = [_ellipse(ex, ey, 0.047, 0.021, 185, 355, 12) for ex, _ in centres]
        self.paint_layer(self.stroke(lids, 0.006, 0.003), (60, 40, 34), 0.85)
        brows = [[(ex - side * 0.045, ey - 0.045), (ex, ey - 0.058), (ex + side * 0.05, ey - 0.048)]
                 for ex, side in centres]
        self.paint_layer(self.stroke(brows, 0.012, 0.004), brow_colour, 0.9)

    def nose_and_mouth(self) -> None:
        fx = self.fx
        shadow_side = 1 if self.p.yaw >= 0 else -1
        ridge = [(fx + shadow_side * 0.018, 0.0), (fx + shadow_side * 0.024, 0.07), (fx + shadow_side * 0.02, 0.1)]
        self.paint_layer(self.stroke([ridge], 0.014, 0.01), self.skin * 0.72, 0.6)
        bottom = _ellipse(fx, 0.112, 0.032, 0.012)
        self.paint_layer(self.mask([bottom], 0.008), self.skin * 0.7, 0.55)
        nostrils = [_ellipse(fx + s * 0.016, 0.108, 0.007, 0.004) for s in (-1, 1)]
        self.paint_layer(self.mask(nostrils, 0.003), self.skin * 0.45, 0.7)
        lip = _mix(self.skin, (176, 78, 82), 0.55)
        my = 0.19
        if self.p.mouth == "neutral":
            upper = _ellipse(fx, my, 0.048, 0.012, 180, 360, 16)
            lower = _ellipse(fx, my, 0.044, 0.016, 0, 180, 16)
            self.paint_layer(self.mask([upper, lower], 0.004), lip)
            self.paint_layer(self.stroke([[(fx - 0.045, my), (fx + 0.045, my)]], 0.005, 0.003), self.skin * 0.4, 0.8)
        elif self.p.mouth == "smile":
            lips = _ellipse(fx, my - 0.02, 0.055, 0.035, 20, 160, 16) + _ellipse(fx, my - 0.03, 0.06, 0.03, 160, 20, 16)
            self.paint_layer(self.mask([lips], 0.004), lip)
            crease = _ellipse(fx, my - 0.025, 0.05, 0.028, 25, 155, 12)
            self.paint_layer(self.stroke([crease], 0.005, 0.003), self.skin * 0.4, 0.8)
        else:
            outer = _ellipse(fx, my + 0.005, 0.045, 0.03)
            self.paint_layer(self.mask([outer], 0.004), lip)
            self.paint_layer(self.mask([_ellipse(fx, my + 0.006, 0.032, 0.017)], 0.004), (60, 24, 26))
            self.paint_layer(self.mask([_ellipse(fx, my - 0.004, 0.026, 0.006)], 0.003), (220, 214, 204), 0.8)

    def hair_front(self) -> None:
        style = self.p.hair_style
        top = _ellipse(0, -0.03, 0.245, 0.31, 180, 360, 32)
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
            ties = [_ellipse(side * 0.26, -0.1, 0.02, 0.02) for side in sides]
            self.paint_layer(self.mask(ties, 0.003), (200, 40, 60))

    def glasses(self) -> None:
        rims = [_ellipse(self.fx + side * 0.09, -0.005, 0.06, 0.04) for side in (-1, 1)]
        bridge = [(self.fx - 0.03, -0.01), (self.fx, -0.02), (self.fx + 0.03, -0.01)]
        self.paint_layer(self.stroke(rims + [bridge], 0.008, 0.002), (36, 34, 34), 0.9)


class _AnimePainter:
    """Big cranium, pointed chin, tall eyes, cel colours with one shadow tone, dark line art."""

    CENTRE_Y = 0.5

    def __init__(self, params: FaceParams, canvas: int) -> None:
        self.p = params
        self.canvas = canvas
        self.frame = _Frame(canvas, 0.5 + 0.025 * params.yaw, self.CENTRE_Y, params.scale, params.roll)
        self.fx = 0.06 * params.yaw
        self.rng = np.random.default_rng([params.seed, 2])
        self.hair = _anime_hair(params.hair_colour)
        self.hair_shadow = _scale_rgb(self.hair, 0.7)
        self.hair_line = _scale_rgb(self.hair, 0.3)
        self.skin = _ANIME_SKIN[params.skin_tone]
        self.skin_shadow = _mix(_scale_rgb(self.skin, 0.86), (230, 120, 130), 0.15)
        self.line = (52, 30, 34)
        self.line_w = max(1, round(self.frame.px(0.009)))
        bg = _background(params, canvas, _saturate(BACKGROUND_COLOURS[params.background_colour], 1.35, 6.0))
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
            ends = _spikes(-0.34, 0.34, 0.5, 0.58, 5, self.rng)
            shapes.append(_ellipse(0, -0.06, 0.3, 0.3, 180, 360, 24) + [(0.34, 0.25)] + ends + [(-0.34, 0.25)])
        elif style == "bangs":
            ends = [(0.29, 0.22), (-0.29, 0.22)]
            shapes.append(_ellipse(0, -0.06, 0.3, 0.3, 180, 360, 24) + ends)
        elif style == "ponytail":
            shapes.append([(0.1, -0.3), (0.34, -0.26), (0.44, -0.06), (0.42, 0.2), (0.36, 0.4), (0.33, 0.22),
                           (0.3, 0.3), (0.3, 0.06), (0.2, -0.12)])
        elif style == "twintails":
            for side in (-1, 1):
                tail = [(0.2, -0.22), (0.36, -0.2), (0.44, 0.0), (0.43, 0.26), (0.38, 0.48), (0.35, 0.32),
                        (0.31, 0.44), (0.3, 0.2), (0.27, -0.02)]
                shapes.append(tail if side > 0 else _mirror(tail))
        for s in shapes:
            self.shape(s, self.hair_shadow, self.hair_line)

    def body(self) -> None:
        shirt = _saturate(SHIRT_COLOURS[self.p.shirt_colour], 1.3, 6.0)
        shoulders = _symmetric([(0.0, 0.37), (0.1, 0.37), (0.34, 0.42), (0.44, 0.52), (0.48, 0.7), (0.0, 0.7)])
        self.shape(shoulders, shirt, self.line)
        neck = [(-0.065, 0.2), (0.065, 0.2), (0.07, 0.4), (0, 0.46), (-0.07, 0.4)]
        self.shape(neck, self.skin, self.line)
        self.shape([(-0.066, 0.24), (0, 0.32), (0.066, 0.24), (0.066, 0.2), (-0.066, 0.2)], self.skin_shadow)
        for side in (-1, 1):
            self.shape(_ellipse(side * 0.245, 0.07, 0.035, 0.05), self.skin, self.line)

    def face_outline(self) -> list[Point]:
        cranium = _ellipse(0, -0.05, 0.255, 0.27, 180, 360, 28)
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
        blush = _mix(self.skin, (245, 120, 130), 0.35)
        for side in (-1, 1):
            self.shape(_ellipse(self.fx + side * 0.14, 0.16, 0.04, 0.018), blush)

    def eyes(self) -> None:
        iris_colour = _saturate(EYE_COLOURS[self.p.eye_colour], 1.4, 10.0)
        iris_dark = _scale_rgb(iris_colour, 0.55)
        look = 0.01 * self.p.yaw
        for side in (-1, 1):
            ex, ey = self.fx + side * 0.115, 0.065
            self.shape(_ellipse(ex, ey, 0.066, 0.08), (252, 252, 255))
            ix, iy = ex + look, ey + 0.008
            self.shape(_ellipse(ix, iy, 0.046, 0.066), iris_colour, self.line, 0.006)
            self.shape(_ellipse(ix, iy, 0.046, 0.066, 195, 345, 16), iris_dark)
            self.shape(_ellipse(ix, iy + 0.005, 0.02, 0.032), (24, 16, 24))
            self.shape(_ellipse(ix - 0.016, iy - 0.024, 0.015, 0.017), (255, 255, 255))
            self.shape(_ellipse(ix + 0.018, iy + 0.03, 0.007, 0.007), (255, 255, 255))
            upper = _ellipse(ex, ey, 0.072, 0.085, 195, 345, 18)
            outer_x = ex + side * 0.085
            lash = upper + [(outer_x, ey - 0.035)] + [(x, y + 0.018) for x, y in reversed(upper)]
            if side < 0:
                lash = upper + [(x, y + 0.018) for x, y in reversed(upper)] + [(outer_x, ey - 0.035)]
            self.shape(lash, (30, 20, 26))
            self.line_(_ellipse(ex, ey, 0.06, 0.08, 60, 120, 8), self.line, 0.007)
            brow = [(ex - side * 0.05, ey - 0.105), (ex + side * 0.005, ey - 0.12), (ex + side * 0.06, ey - 0.11)]
            self.line_(brow, self.hair_line, 0.009)

    def nose_and_mouth(self) -> None:
        fx = self.fx
        self.line_([(fx + 0.008, 0.165), (fx + 0.002, 0.18)], self.line, 0.007)
        my = 0.255
        if self.p.mouth == "neutral":
            self.line_([(fx - 0.028, my), (fx + 0.028, my)], self.line, 0.008)
        elif self.p.mouth == "smile":
            self.line_(_ellipse(fx, my - 0.025, 0.04, 0.03, 30, 150, 10), self.line, 0.009)
        else:
            mouth = [(fx - 0.04, my - 0.01)] + _ellipse(fx, my - 0.01, 0.04, 0.05, 0, 180, 14)
            self.shape(mouth, (150, 40, 50), self.line, 0.008)
            self.shape(_ellipse(fx, my + 0.025, 0.022, 0.012), (236, 120, 128))

    def fringe(self, drop: float = 0.0) -> list[Point]:
        """The front hair: the cap over the cranium with a spiky (or straight-cut) lower edge."""
        style = self.p.hair_style
        top = _ellipse(0, -0.06, 0.285, 0.3, 180, 360, 32)
        side_y = 0.1 if style == "short" else 0.24
        side_r = [(0.285, -0.06), (0.29, side_y), (0.245, side_y - 0.1), (0.22, -0.06)]
        side_l = [(-0.22, -0.06), (-0.245, side_y - 0.1), (-0.29, side_y), (-0.285, -0.06)]
        if style == "bangs":
            edge = [(0.2, -0.02), (0.1, -0.02), (0.08, -0.04), (0.06, -0.02), (-0.06, -0.02), (-0.08, -0.04),
                    (-0.1, -0.02), (-0.2, -0.02)]
        else:
            edge = _spikes(-0.22, 0.22, -0.13, -0.01, 4, np.random.default_rng([self.p.seed, 3]))
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
                self.shape(_ellipse(side * 0.3, -0.19, 0.03, 0.03), (240, 60, 90), self.line, 0.006)
        elif self.p.hair_style == "ponytail":
            self.shape(_ellipse(0.28, -0.24, 0.03, 0.03), (240, 60, 90), self.line, 0.006)

    def hair_highlight(self) -> RGB:
        return _mix(self.hair, (255, 255, 255), 0.45)

    def glasses(self) -> None:
        for side in (-1, 1):
            rim = _ellipse(self.fx + side * 0.115, 0.065, 0.085, 0.075)
            pts = self.frame.pts(rim)
            self.draw.line(pts + [pts[0]], fill=(40, 30, 60), width=max(1, round(self.frame.px(0.012))), joint="curve")
        self.line_([(self.fx - 0.03, 0.05), (self.fx + 0.03, 0.05)], (40, 30, 60), 0.012)


# ----------------------------------------------------------------------------------------------
# Dataset generation
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate_dataset` did: images drawn now and images kept from an earlier run."""

    out_dir: Path
    rendered: int
    reused: int
    already_complete: bool


def _manifest_request(n_train: int, n_test: int, size: int, seed: int) -> dict:
    return {"generator": "twingan.synthetic", "version": GENERATOR_VERSION, "seed": seed, "size": size,
            "n_train": n_train, "n_test": n_test}


def _validate_request(n_train: int, n_test: int, size: int, seed: int) -> None:
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"--size {size!r} is out of range; use {MIN_SIZE}..{MAX_SIZE} pixels")
    for name, value in (("--n-train", n_train), ("--n-test", n_test)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    if n_train + n_test == 0:
        raise ConfigError("--n-train and --n-test are both 0: nothing to generate")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0, got {seed!r}")


def _read_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path}: unreadable synthetic dataset manifest ({exc}); delete the folder or choose another --out"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a synthetic dataset manifest; delete the folder or choose another --out")
    return data


def _tasks(out_dir: Path, n_train: int, n_test: int, size: int, seed: int) -> list[tuple]:
    tasks = []
    for stream, style in (("train_photo", "photo"), ("train_anime", "anime")):
        for i in range(n_train):
            tasks.append((str(out_dir / "train" / style / f"{i:05d}.png"), seed, stream, i, style, size))
    for i in range(n_test):
        for style in STYLES:
            tasks.append((str(out_dir / "test" / style / f"{i:05d}.png"), seed, "test", i, style, size))
    return tasks


def _run_task(task: tuple) -> bool:
    """Render and save one image unless a valid one is already there; True if it was drawn now."""
    path, seed, stream, index, style, size = task
    if os.path.exists(path) and _is_valid_image(path, size):
        return False
    save_image(render(params_for_index(seed, stream, index), style, size), path)
    return True


def _is_valid_image(path: str, size: int) -> bool:
    """A leftover that does not decode or has the wrong size is drawn again."""
    try:
        return load_image(path).size == (size, size)
    except ImageLoadError:
        return False


def generate_dataset(
    out_dir: PathLike,
    n_train: int = 2000,
    n_test: int = 200,
    size: int = 64,
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
) -> GenerationSummary:
    """Write the synthetic two-domain dataset to ``out_dir`` (resumable, idempotent).

    Layout: ``train/photo/*.png`` and ``train/anime/*.png`` (``n_train`` each,
    from independent parameter streams: unpaired), ``test/photo/NNNNN.png`` and
    ``test/anime/NNNNN.png`` (``n_test`` pairs drawn from the same parameters),
    ``test/params.jsonl``, ``train/photo/labels.csv`` and
    ``train/anime/labels.csv`` (the faces' :data:`SYNTHETIC_ATTRIBUTES` values,
    for attribute control) and the manifest ``synthetic.json``. A finished
    folder with a matching manifest is returned at once (it gains the label
    files if it predates them); after an interruption only the missing or
    damaged images are drawn. A folder holding another request (or
    other files) raises ConfigError.
    """
    _validate_request(n_train, n_test, size, seed)
    if workers is None:
        workers = _default_workers()
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a whole number >= 1, got {workers!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a folder; choose a new or empty folder")
    manifest_path = out_dir / MANIFEST_NAME
    request = _manifest_request(n_train, n_test, size, seed)
    tasks = _tasks(out_dir, n_train, n_test, size, seed)
    if manifest_path.exists():
        existing = _read_manifest(manifest_path)
        differing = {k: (existing.get(k), v) for k, v in request.items() if existing.get(k) != v}
        if differing:
            details = ", ".join(f"{k}: {old!r} there, {new!r} requested" for k, (old, new) in differing.items())
            raise ConfigError(
                f"{out_dir} already holds a different synthetic dataset ({details}); "
                "choose another --out or delete that folder"
            )
        if existing.get("complete") is True and all(os.path.exists(t[0]) for t in tasks) and (
            out_dir / "test" / TEST_PARAMS_NAME
        ).exists():
            _write_train_labels(out_dir, seed, n_train, only_missing=True)  # folders made before labels existed
            return GenerationSummary(out_dir, 0, len(tasks), already_complete=True)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(
            f"{out_dir} is not empty and has no {MANIFEST_NAME}: it is not a synthetic dataset folder; "
            "choose a new or empty --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest_path, json.dumps({**request, "complete": False}, indent=2) + "\n")

    rendered = _run_tasks(tasks, progress, workers)
    _write_test_params(out_dir, seed, n_test)
    _write_train_labels(out_dir, seed, n_train)
    manifest = {**request, "styles": list(STYLES), "hair_colours": list(HAIR_COLOUR_NAMES), "complete": True}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return GenerationSummary(out_dir, rendered, len(tasks) - rendered, already_complete=False)


def _default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def _run_tasks(tasks: list[tuple], progress: bool, workers: int) -> int:
    rendered = 0
    with progress_bar(total=len(tasks), desc="synthetic faces", unit="img", disable=not progress) as bar:
        if workers == 1 or len(tasks) < _POOL_MIN_TASKS:
            for task in tasks:
                rendered += _run_task(task)
                bar.update(1)
        else:
            # fork where available: workers need only PIL/numpy and start instantly
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                for drawn in pool.imap_unordered(_run_task, tasks, chunksize=16):
                    rendered += drawn
                    bar.update(1)
    return rendered


def _write_test_params(out_dir: Path, seed: int, n_test: int) -> None:
    lines = []
    for i in range(n_test):
        record = {"index": i, "file": f"{i:05d}.png", **params_for_index(seed, "test", i).to_dict()}
        lines.append(json.dumps(record, sort_keys=True))
    atomic_write_text(out_dir / "test" / TEST_PARAMS_NAME, "".join(line + "\n" for line in lines))


def train_labels_csv(seed: int, stream: str, n_train: int) -> str:
    """The text of ``train/<style>/labels.csv`` of training stream ``stream``: header ``file,hair,eyes,mouth,glasses``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    groups = list(SYNTHETIC_ATTRIBUTES)
    writer.writerow(["file", *groups])
    for i in range(n_train):
        values = attribute_values(params_for_index(seed, stream, i))
        writer.writerow([f"{i:05d}.png", *(values[g] for g in groups)])
    return buffer.getvalue()


def _write_train_labels(out_dir: Path, seed: int, n_train: int, only_missing: bool = False) -> None:
    """Write ``train/photo/labels.csv`` and ``train/anime/labels.csv`` (atomically); keep existing ones if asked."""
    if n_train == 0:
        return
    for stream, style in (("train_photo", "photo"), ("train_anime", "anime")):
        path = out_dir / "train" / style / LABELS_NAME
        if only_missing and path.exists():
            continue
        atomic_write_text(path, train_labels_csv(seed, stream, n_train))


def load_test_params(out_dir: PathLike) -> list[FaceParams]:
    """The parameters of the paired test set, in index order (entry i belongs to test/*/NNNNN.png)."""
    path = Path(out_dir) / "test" / TEST_PARAMS_NAME
    if not path.exists():
        raise DatasetError(f"{path} not found: is {out_dir} a synthetic dataset made by `twingan prep synthetic`?")
    params = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record["index"] != len(params):
                raise ValueError(f"index {record['index']} out of order (expected {len(params)})")
            params.append(FaceParams.from_dict(record))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}, line {line_no}: bad test parameters ({exc})") from exc
    return params
