"""Cat-face crops from the CAT dataset's 9 keypoints.

A CAT photo ``X.jpg`` comes with ``X.jpg.cat``: the text ``9 x1 y1 ... x9 y9``,
the points being, in order: left eye, right eye, mouth, left ear 1, left ear 2,
left ear 3 (tip), right ear 1, right ear 2, right ear 3 (tip). Coordinates are
pixel indices (the centre of the top-left pixel is (0, 0)), as in OpenCV.

The crop geometry is a similarity transform (rotation, uniform scale,
translation) chosen so that:

* the eyes are level, with the mouth below them (this also copes with files
  whose left/right eye labels are swapped);
* the square crop is centred on the box of all 9 keypoints in the eye-aligned
  frame, and its side is the box's longer side plus ``margin`` of it on each
  side, which keeps the ears and the chin inside the picture.

These are pure functions on numpy arrays so that the dataset reader and the
``twingan prep cat`` tool crop identically.
"""
from __future__ import annotations

import math
import os
from typing import Union

import cv2
import numpy as np
from PIL import Image

from twingan.errors import DatasetError

PathLike = Union[str, os.PathLike]

CAT_KEYPOINT_NAMES = (
    "left_eye",
    "right_eye",
    "mouth",
    "left_ear_1",
    "left_ear_2",
    "left_ear_3",
    "right_ear_1",
    "right_ear_2",
    "right_ear_3",
)
DEFAULT_MARGIN = 0.2
"""Fraction of the keypoint box's side added on each side of the crop."""


class CatKeypointError(DatasetError):
    """A ``.cat`` keypoint file is missing or malformed; ``reason`` says how."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def read_cat_keypoints(path: PathLike) -> np.ndarray:
    """Parse a ``.cat`` file into a float64 array of shape (9, 2) holding (x, y) per point.

    Raises CatKeypointError when the file is missing, unreadable, does not
    declare 9 points, has the wrong number of values, non-numeric or
    non-finite values, or both eyes at the same place.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise CatKeypointError(path, "keypoint file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CatKeypointError(path, f"keypoint file unreadable ({exc})") from exc
    tokens = text.split()
    if not tokens:
        raise CatKeypointError(path, "keypoint file is empty")
    try:
        values = [float(t) for t in tokens]
    except ValueError as exc:
        raise CatKeypointError(path, f"keypoint file holds a non-number ({exc})") from exc
    if values[0] != len(CAT_KEYPOINT_NAMES):
        raise CatKeypointError(path, f"keypoint file declares {tokens[0]} points, expected 9")
    coords = values[1:]
    if len(coords) != 2 * len(CAT_KEYPOINT_NAMES):
        raise CatKeypointError(path, f"keypoint file has {len(coords)} coordinates, expected 18 (9 x y pairs)")
    keypoints = np.asarray(coords, dtype=np.float64).reshape(len(CAT_KEYPOINT_NAMES), 2)
    if not np.all(np.isfinite(keypoints)):
        raise CatKeypointError(path, "keypoint file has non-finite coordinates")
    if np.allclose(keypoints[0], keypoints[1]):
        raise CatKeypointError(path, "degenerate keypoints: both eyes at the same place")
    return keypoints


def _eye_aligned_frame(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrix that levels the eyes with the mouth below, and the eye midpoint."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape != (9, 2):
        raise ValueError(f"expected keypoints of shape (9, 2), got {keypoints.shape}")
    left_eye, right_eye, mouth = keypoints[0], keypoints[1], keypoints[2]
    eye_vector = right_eye - left_eye
    angle = math.atan2(eye_vector[1], eye_vector[0])
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, sin], [-sin, cos]])
    eye_mid = (left_eye + right_eye) / 2.0
    if (rotation @ (mouth - eye_mid))[1] < 0:
        rotation = -rotation
    return rotation, eye_mid


def cat_face_side(keypoints: np.ndarray, margin: float = DEFAULT_MARGIN) -> float:
    """Side, in source pixels, of the square crop that :func:`cat_face_transform` takes."""
    rotation, eye_mid = _eye_aligned_frame(keypoints)
    aligned = (np.asarray(keypoints, dtype=np.float64) - eye_mid) @ rotation.T
    extent = aligned.max(axis=0) - aligned.min(axis=0)
    return float(max(extent.max(), 1.0) * (1.0 + 2.0 * margin))


def cat_face_transform(keypoints: np.ndarray, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """2x3 similarity transform from source pixel coordinates to a ``size`` x ``size`` face crop.

    ``keypoints`` is the (9, 2) array of :func:`read_cat_keypoints`. The result
    ``M`` maps a source point p (pixel indices, x then y) to ``M[:, :2] @ p +
    M[:, 2]`` in the crop; it is the matrix ``cv2.warpAffine`` expects. In the
    crop the two eyes have the same y, the mouth is below them and all nine
    keypoints lie inside, ``margin`` x (keypoint box side) away from the border
    along the box's longer side.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rotation, eye_mid = _eye_aligned_frame(keypoints)
    aligned = (np.asarray(keypoints, dtype=np.float64) - eye_mid) @ rotation.T
    box_centre = (aligned.max(axis=0) + aligned.min(axis=0)) / 2.0
    scale = size / cat_face_side(keypoints, margin)
    linear = scale * rotation
    # Pixel indices run 0..size-1, so the crop's centre is at (size - 1) / 2.
    offset = -linear @ eye_mid - scale * box_centre + (size - 1) / 2.0
    return np.hstack([linear, offset[:, None]])


def crop_cat_face(image: Image.Image, keypoints: np.ndarray, size: int | None = None,
                  margin: float = DEFAULT_MARGIN) -> Image.Image:
    """Warp an RGB photo to the square face crop of :func:`cat_face_transform`.

    ``size=None`` keeps the source scale (the crop's side in source pixels), so
    that resizing to a training resolution afterwards can be done once, with
    antialiasing. Parts of the crop outside the photo repeat the edge pixels.
    """
    if size is None:
        size = max(1, round(cat_face_side(keypoints, margin)))
    matrix = cat_face_transform(keypoints, size, margin)
    pixels = np.asarray(image.convert("RGB"))
    warped = cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(warped, "RGB")
