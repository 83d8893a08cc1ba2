"""Cat-face crops for `twingan prep cat`: the CAT dataset's keypoints, warped with our antialiased warp.

The geometry (eyes level, margin around the ears) is
:func:`twingan.data.cat_crop.cat_face_transform`, shared with the dataset
reader; this module only locates the ``.cat`` file and warps the photo.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from twingan.data.cat_crop import DEFAULT_MARGIN, cat_face_transform, read_cat_keypoints
from twingan.faces.align import warp_to_crop

__all__ = ["cat_keypoint_path", "crop_cat", "read_cat_keypoints"]


def cat_keypoint_path(image_path: Path) -> Path:
    """The CAT dataset keeps ``X.jpg``'s keypoints in ``X.jpg.cat`` beside it."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.name + ".cat")


def crop_cat(img: Image.Image, keypoints: np.ndarray, size: int, margin: float = DEFAULT_MARGIN) -> Image.Image:
    """The ``size`` x ``size`` eye-levelled cat-face crop; edge pixels repeat outside the photo."""
    return warp_to_crop(img, cat_face_transform(keypoints, size, margin), size, border="replicate")
