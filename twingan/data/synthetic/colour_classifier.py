"""Which palette hair colour a face shows: a probe of the region every render keeps covered by hair.

It reads renders and translations alike, so the paired scores and the generation scores use it as a classifier.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
from PIL import Image

from twingan.data.synthetic.palettes import HAIR_COLOURS, anime_hair, check_style, photo_grade
from twingan.data.synthetic.params import HAIR_COLOUR_NAMES

# Image-relative box (x0, y0, x1, y1) that is hair in every style, pose and hair style:
# above the forehead, below the top of the hair. The renderer's geometry keeps it so.
HAIR_PROBE_BOX = (0.46, 0.27, 0.54, 0.31)


def hair_palette(style: str) -> np.ndarray:
    """(K, 3) float array: how each HAIR_COLOURS entry looks in ``style`` (the reference for :func:`hair_colour_of`)."""
    check_style(style)
    base = np.array([HAIR_COLOURS[n] for n in HAIR_COLOUR_NAMES], dtype=np.float32)
    if style == "photo":
        return photo_grade(base)
    return np.array([anime_hair(n) for n in HAIR_COLOUR_NAMES], dtype=np.float32)


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
