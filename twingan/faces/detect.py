"""Human face detection with MTCNN (facenet-pytorch), returning boxes and 5 landmarks.

The MTCNN weights (P-, R- and O-net, about 2 MB) ship inside the
facenet-pytorch package, so detection works offline with nothing to download.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from twingan.errors import ConfigError
from twingan.utils.device import DeviceLike, resolve_device


LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Order of :attr:`Face.landmarks`; 'left' is the image's left (the person's right eye)."""

DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
DEFAULT_MIN_SCORE = 0.9
DEFAULT_MAX_DETECT_SIDE = 1280
MTCNN_SMALLEST_FACE = 12
"""The face size, in pixels of the image it sees, that MTCNN's first stage (P-net) detects."""
MIN_SHRUNK_SIDE = 320
"""The shorter side below which a detection copy is not shrunk to MTCNN's first pyramid scale."""


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in photo pixel coordinates (OpenCV convention, x then y)."""

    box: tuple[float, float, float, float]
    """x1, y1, x2, y2."""
    landmarks: np.ndarray
    """(5, 2) float64, in the order of LANDMARK_NAMES."""
    score: float
    """MTCNN's final-stage face probability, 0..1."""

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    def to_dict(self) -> dict:
        """JSON-friendly form (logs, reports)."""
        return {
            "box": [round(v, 2) for v in self.box],
            "landmarks": np.round(self.landmarks, 2).tolist(),
            "score": round(self.score, 5),
        }


class FaceDetector:
    """MTCNN face detector; faces come back largest first.

    ``min_face_size`` (pixels of the original photo) is both MTCNN's smallest
    pyramid scale and a filter on the returned boxes (shorter side).
    ``thresholds`` are MTCNN's three stage thresholds; ``min_score`` filters
    the final probability. Photos whose longer side exceeds
    ``max_detect_side`` are detected on a downscaled copy (MTCNN's cost grows
    with the pixel count) and the results are scaled back; None disables it.
    """

    def __init__(
        self,
        device: DeviceLike = "auto",
        min_face_size: int = 20,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        min_score: float = DEFAULT_MIN_SCORE,
        max_detect_side: int | None = DEFAULT_MAX_DETECT_SIDE,
        pyramid_factor: float = 0.709,
    ) -> None:
        from facenet_pytorch import MTCNN

        if min_face_size < 1:
            raise ConfigError(f"min_face_size must be >= 1 pixel, got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ConfigError(f"thresholds must be three values in [0, 1], got {list(thresholds)}")
        if not 0.0 <= min_score <= 1.0:
            raise ConfigError(f"min_score must be in [0, 1], got {min_score}")
        if max_detect_side is not None and max_detect_side < 48:
            raise ConfigError(f"max_detect_side must be >= 48 pixels or None, got {max_detect_side}")
        self.device = resolve_device(device)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.min_score = float(min_score)
        self.max_detect_side = max_detect_side
        self.pyramid_factor = pyramid_factor
        self._mtcnn = MTCNN(
            keep_all=True,
            select_largest=False,
            post_process=False,
            min_face_size=self.min_face_size,
            thresholds=list(self.thresholds),
            factor=pyramid_factor,
            device=self.device,
        )

    def detect(self, img: Image.Image) -> list[Face]:
        """Faces in one RGB photo, largest first (empty list when there is none)."""
        return self.detect_many([img])[0]

    def detect_many(self, images: Sequence[Image.Image], batch_size: int = 16) -> list[list[Face]]:
        """Faces for several photos; photos of equal (detection) size run through MTCNN together."""
        prepared = [self._detection_copy(img) for img in images]
        results: list[list[Face]] = [[] for _ in images]
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, (small, _) in enumerate(prepared):
            by_size.setdefault(small.size, []).append(index)
        for (width, height), indices in by_size.items():
            scale = float(prepared[indices[0]][1].min())
            min_size = max(12.0, self.min_face_size * scale)
            if min(width, height) < min_size:
                continue  # no face of the minimum size fits (and MTCNN fails on an empty pyramid)
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                self._mtcnn.min_face_size = min_size
                with torch.inference_mode():
                    boxes, probs, points = self._mtcnn.detect([prepared[i][0] for i in chunk], landmarks=True)
                for i, b, p, l in zip(chunk, boxes, probs, points):
                    results[i] = self._to_faces(b, p, l, prepared[i][1])
        return results

    def _detection_copy(self, img: Image.Image) -> tuple[Image.Image, np.ndarray]:
        """The image MTCNN runs on, and its (x, y) scale relative to the original.

        MTCNN's image pyramid starts at 12 / min_face_size (its P-net finds 12 px faces), so a copy shrunk to
        that scale gives the same pyramid; only the copy is smaller to resample at every level and to cut the
        R- and O-net candidates from (measured: a third less detection time at 512 px, the same faces). The copy
        keeps a shorter side of at least MIN_SHRUNK_SIDE: on a small picture a face shrunk below O-net's 48 px
        input loses landmark precision (a 128 px crop re-detected on a 77 px copy: 2.7 px off instead of 1.7).
        Landmarks are scaled back, and the face is aligned on the full photo.
        """
        img = img.convert("RGB")
        longer, shorter = max(img.size), min(img.size)
        scale = min(1.0, max(MTCNN_SMALLEST_FACE / self.min_face_size, MIN_SHRUNK_SIDE / shorter))
        if self.max_detect_side is not None:
            scale = min(scale, self.max_detect_side / longer)
        if scale >= 1.0:
            return img, np.ones(2)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        small = img.resize(size, Image.BILINEAR, reducing_gap=2.0)
        return small, np.array([small.width / img.width, small.height / img.height])

    def _to_faces(self, boxes, probs, points, scale: np.ndarray) -> list[Face]:
        if boxes is None:
            return []
        faces = []
        for box, prob, landmarks in zip(boxes, probs, points):
            box = np.asarray(box, dtype=np.float64)
            landmarks = np.asarray(landmarks, dtype=np.float64)
            if np.any(scale != 1.0):
                # Pixel-index coordinates: x_full = (x_small + 0.5) / scale - 0.5.
                box = (box + 0.5) / np.tile(scale, 2) - 0.5
                landmarks = (landmarks + 0.5) / scale - 0.5
            face = Face(box=tuple(float(v) for v in box), landmarks=landmarks, score=float(prob))
            if face.score < self.min_score or not math.isfinite(face.area):
                continue
            if min(face.width, face.height) < self.min_face_size:
                continue
            faces.append(face)
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
