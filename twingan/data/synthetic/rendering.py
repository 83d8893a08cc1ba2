"""Drawing one face in one style at one size."""
from __future__ import annotations

from PIL import Image

from twingan.data.synthetic.anime_painter import AnimePainter
from twingan.data.synthetic.palettes import check_style
from twingan.data.synthetic.params import FaceParams
from twingan.data.synthetic.photo_painter import PhotoPainter
from twingan.errors import ConfigError

MIN_SIZE, MAX_SIZE = 16, 1024


def render(params: FaceParams, style: str, size: int = 64) -> Image.Image:
    """Draw ``params`` in ``style`` ('photo' or 'anime') as a size x size RGB image.

    Drawn supersampled and reduced with Lanczos; identical params give identical pixels.
    """
    check_style(style)
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"synthetic image size {size!r} is out of range; use {MIN_SIZE}..{MAX_SIZE} pixels")
    canvas = size * _supersampling(size, style)
    if style == "photo":
        return PhotoPainter(params, canvas).paint(size)
    return AnimePainter(params, canvas).paint(size)


def _supersampling(size: int, style: str) -> int:
    """Canvas size factor: photos are soft anyway (2x); anime line art needs 4x up to 128 px."""
    if style == "photo":
        return 2
    return max(2, min(4, 512 // size))
