"""Photos -> faces -> translations: detect, align, translate, then side-by-side and paste-back images.

Faces are found with MTCNN and aligned with the same 5-point similarity
transform `twingan prep photo` makes training crops with
(:func:`twingan.faces.face_alignment_transform`), at the model resolution. A
translated face goes back into its photo through the inverse of that transform,
blended through a feathered oval over the face drawn from its landmarks, its
colours matched to the photo's along the seam (:func:`twingan.faces.paste_back`):
the background and the rest of the crop square keep the photo's pixels.

Without a detector every picture is taken as a face crop already: it is
centre-cropped to a square and resized as the training data was. The same
centre crop is the ``fallback="center-crop"`` for photos in which no face is
found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from twingan.data.image_io import resize_square, tensor_to_pil
from twingan.errors import ConfigError
from twingan.faces import Face, FaceDetector, face_alignment_transform, paste_back, warp_to_crop
from twingan.faces.align import DEFAULT_FEATHER, DEFAULT_MARGIN
from twingan.errors import NoFaceError
from twingan.inference.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MAX_FACES


class CropTranslator(Protocol):
    """What the pipeline needs of a :class:`~twingan.inference.translator.Translator` (which imports this module)."""

    resolution: int

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor: ...

    def translate_tensor(
        self, x: torch.Tensor, to: str, src: str, batch_size: int = DEFAULT_BATCH_SIZE, cond: torch.Tensor | None = None
    ) -> torch.Tensor: ...

FALLBACKS = ("none", "center-crop")
BORDERS = ("reflect", "replicate", "constant")


@dataclass
class FaceCrop:
    """One model input cut from a photo."""

    crop: Image.Image
    """RGB, model resolution: what the translator sees."""
    matrix: np.ndarray
    """2x3 photo -> crop transform (for paste-back)."""
    face: Face | None
    """The detection it came from; None for a centre crop."""


@dataclass
class PhotoResult:
    """The translations of one photo, or why there are none (``error``)."""

    photo: Image.Image
    crops: list[FaceCrop] = field(default_factory=list)
    translations: list[Image.Image] = field(default_factory=list)
    error: str | None = None

    def side_by_side(self) -> Image.Image:
        """One row per face: the aligned input crop, then its translation."""
        side = self.crops[0].crop.width
        canvas = Image.new("RGB", (2 * side, side * len(self.crops)))
        for row, (crop, translated) in enumerate(zip(self.crops, self.translations)):
            canvas.paste(crop.crop, (0, row * side))
            canvas.paste(translated, (side, row * side))
        return canvas

    @property
    def avatar(self) -> Image.Image:
        """The translation of the largest face (or of the picture taken as a crop)."""
        if not self.translations:
            raise NoFaceError(self.error or "this photo has no translation")
        return self.translations[0]

    def pasted(self, feather: float = DEFAULT_FEATHER) -> Image.Image:
        """The photo with every translated face blended back into place through the feathered face oval,
        colours matched along the seam (a picture taken as a crop: through the feathered square)."""
        result = self.photo
        for crop, translated in zip(self.crops, self.translations):
            landmarks = crop.face.landmarks if crop.face is not None else None
            result = paste_back(result, translated, crop.matrix, feather=feather, crop_size=crop.crop.width,
                                landmarks=landmarks, colour_match=True)
        return result


def center_crop_transform(width: int, height: int, size: int) -> np.ndarray:
    """2x3 photo -> crop transform of the centred square (side min(width, height)) scaled to ``size``.

    The square starts at the same integer pixel offsets as
    :func:`twingan.data.image_io.resize_square` uses (pixel-index coordinates).
    """
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    scale = size / side
    return np.array(
        [[scale, 0.0, (0.5 - left) * scale - 0.5], [0.0, scale, (0.5 - top) * scale - 0.5]], dtype=np.float64
    )


NO_FACE_HINT = "--no-detect takes pictures as face crops, --fallback center-crop translates the centre"
"""What `twingan translate` offers for a photo without a face (other callers pass their own options)."""


class FacePipeline:
    """Translate the faces of photos (``detector`` given) or whole pictures taken as crops (``detector`` None).

    ``max_faces``: the largest K faces of a photo are translated. ``margin`` and
    ``border`` are the alignment options of `twingan prep photo` and must match
    the ones the training crops were made with. ``fallback='center-crop'``
    translates the centre square of a photo without a detected face instead of
    reporting it.
    """

    def __init__(
        self,
        translator: CropTranslator,
        detector: FaceDetector | None,
        *,
        max_faces: int = DEFAULT_MAX_FACES,
        margin: float = DEFAULT_MARGIN,
        border: str = "reflect",
        fallback: str = "none",
        no_face_hint: str = NO_FACE_HINT,
    ) -> None:
        if max_faces < 1:
            raise ConfigError(f"max faces must be at least 1, got {max_faces}")
        if margin < 0:
            raise ConfigError(f"margin must be >= 0, got {margin}")
        if border not in BORDERS:
            raise ConfigError(f"border must be one of {list(BORDERS)}, got {border!r}")
        if fallback not in FALLBACKS:
            raise ConfigError(f"fallback must be one of {list(FALLBACKS)}, got {fallback!r}")
        self.translator = translator
        self.detector = detector
        self.max_faces = max_faces
        self.margin = margin
        self.border = border
        self.fallback = fallback
        self.no_face_hint = no_face_hint

    def face_crops(self, photos: Sequence[Image.Image]) -> list[PhotoResult]:
        """Detect and align (or centre-crop): results with ``crops`` filled, or ``error`` set."""
        size = self.translator.resolution
        if self.detector is None:
            return [PhotoResult(photo, [self._center_crop(photo, size)]) for photo in photos]
        results = []
        for photo, faces in zip(photos, self.detector.detect_many(photos)):
            if faces:
                crops = [self._aligned_crop(photo, face, size) for face in faces[: self.max_faces]]
                results.append(PhotoResult(photo, crops))
            elif self.fallback == "center-crop":
                results.append(PhotoResult(photo, [self._center_crop(photo, size)]))
            else:
                results.append(PhotoResult(photo, error=self._no_face_reason(photo)))
        return results

    def run(
        self,
        photos: Sequence[Image.Image],
        to: str,
        src: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cond: torch.Tensor | None = None,
    ) -> list[PhotoResult]:
        """Crop and translate every face of ``photos``; all crops go through the model in batches.

        ``cond``: a condition from :meth:`Translator.condition` (reference style, attributes) applied to
        every face; None translates unconditioned.
        """
        results = self.face_crops(photos)
        crops = [crop.crop for result in results for crop in result.crops]
        if not crops:
            return results
        batch = self.translator.preprocess(crops)
        translated = iter(self.translator.translate_tensor(batch, to, src, batch_size, cond))
        for result in results:
            result.translations = [tensor_to_pil(next(translated)) for _ in result.crops]
        return results

    def _aligned_crop(self, photo: Image.Image, face: Face, size: int) -> FaceCrop:
        matrix = face_alignment_transform(face.landmarks, size, margin=self.margin)
        return FaceCrop(warp_to_crop(photo, matrix, size, border=self.border), matrix, face)

    @staticmethod
    def _center_crop(photo: Image.Image, size: int) -> FaceCrop:
        crop = Image.fromarray(resize_square(photo, size), "RGB")
        return FaceCrop(crop, center_crop_transform(photo.width, photo.height, size), None)

    def _no_face_reason(self, photo: Image.Image) -> str:
        return (
            f"no face found (of at least {self.detector.min_face_size} px in the {photo.width}x{photo.height} "
            f"photo); {self.no_face_hint}"
        )
