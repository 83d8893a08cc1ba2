"""The synthetic renderer, pinned by what it draws rather than by its bytes.

Faces 0..12 of the test stream of seed 0 (every hair style, mouth, background type, with and without glasses) are
pinned twice: their parameters exactly, and their pixels in both styles at a small, an odd and a large size as the
mean colour of every cell of a grid (2 to 8 px cells), within a tolerance. A byte digest of blurred, resampled,
float32-shaded pixels pinned the machine as much as the renderer: NumPy's vectorised float32 maths and Pillow's
filters may round differently on another CPU or release, moving single pixels by a level (a jitter of +-0.3 level
before every rounding moves cell means by at most 1.25). Moving the drawing by one pixel, or recolouring one face's
dark parts by ten levels, moves them well past the tolerance (checked below), so a refactoring of the painters still
cannot change the drawing unnoticed.

After a deliberate change to the drawing, bump ``GENERATOR_VERSION`` and rewrite the reference with
``PYTHONPATH=. python tests/test_synthetic_pinned.py``.
"""
from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest

from twingan.data.synthetic import params_for_index, render

FACES = range(13)
REFERENCE = Path(__file__).with_name("data") / "synthetic_pinned.npz"
CELLS = {16: 8, 40: 8, 128: 16}
"""Image size -> grid cells per side (cells of 2, 5 and 8 px)."""
RENDERINGS = [(style, size) for style in ("anime", "photo") for size in sorted(CELLS)]
MAX_CELL_DIFFERENCE = 2.0
"""Largest change of one cell's mean colour (in levels of 255) that counts as the same drawing."""
MAX_MEAN_DIFFERENCE = 0.35
"""Largest mean change over all cells of a face."""
PINNED_PARAMS = [
    ("green", "short", "blue", "fair", "neutral", "peach", "radial", "white", True, -0.3461, -7.633, 0.9754, 139698432),
    ("green", "bangs", "blue", "dark", "smile", "yellow", "gradient", "white", False, 0.9591, 6.12, 1.0738, 1684797071),
    ("brown", "short", "green", "light", "neutral", "grey", "gradient", "red", False, 0.5908, -6.39, 0.9445, 2065495518),
    ("brown", "bangs", "green", "fair", "open", "grey", "gradient", "navy", True, -0.5499, 8.492, 0.9734, 688047996),
    ("red", "twintails", "amber", "tan", "smile", "white", "radial", "green", False, -0.6829, -6.266, 1.0865, 1566437313),
    ("red", "twintails", "brown", "dark", "open", "mint", "gradient", "red", False, -0.0969, 8.219, 0.9821, 127012726),
    ("blue", "short", "blue", "fair", "smile", "yellow", "gradient", "navy", True, 0.4898, 9.531, 0.9026, 1191648843),
    ("green", "twintails", "blue", "dark", "smile", "peach", "flat", "red", False, -0.1124, -6.349, 1.0035, 577917898),
    ("green", "bangs", "amber", "tan", "open", "mint", "radial", "red", False, 0.3043, 9.542, 1.033, 1476476332),
    ("blue", "long", "grey", "dark", "neutral", "yellow", "gradient", "navy", False, 0.7766, -5.133, 0.9278, 1767616688),
    ("black", "short", "brown", "fair", "smile", "yellow", "gradient", "grey", False, -0.1321, 4.24, 0.9399, 1630759953),
    ("pink", "twintails", "brown", "dark", "smile", "grey", "flat", "green", False, 0.0775, 3.488, 1.0227, 1213095002),
    ("pink", "ponytail", "green", "dark", "open", "peach", "radial", "black", False, 0.1662, 2.185, 0.9198, 1708093554),
]
"""astuple(FaceParams) of faces 0..12: hair colour and style, eyes, skin, mouth, background colour and type, shirt,
glasses, yaw, roll, scale, seed."""


def cell_means(image: np.ndarray, cells: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (cells, cells, 3) float64: the mean colour of each cell of a cells x cells grid."""
    side = image.shape[0] // cells
    return image.astype(np.float64).reshape(cells, side, cells, side, 3).mean(axis=(1, 3))


def rendered_cells(style: str, size: int) -> np.ndarray:
    """(faces, cells, cells, 3): the cell means of the pinned faces drawn in ``style`` at ``size``."""
    return np.stack([cell_means(np.asarray(render(params_for_index(0, "test", i), style, size)), CELLS[size])
                     for i in FACES])


def differences(cells: np.ndarray, pinned: np.ndarray) -> tuple[float, float]:
    """The largest cell change and the largest per-face mean change, in levels."""
    diff = np.abs(cells - pinned)
    return float(diff.max()), float(diff.mean(axis=(1, 2, 3)).max())


def test_the_face_parameters_are_the_pinned_ones():
    assert [astuple(params_for_index(0, "test", i)) for i in FACES] == PINNED_PARAMS


@pytest.mark.parametrize(("style", "size"), RENDERINGS)
def test_rendered_faces_match_their_pinned_cell_means(style, size):
    pinned = np.load(REFERENCE)[f"{style}-{size}"].astype(np.float64)
    largest, mean = differences(rendered_cells(style, size), pinned)
    assert largest <= MAX_CELL_DIFFERENCE and mean <= MAX_MEAN_DIFFERENCE, (largest, mean)


@pytest.mark.parametrize("size", sorted(CELLS))
def test_the_tolerance_sees_a_feature_moved_by_one_pixel_or_a_colour_shifted_a_little(size):
    """The check can fail: the drawings shifted by one pixel, or one face's dark parts recoloured, are out of tolerance."""
    faces = [np.asarray(render(params_for_index(0, "test", i), "photo", size)) for i in FACES]
    pinned = np.stack([cell_means(face, CELLS[size]) for face in faces])
    shifted = np.stack([cell_means(np.roll(face, 1, axis=1), CELLS[size]) for face in faces])
    assert differences(shifted, pinned)[0] > MAX_CELL_DIFFERENCE
    recoloured = np.asarray(render(params_for_index(0, "test", 0), "photo", size)).astype(np.int16)
    hair = recoloured.sum(axis=2) < 300  # darker pixels: hair, eyes, outlines
    recoloured[hair] = np.clip(recoloured[hair] + (10, -10, 0), 0, 255)
    changed = pinned.copy()
    changed[0] = cell_means(recoloured.astype(np.uint8), CELLS[size])
    assert differences(changed, pinned)[0] > MAX_CELL_DIFFERENCE


def write_reference() -> None:
    """Rewrite the pinned cell means (after a deliberate change to the drawing)."""
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **{f"{style}-{size}": rendered_cells(style, size).astype(np.float16)
                                      for style, size in RENDERINGS})


if __name__ == "__main__":
    write_reference()
    print(f"wrote {REFERENCE}")
