"""The training crops of each face profile, as `twingan prep photo|anime|cat` makes them.

Each cropper is the ``process(path, image) -> list[Crop]`` of
:func:`twingan.faces.prep_runner.run_prep` for one profile
(:mod:`twingan.faces.profiles`), with the options it records in the prep log:

* :class:`PhotoCropper`: MTCNN faces, eyes levelled by the 5-point alignment
  that translation uses too;
* :class:`AnimeCropper`: the lbpcascade_animeface box, enlarged;
* :class:`CatCropper`: the CAT dataset's keypoints, eyes levelled.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from twingan.data.cat_crop import DEFAULT_MARGIN as CAT_MARGIN
from twingan.data.cat_crop import CatKeypointError
from twingan.errors import ConfigError
from twingan.faces.align import DEFAULT_MARGIN, face_alignment_transform, warp_to_crop
from twingan.faces.anime import DEFAULT_ENLARGE, AnimeFaceDetector
from twingan.faces.cats import cat_keypoint_path, crop_cat, read_cat_keypoints
from twingan.faces.detect import DEFAULT_MIN_SCORE, FaceDetector
from twingan.faces.prep_runner import Crop, SkipImage
from twingan.faces.profiles import ANIME, CAT, PHOTO

FORMER_TOOL_NAMES = {PHOTO: ("human",), CAT: ("cats",)}
"""The names of the crop tools before they were named after profiles: still accepted as commands, and a prep
folder they started resumes under the new name."""
DEFAULT_PHOTO_MIN_FACE = 64
DETECTION_MIN_FACE = 20
"""MTCNN looks for faces down to this size, so that smaller ones are reported as 'face too small', not 'no face'."""


def _check_size(size: int, max_faces: int = 1) -> None:
    if size < 8:
        raise ConfigError(f"--size must be at least 8 pixels, got {size}")
    if max_faces < 1:
        raise ConfigError(f"--max-faces must be at least 1, got {max_faces}")


def _check_margin(margin: float) -> None:
    if margin < 0:
        raise ConfigError(f"--margin must be >= 0, got {margin}")


class PhotoCropper:
    """Aligned crops of the ``max_faces`` largest faces at least ``min_face_size`` px wide (``photo`` profile)."""

    def __init__(
        self, size: int, *, margin: float = DEFAULT_MARGIN, max_faces: int = 1,
        min_face_size: int = DEFAULT_PHOTO_MIN_FACE, min_score: float = DEFAULT_MIN_SCORE, border: str = "reflect",
        device: str = "auto",
    ) -> None:
        _check_size(size, max_faces)
        _check_margin(margin)
        if min_face_size < 1:
            raise ConfigError(f"--min-face-size must be at least 1 pixel, got {min_face_size}")
        self.detector = FaceDetector(device=device, min_face_size=min(DETECTION_MIN_FACE, min_face_size),
                                     min_score=min_score)
        self.options = {"size": size, "margin": margin, "max_faces": max_faces, "min_face_size": min_face_size,
                        "min_score": min_score, "border": border}

    def __call__(self, path: Path, image: Image.Image) -> list[Crop]:
        o = self.options
        faces = self.detector.detect(image)
        if not faces:
            raise SkipImage("no face")
        large = [f for f in faces if min(f.width, f.height) >= o["min_face_size"]]
        if not large:
            raise SkipImage("face too small", f"largest face {faces[0].width:.0f}x{faces[0].height:.0f} px")
        crops = []
        for face in large[: o["max_faces"]]:
            matrix = face_alignment_transform(face.landmarks, o["size"], margin=o["margin"])
            crop = warp_to_crop(image, matrix, o["size"], border=o["border"])
            crops.append(Crop(crop, {**face.to_dict(), "matrix": matrix.round(6).tolist()}))
        return crops


class AnimeCropper:
    """Enlarged cascade boxes of the ``max_faces`` largest anime faces (``anime`` profile)."""

    def __init__(
        self, cascade: str | Path, size: int, *, enlarge: float = DEFAULT_ENLARGE, outside: str = "pad",
        max_faces: int = 1, min_face_size: int = 48, backend: str = "auto",
    ) -> None:
        _check_size(size, max_faces)
        self.detector = AnimeFaceDetector(cascade, enlarge=enlarge, outside=outside, min_size=min_face_size,
                                          backend=backend)
        self.options = {"size": size, "enlarge": enlarge, "outside": outside, "max_faces": max_faces,
                        "min_face_size": min_face_size, "backend": self.detector.backend}

    def __call__(self, path: Path, image: Image.Image) -> list[Crop]:
        faces = self.detector.detect(image)
        if not faces:
            raise SkipImage("no face")
        size = self.options["size"]
        return [Crop(self.detector.crop(image, face, size), face.to_dict())
                for face in faces[: self.options["max_faces"]]]


class CatCropper:
    """The eye-levelled face of a photo with a CAT ``.cat`` keypoint file beside it (``cat`` profile)."""

    def __init__(self, size: int, *, margin: float | None = None) -> None:
        _check_size(size)
        margin = CAT_MARGIN if margin is None else margin
        _check_margin(margin)
        self.options = {"size": size, "margin": margin}

    def __call__(self, path: Path, image: Image.Image) -> list[Crop]:
        keypoint_file = cat_keypoint_path(path)
        if not keypoint_file.is_file():
            raise SkipImage("no .cat keypoint file", keypoint_file.name)
        try:
            keypoints = read_cat_keypoints(keypoint_file)
        except CatKeypointError as exc:
            raise SkipImage("invalid .cat keypoint file", exc.reason) from exc
        crop = crop_cat(image, keypoints, self.options["size"], self.options["margin"])
        return [Crop(crop, {"keypoints": keypoints.tolist()})]
