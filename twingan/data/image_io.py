"""The toolkit's one image loader and saver, and the centre-crop-and-resize every model input goes through.

Every part of twingan that reads a picture (datasets, preparation, translation,
search, the web demo) goes through :func:`load_image`, so that EXIF rotation,
odd pixel formats, decompression bombs and broken files are handled the same
way everywhere. Bad files raise :class:`~twingan.errors.ImageLoadError` with a
short reason; callers decide whether to skip (datasets) or report (CLI).

Only the decoders of :data:`ACCEPTED_FORMATS` ever see a file's bytes, whatever
its name says: Pillow also opens formats whose plugins run other programs (EPS
and PostScript start Ghostscript), and no entry point may lead there. Whatever a
decoder raises becomes the ImageLoadError of that one file.

Tensors follow one convention: float32, RGB, channels first, values in [-1, 1].
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from twingan.errors import ImageLoadError, quoted
from twingan.utils.atomic import atomic_paths

PathLike = Union[str, os.PathLike]

FORMAT_EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg", ".jfif"), "PNG": (".png",), "WEBP": (".webp",), "GIF": (".gif",), "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"), "PPM": (".ppm", ".pgm"), "AVIF": (".avif",), "HEIF": (".heic", ".heif"),
}
"""Every image format twingan reads (Pillow's names) and its file extensions; HEIF only with ``pillow-heif``."""


def _accepted_formats() -> tuple[str, ...]:
    with contextlib.suppress(ImportError):
        from pillow_heif import register_heif_opener

        register_heif_opener()
    Image.init()
    return tuple(name for name in FORMAT_EXTENSIONS if name in Image.OPEN)


ACCEPTED_FORMATS = _accepted_formats()
"""The formats of :data:`FORMAT_EXTENSIONS` this Pillow build decodes: the one list every entry point accepts
(folders of translate, embed, prep and datasets; the web upload field)."""
IMAGE_EXTENSIONS = frozenset(ext for name in ACCEPTED_FORMATS for ext in FORMAT_EXTENSIONS[name])
DEFAULT_MAX_PIXELS = 64_000_000
"""Larger images are refused before decoding (a decompression-bomb guard): 64 MP is ~8000x8000."""

_limits_lock = threading.Lock()
_active_limits: list[int] = []
_pillow_limit_outside: list[int | None] = []


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, one per process) raised to
    ``max_pixels`` while a load runs, so that the caller's limit decides, not Pillow's default of 89 MP.

    It is only ever raised (a lower limit is :func:`load_image`'s own check, which names the size): to the largest
    limit of the loads running in any thread, each of which checks its own. The value set outside twingan comes
    back when none runs; None there (Pillow's check switched off) stays None.
    """
    with _limits_lock:
        if not _active_limits:
            _pillow_limit_outside[:] = [Image.MAX_IMAGE_PIXELS]
        _active_limits.append(max_pixels)
        _set_pillow_limit()
    try:
        yield
    finally:
        with _limits_lock:
            _active_limits.remove(max_pixels)
            _set_pillow_limit()


def _set_pillow_limit() -> None:
    outside = _pillow_limit_outside[0]
    Image.MAX_IMAGE_PIXELS = None if outside is None else max([outside, *_active_limits])


def load_image(
    path: PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = 1,
    background: tuple[int, int, int] = (255, 255, 255),
    draft_size: int | None = None,
) -> Image.Image:
    """Decode ``path`` to an 8-bit RGB PIL image with EXIF orientation applied.

    Transparent images are composited over ``background``; grayscale, palette,
    16-bit, float and CMYK images are converted to RGB; animated images give
    their first frame. Raises ImageLoadError for missing, empty, non-image,
    truncated, too large or too small files.

    ``draft_size`` lets JPEGs decode at a reduced DCT scale (1/2, 1/4 or 1/8)
    whose width and height both stay >= ``draft_size``: much faster when the
    picture is only needed small. ``min_size`` is checked on the full size.
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(str(path), link_problem(path) or "file not found")
    if path.is_dir():
        raise ImageLoadError(str(path), "is a folder, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageLoadError(str(path), f"cannot read: {exc.strerror}") from exc
    if size == 0:
        raise ImageLoadError(str(path), "empty file (0 bytes)")
    try:
        with warnings.catch_warnings(), _pillow_pixel_limit(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=ACCEPTED_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageLoadError(
                        str(path),
                        f"too large: {width}x{height} = {width * height} pixels exceeds the limit of "
                        f"{max_pixels} (a decompression-bomb guard; raise max_pixels if the file is trusted)",
                    )
                img.seek(0)
                if draft_size is not None:
                    img.draft("RGB", (draft_size, draft_size))
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = to_rgb(img, background)
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(str(path), f"not an image of a supported format ({', '.join(ACCEPTED_FORMATS)})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{pixels.group(1)} pixels" if pixels else "its size"
        raise ImageLoadError(str(path), f"too large: {size} exceeds the limit of {max_pixels} (a decompression-bomb "
                                        "guard; raise max_pixels if the file is trusted)") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file could not be read at all, its content was never seen
            raise ImageLoadError(str(path), read_problem(exc)) from exc
        raise ImageLoadError(str(path), f"truncated or corrupt image ({exc})") from exc
    except (SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(str(path), f"truncated or corrupt image ({exc})") from exc
    except Exception as exc:  # a decoder's own failure (struct.error, MemoryError, ...) is this file's problem
        raise ImageLoadError(str(path), f"cannot be decoded ({type(exc).__name__}: {exc})") from exc
    if min(width, height) < min_size:
        raise ImageLoadError(str(path), f"too small: {width}x{height} (the minimum side is {min_size} px)")
    return rgb


def read_problem(exc: OSError) -> str:
    """Why a file could not be opened or read, in a few words with what to do."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot read: permission denied (check the file's permissions)"
    if exc.errno == errno.ELOOP:
        return LINK_LOOP
    return f"cannot read: {exc.strerror or exc}"


LINK_LOOP = "a symbolic link loop (the link leads back to itself): fix or remove the link"


def link_problem(path: PathLike) -> str | None:
    """Why the symbolic link ``path`` leads nowhere (a loop, a missing target); None when it is no such link."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LINK_LOOP
        return f"a broken symbolic link (its target {quoted(os.readlink(path))} does not exist)"
    return None


def resolved(path: PathLike) -> Path:
    """``path`` with symbolic links followed, or made absolute where a link loop stops that (for de-duplication)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # "Symlink loop" (Python < 3.13), ELOOP (3.13+)
        return Path(os.path.abspath(path))


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha composited over ``background``, 16-bit and float scaled, CMYK converted."""
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            peak = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        elif mode.startswith("I;16"):
            peak = 65535.0
        else:
            peak = 65535.0 if arr.max(initial=0.0) > 255 else 255.0
        arr8 = np.clip(np.rint(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def resize_square(image: Image.Image, resolution: int) -> np.ndarray:
    """Centre-crop to a square, resize to ``resolution``; returns (R, R, 3) uint8.

    Shrinking uses PIL's box filter (each output pixel is the area average of
    the input pixels it covers, so no aliasing); enlarging uses bicubic.
    """
    width, height = image.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        resample = Image.Resampling.BOX if side > resolution else Image.Resampling.BICUBIC
        image = image.resize((resolution, resolution), resample)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def iter_image_files(root: PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> Iterator[Path]:
    """Image files below ``root`` (recursive, by extension, sorted for a stable order).

    Hidden files and folders (names starting with '.') are skipped: they hold
    temporary files of our own atomic writes and editor/OS clutter.
    """
    root = Path(root)
    exts = {e.lower() for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                found.append(Path(dirpath) / name)
    return iter(sorted(found))


def no_images_found() -> str:
    """The reason given for a folder without image files, with the file types looked for."""
    return f"no images found in this folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return uint8_to_tensor(torch.from_numpy(arr.copy()).permute(2, 0, 1))


def uint8_to_tensor(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 in [-1, 1]."""
    return x.float().div(127.5).sub(1.0)


def tensor_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] (..., 3, H, W) -> uint8, clamping values outside the range."""
    return ((x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """float tensor (3, H, W) in [-1, 1] -> RGB PIL image."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(x.shape)}")
    return Image.fromarray(tensor_to_uint8(x).permute(1, 2, 0).cpu().numpy(), "RGB")


def save_image(img: Image.Image, path: PathLike, **save_kwargs) -> Path:
    """Save atomically (temporary file + rename): no half-written image is ever left behind."""
    return save_images({Path(path): img}, **save_kwargs)[0]


def save_images(images: Mapping[Path, Image.Image], **save_kwargs) -> list[Path]:
    """Save several images as one set: all are written to temporary files before any is renamed into place,
    in the order given (put last the one whose presence says the set is complete)."""
    paths = [Path(p) for p in images]
    formats = [Image.registered_extensions().get(p.suffix.lower()) for p in paths]
    for path, fmt in zip(paths, formats):
        if fmt is None:
            raise ValueError(f"{path}: unknown image extension {path.suffix!r}; use .png or .jpg")
    with atomic_paths(paths) as temporaries:
        for img, tmp, fmt in zip(images.values(), temporaries, formats):
            img.save(tmp, format=fmt, **save_kwargs)
    return paths


VIEW_TILE = 96
"""Small images are shown at least this large in sample grids and reports (a 32 px face is hard to see)."""


def upscale_for_viewing(images: torch.Tensor, min_side: int = VIEW_TILE) -> torch.Tensor:
    """(N, 3, R, R) -> the same images enlarged by the smallest whole factor that reaches ``min_side``
    (nearest neighbour: every model pixel stays a visible block; large images are left as they are)."""
    factor = max(1, -(-min_side // images.shape[-1]))
    if factor == 1:
        return images
    return torch.nn.functional.interpolate(images.float(), scale_factor=factor, mode="nearest")
