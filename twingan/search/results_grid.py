"""A picture of search results: one row per query, the query face then its neighbours, a caption under each tile."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from twingan.data.image_io import load_image
from twingan.errors import ConfigError, ImageLoadError

DEFAULT_TILE = 128
CAPTION_HEIGHT = 14
MISSING_GRAY = 128
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


@dataclass
class GridRow:
    query: Image.Image
    """The face crop the model embedded (or its :func:`query_tile`, all the grid keeps of it)."""
    hits: Sequence[tuple[float, Path]]
    """(cosine similarity, gallery image file) per neighbour, best first."""


def results_grid(rows: Sequence[GridRow], tile: int = DEFAULT_TILE) -> Image.Image:
    """Tiles of ``tile`` px; captions: 'query', then '#rank: score' ('missing' for an unreadable gallery file)."""
    if not rows:
        raise ConfigError("a results grid needs at least one query")
    if tile < 16:
        raise ConfigError(f"grid tiles must be at least 16 px, got {tile}")
    columns = 1 + max(len(row.hits) for row in rows)
    height = tile + CAPTION_HEIGHT
    canvas = Image.new("RGB", (columns * tile, len(rows) * height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, row in enumerate(rows):
        top = r * height
        _place(canvas, draw, font, row.query, "query", 0, top, tile)
        for c, (score, path) in enumerate(row.hits, start=1):
            picture, found = _gallery_tile(path, tile)
            caption = f"#{c}: {score:.3f}" + ("" if found else " missing")
            _place(canvas, draw, font, picture, caption, c * tile, top, tile)
    return canvas


def query_tile(picture: Image.Image, tile: int = DEFAULT_TILE) -> Image.Image:
    """The centre square of ``picture`` as the grid draws it, shrunk to ``tile`` px when larger: what a row needs
    to keep of its query (a streamed query keeps this instead of the decoded photo)."""
    side = min(picture.size)
    x0, y0 = (picture.width - side) // 2, (picture.height - side) // 2
    square = picture.crop((x0, y0, x0 + side, y0 + side))
    return square.resize((tile, tile), Image.Resampling.LANCZOS) if side > tile else square


def _gallery_tile(path: Path, tile: int) -> tuple[Image.Image, bool]:
    try:
        return load_image(path), True
    except ImageLoadError:
        return Image.new("RGB", (tile, tile), (MISSING_GRAY,) * 3), False


def _place(
    canvas: Image.Image, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, picture: Image.Image,
    caption: str, left: int, top: int, tile: int,
) -> None:
    square = query_tile(picture, tile)
    if square.width < tile:
        square = square.resize((tile, tile), Image.Resampling.NEAREST)
    canvas.paste(square, (left, top))
    draw.text((left + 2, top + tile + 1), caption, fill=TEXT, font=font)
