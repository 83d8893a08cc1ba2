"""Anime face detection with nagadomi's OpenCV cascade, as the Getchu dataset was cropped.

The cascade file ``lbpcascade_animeface.xml`` is not bundled (nor
downloadable on a machine without internet): the user fetches it once from
https://github.com/nagadomi/lbpcascade_animeface and passes its path. The
detected box covers the face only, so it is enlarged (1.5x by default, about
what the Getchu crops used) to keep the hair.

Two implementations run the cascade: OpenCV's ``CascadeClassifier`` (fast;
OpenCV 4.x has it, OpenCV 5 moved it to the opencv-contrib build) and
scikit-image's ``feature.Cascade`` (LBP cascades only, which the anime cascade
is; several times slower). ``backend='auto'`` takes OpenCV's when the
installed OpenCV has it, else scikit-image's; the backend in use is recorded
in the prep log and summary.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from PIL import Image

from twingan.errors import ConfigError
from twingan.faces.align import warp_to_crop

PathLike = Union[str, os.PathLike]

CASCADE_NAME = "lbpcascade_animeface.xml"
CASCADE_URL = "https://github.com/nagadomi/lbpcascade_animeface"
DEFAULT_ENLARGE = 1.5
OUTSIDE_MODES = ("pad", "clip")
BACKENDS = ("auto", "opencv", "skimage")


def _cascade_help(path: Path) -> str:
    return (
        f"anime face detection needs the OpenCV cascade {CASCADE_NAME} from {CASCADE_URL} "
        f"(download {CASCADE_NAME} from that repository once and pass its path, e.g. --cascade "
        f"/path/to/{CASCADE_NAME}); got {str(path)!r}"
    )


@dataclass(frozen=True)
class AnimeFace:
    """A detected anime face: the cascade's box and the enlarged square crop box.

    Boxes are (x1, y1, x2, y2) pixel-edge coordinates as PIL's ``crop`` takes
    them: the box (0, 0, W, H) is the whole image.
    """

    box: tuple[float, float, float, float]
    crop_box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    def crop_transform(self, size: int) -> np.ndarray:
        """2x3 matrix mapping the photo to a ``size`` x ``size`` crop of ``crop_box``."""
        x1, y1, x2, y2 = self.crop_box
        scale = size / (x2 - x1)
        # Pixel index i has its centre at edge coordinate i + 0.5; edge x1 maps to the crop's edge.
        return np.array(
            [[scale, 0.0, scale * (0.5 - x1) - 0.5], [0.0, scale, scale * (0.5 - y1) - 0.5]]
        )

    def to_dict(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "crop_box": [round(v, 2) for v in self.crop_box]}


def opencv_has_cascades() -> bool:
    """OpenCV 5 dropped CascadeClassifier from the main package (it lives in opencv-contrib now)."""
    return hasattr(cv2, "CascadeClassifier")


def _skimage_available() -> bool:
    try:
        import skimage.feature  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """'auto' -> 'opencv' when this OpenCV has CascadeClassifier, else 'skimage' when installed."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend in ("auto", "opencv") and opencv_has_cascades():
        return "opencv"
    if backend in ("auto", "skimage") and _skimage_available():
        return "skimage"
    if backend == "opencv":
        raise ConfigError(
            f"this OpenCV ({cv2.__version__}) has no CascadeClassifier (OpenCV 5 moved it to opencv-contrib); "
            "install 'opencv-python-headless<5' or 'opencv-contrib-python-headless', or use --backend skimage"
        )
    raise ConfigError(
        f"no cascade implementation available: this OpenCV ({cv2.__version__}) has no CascadeClassifier and "
        "scikit-image is not installed; install 'opencv-python-headless<5' or 'scikit-image'"
    )


