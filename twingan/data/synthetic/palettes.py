"""The synthetic faces' named colours, and how each drawing style shifts them.

Both styles draw the same palette entry; the photo is graded toward grey after drawing (:func:`photo_grade`), the
anime face saturates and brightens its colours (:func:`saturate`, :func:`anime_hair`, :data:`ANIME_SKIN`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from twingan.errors import ConfigError

RGB = tuple[int, int, int]

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
ANIME_SKIN: dict[str, RGB] = {
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

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def scale_rgb(colour: Sequence[float], factor: float) -> RGB:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in colour)  # type: ignore[return-value]


def mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def saturate(colour: Sequence[float], amount: float, lift: float = 0.0) -> RGB:
    """Push a colour away from its grey level by ``amount`` (1 = unchanged) and brighten by ``lift``."""
    c = np.asarray(colour, dtype=np.float32)
    grey = float(c @ _LUMA)
    out = grey + (c - grey) * amount + lift
    return tuple(int(v) for v in np.clip(np.round(out), 0, 255))  # type: ignore[return-value]


PHOTO_SATURATION = 0.72
"""Photos are graded toward grey by this factor after drawing (subdued colours)."""


def photo_grade(arr: np.ndarray) -> np.ndarray:
    grey = arr @ _LUMA
    return grey[..., None] + (arr - grey[..., None]) * PHOTO_SATURATION


def anime_hair(name: str) -> RGB:
    return saturate(HAIR_COLOURS[name], 1.3, 8.0)


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ConfigError(f"unknown synthetic style {style!r}; use one of {', '.join(STYLES)}")