def _read_cascade_header(path: Path) -> ElementTree.Element:
    """The root of a cascade XML file, after checking it looks like one (a bad file must not crash a backend)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise ConfigError(f"not a valid OpenCV cascade file ({exc}): {_cascade_help(path)}") from exc
    if root.tag != "opencv_storage" or len(root) == 0:
        raise ConfigError(f"not an OpenCV cascade file (no <opencv_storage> cascade): {_cascade_help(path)}")
    return root


class _OpenCVCascade:
    def __init__(self, path: Path) -> None:
        _read_cascade_header(path)
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise ConfigError(f"OpenCV could not load the cascade: {_cascade_help(path)}")

    def detect(self, grey: np.ndarray, scale_factor: float, min_neighbors: int, min_size: int) -> np.ndarray:
        found = self._classifier.detectMultiScale(
            grey, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size)
        )
        return np.asarray(found, dtype=np.float64).reshape(-1, 4)


class _SkimageCascade:
    def __init__(self, path: Path) -> None:
        from skimage.feature import Cascade

        root = _read_cascade_header(path)
        feature_type = root.findtext("cascade/featureType")
        if feature_type is None or feature_type.strip() != "LBP":
            raise ConfigError(
                f"the scikit-image backend runs LBP cascades only, and this file is not one "
                f"(featureType {feature_type!r}): {_cascade_help(path)}"
            )
        self._cascade = Cascade(str(path))

    def detect(self, grey: np.ndarray, scale_factor: float, min_neighbors: int, min_size: int) -> np.ndarray:
        height, width = grey.shape
        found = self._cascade.detect_multi_scale(
            img=grey,
            scale_factor=scale_factor,
            step_ratio=1.0,
            min_size=(min_size, min_size),
            max_size=(height, width),
            min_neighbor_number=min_neighbors,
        )
        boxes = [(d["c"], d["r"], d["width"], d["height"]) for d in found]
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


class AnimeFaceDetector:
    """A cascade over the equalised grey image; faces come back largest first.

    ``enlarge`` scales the square around the detected box's centre (side =
    enlarge x the box's longer side). Where that square leaves the picture,
    ``outside='pad'`` keeps it and fills the missing part by repeating the
    edge pixels; ``outside='clip'`` moves it inside the picture and shrinks it
    only when it is larger than the picture's shorter side. ``backend`` is
    'auto', 'opencv' or 'skimage' (see the module docstring).
    """

    def __init__(
        self,
        cascade_path: PathLike,
        enlarge: float = DEFAULT_ENLARGE,
        outside: str = "pad",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        backend: str = "auto",
    ) -> None:
        path = Path(cascade_path)
        if not path.is_file():
            raise ConfigError(f"cascade file not found: {_cascade_help(path)}")
        if enlarge < 1.0:
            raise ConfigError(f"enlarge must be >= 1.0 (1.5 keeps the hair), got {enlarge}")
        if outside not in OUTSIDE_MODES:
            raise ConfigError(f"outside must be one of {OUTSIDE_MODES}, got {outside!r}")
        if scale_factor <= 1.0:
            raise ConfigError(f"scale_factor must be > 1.0, got {scale_factor}")
        if min_size < 1:
            raise ConfigError(f"min_size must be >= 1 pixel, got {min_size}")
        self.backend = resolve_backend(backend)
        self._cascade = _OpenCVCascade(path) if self.backend == "opencv" else _SkimageCascade(path)
        self.cascade_path = path
        self.enlarge = float(enlarge)
        self.outside = outside
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def detect(self, img: Image.Image) -> list[AnimeFace]:
        """Faces in an RGB image, largest first."""
        grey = cv2.equalizeHist(cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2GRAY))
        found = self._cascade.detect(grey, self.scale_factor, self.min_neighbors, self.min_size)
        faces = []
        for x, y, w, h in found:
            box = (float(x), float(y), float(x + w), float(y + h))
            faces.append(AnimeFace(box=box, crop_box=self.crop_box(box, img.size)))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def crop_box(self, box: tuple[float, float, float, float], image_size: tuple[int, int]) -> tuple[float, ...]:
        """The enlarged square for a detected box, fitted to the image per ``outside``."""
        x1, y1, x2, y2 = box
        side = self.enlarge * max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        if self.outside == "clip":
            width, height = image_size
            side = min(side, width, height)
            cx = min(max(cx, side / 2.0), width - side / 2.0)
            cy = min(max(cy, side / 2.0), height - side / 2.0)
        half = side / 2.0
        return (cx - half, cy - half, cx + half, cy + half)

    def crop(self, img: Image.Image, face: AnimeFace, size: int) -> Image.Image:
        """The ``size`` x ``size`` crop of ``face.crop_box`` (edge pixels repeat outside the image)."""
        return warp_to_crop(img, face.crop_transform(size), size, border="replicate")
