"""Five-point face alignment: photo -> square face crop, and the way back (paste-back).

Coordinates are OpenCV pixel indices: the centre of the top-left pixel is
(0, 0), so an image of width W spans x in [-0.5, W - 0.5]. Every transform is a
2x3 float64 matrix ``M`` mapping a photo point p to ``M[:, :2] @ p + M[:, 2]``
in the crop (the matrix ``cv2.warpAffine`` takes). All warping goes through
OpenCV.

Canonical template
------------------
The template is defined on a *tight face square* of side F (the square an
ArcFace-style 112x112 crop covers: brows to chin), in units of F:

* both eyes on the line y = EYE_Y = 0.46, at x = 0.5 -/+ EYE_DISTANCE / 2
  with EYE_DISTANCE = 0.315 (the eyes are level by construction: the rotation
  is taken from the eye line itself, not from a least-squares fit);
* the mouth centre at y = MOUTH_Y = 0.824, i.e. EYE_TO_MOUTH = 0.364 below the
  eyes.

F is measured on the photo as max(eye distance / 0.315, eye-to-mouth distance
/ 0.364): the larger of the two estimates is robust to yaw (which shortens
the eye distance) and to pitch (which shortens the eye-to-mouth distance).

The crop is the tight face square grown by ``margin`` x F on every side, so
its side is F x (1 + 2 margin). The default margin of 0.3 keeps the hair and
the chin (eyes at 47.5% of the height, eye distance about 20% of the width,
close to CelebA's aligned crops and to the 1.5x-enlarged anime crops).

Paste-back
----------
A translated crop goes back into its photo through the inverse transform.
With the face's landmarks it is blended through a feathered oval over the face
(forehead to chin, cheek to cheek; :func:`face_mask`), so the background, the
hair around it and the rest of the crop square stay the photo's own pixels;
its colours can be shifted to match the photo along the seam
(:func:`match_colours`). Without landmarks (a centre crop) the whole square is
blended through a feathered square.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

EYE_Y = 0.46
EYE_DISTANCE = 0.315
MOUTH_Y = 0.824
EYE_TO_MOUTH = MOUTH_Y - EYE_Y
DEFAULT_MARGIN = 0.3
DEFAULT_FEATHER = 0.1
"""Width of the soft edge of a pasted-back face, as a fraction of the crop's side."""
FACE_OVAL_CENTRE_Y = 0.585
FACE_OVAL_HALF_WIDTH = 0.40
FACE_OVAL_HALF_HEIGHT = 0.46
"""The face oval paste-back blends through, in units of the tight face square (see the module docstring):
centred below the eyes, from the forehead (y = 0.125) to just below the chin (y = 1.045), 0.8 F wide."""

_BORDER_MODES = {
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}


def face_alignment_transform(landmarks5: np.ndarray, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Similarity transform from photo pixels to an aligned ``size`` x ``size`` face crop.

    ``landmarks5`` holds (x, y) of: left eye, right eye, nose, mouth left,
    mouth right ("left" meaning the image's left, as MTCNN returns them).
    In the crop the eyes land on the canonical template of the module
    docstring, at the same y.
    """
    points = np.asarray(landmarks5, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks of shape (5, 2), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("landmarks contain non-finite values")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    left_eye, right_eye = points[0], points[1]
    eye_mid = (left_eye + right_eye) / 2.0
    mouth_mid = (points[3] + points[4]) / 2.0
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector))
    eye_to_mouth = float(np.hypot(*(mouth_mid - eye_mid)))
    face_side = max(eye_distance / EYE_DISTANCE, eye_to_mouth / EYE_TO_MOUTH)
    if face_side <= 0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    angle = math.atan2(eye_vector[1], eye_vector[0])
    scale = size / (face_side * (1.0 + 2.0 * margin))
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    linear = np.array([[cos, sin], [-sin, cos]])
    eye_mid_target = np.array(
        [
            0.5 * size - 0.5,
            (EYE_Y + margin) / (1.0 + 2.0 * margin) * size - 0.5,
        ]
    )
    offset = eye_mid_target - linear @ eye_mid
    return np.hstack([linear, offset[:, None]])


def canonical_landmarks(size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Where the two eyes and the mouth centre sit in an aligned crop, shape (3, 2).

    For a frontal face whose eye and eye-to-mouth distances match the template
    ratio, :func:`face_alignment_transform` puts the eyes and mouth exactly here.
    """
    grow = 1.0 + 2.0 * margin
    template = np.array(
        [
            [0.5 - EYE_DISTANCE / 2.0, EYE_Y],
            [0.5 + EYE_DISTANCE / 2.0, EYE_Y],
            [0.5, MOUTH_Y],
        ]
    )
    return (template + margin) / grow * size - 0.5


def apply_transform(M: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points with a 2x3 affine matrix (float64)."""
    M = np.asarray(M, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return points @ M[:, :2].T + M[:, 2]


def invert_transform(M: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (crop -> photo for an alignment transform), float64."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (2, 3):
        raise ValueError(f"expected a 2x3 matrix, got shape {M.shape}")
    linear_inv = np.linalg.inv(M[:, :2])
    return np.hstack([linear_inv, (-linear_inv @ M[:, 2])[:, None]])


def compose_transforms(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """The 2x3 matrix applying ``first`` and then ``then``."""
    first = np.asarray(first, dtype=np.float64)
    then = np.asarray(then, dtype=np.float64)
    return np.hstack([then[:, :2] @ first[:, :2], (then[:, :2] @ first[:, 2] + then[:, 2])[:, None]])


def warp_to_crop(img: Image.Image, M: np.ndarray, size: int, border: str = "reflect") -> Image.Image:
    """Warp ``img`` with ``M`` (photo -> crop) into a ``size`` x ``size`` RGB crop.

    Parts of the crop outside the photo are filled according to ``border``
    ('reflect', 'replicate' or 'constant' black). Large downscales are
    antialiased.
    """
    pixels = np.asarray(img.convert("RGB"))
    return Image.fromarray(warp_array(pixels, M, (size, size), border=border), "RGB")


def warp_array(
    pixels: np.ndarray, M: np.ndarray, out_size: tuple[int, int], border: str = "reflect"
) -> np.ndarray:
    """``cv2.warpAffine`` of an (H, W[, C]) array to ``out_size`` = (width, height), antialiased.

    Bilinear warping alone aliases when shrinking by more than 2x (a face in a
    12 MP photo going to 256 px); the source is then first reduced by an
    integer factor with area averaging and ``M`` adjusted to match.
    """
    if border not in _BORDER_MODES:
        raise ValueError(f"border must be one of {sorted(_BORDER_MODES)}, got {border!r}")
    M = np.asarray(M, dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(M[:, :2])))
    factor = int(1.0 / scale) if scale > 0 else 1
    height, width = pixels.shape[:2]
    if factor >= 2 and min(height, width) >= 2 * factor:
        small_w, small_h = math.ceil(width / factor), math.ceil(height / factor)
        pixels = cv2.resize(pixels, (small_w, small_h), interpolation=cv2.INTER_AREA)
        sx, sy = width / small_w, height / small_h
        small_to_full = np.array([[sx, 0.0, 0.5 * (sx - 1.0)], [0.0, sy, 0.5 * (sy - 1.0)]])
        M = compose_transforms(small_to_full, M)
    return cv2.warpAffine(
        pixels,
        M,
        (int(out_size[0]), int(out_size[1])),
        flags=cv2.INTER_LINEAR,
        borderMode=_BORDER_MODES[border],
        borderValue=0,
    )


def feather_mask(width: int, height: int, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Float32 alpha (height, width): 1 inside, easing to 0 at the border over ``feather`` x the shorter side.

    The ramp is a smoothstep of the distance to the outermost pixel centres,
    which get alpha 0, so the seam of a pasted-back face has no visible step
    and interpolation cannot leak the face outside the crop's footprint.
    ``feather=0`` gives a hard-edged mask of ones.
    """
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    ramp = feather * min(width, height)
    if ramp <= 0:
        return np.ones((height, width), dtype=np.float32)
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    dist = np.minimum.outer(np.minimum(ys, height - 1 - ys), np.minimum(xs, width - 1 - xs))
    t = np.clip(dist / ramp, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def face_mask(landmarks5: np.ndarray, width: int, height: int, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Float32 alpha (height, width) of the face oval for 5 landmarks given in the crop's pixel coordinates.

    The oval's size and centre follow the landmarks as :func:`face_alignment_transform` measures them
    (tight face side F, rotation from the eye line; see FACE_OVAL_*). Alpha is 1 inside and eases to 0
    at the oval's edge over ``feather`` x the crop's shorter side (smoothstep), and is 0 everywhere
    outside the oval and on the crop's outermost pixels. ``feather=0`` gives a hard-edged oval.
    """
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    points = np.asarray(landmarks5, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"expected 5 finite landmarks of shape (5, 2), got {points.shape}")
    eye_mid = (points[0] + points[1]) / 2.0
    mouth_mid = (points[3] + points[4]) / 2.0
    eye_vector = points[1] - points[0]
    face_side = max(float(np.hypot(*eye_vector)) / EYE_DISTANCE, float(np.hypot(*(mouth_mid - eye_mid))) / EYE_TO_MOUTH)
    if face_side <= 0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    angle = math.atan2(eye_vector[1], eye_vector[0])
    across = np.array([math.cos(angle), math.sin(angle)])
    down = np.array([-math.sin(angle), math.cos(angle)])
    centre = eye_mid + (FACE_OVAL_CENTRE_Y - EYE_Y) * face_side * down
    half_width, half_height = FACE_OVAL_HALF_WIDTH * face_side, FACE_OVAL_HALF_HEIGHT * face_side
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs - centre[0], ys - centre[1]
    radius = np.hypot((dx * across[0] + dy * across[1]) / half_width, (dx * down[0] + dy * down[1]) / half_height)
    ramp = feather * min(width, height)
    if ramp <= 0:
        oval = (radius < 1.0).astype(np.float32)
    else:
        t = np.clip((1.0 - radius) * min(half_width, half_height) / ramp, 0.0, 1.0)
        oval = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
        oval[[0, -1], :] = 0.0  # interpolation cannot carry the face beyond the crop's footprint
        oval[:, [0, -1]] = 0.0
    return oval


def match_colours(face: np.ndarray, under: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``face`` (H, W, 3) uint8 with its colours shifted so that, weighted by ``weight`` (H, W), its mean
    CIELAB colour equals ``under``'s (the photo beneath it): the pasted face meets the photo without a
    step in colour along the seam. All-zero weights return ``face`` unchanged."""
    total = float(weight.sum())
    if total <= 0:
        return face
    face_lab = cv2.cvtColor(face.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    under_lab = cv2.cvtColor(under.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    shift = ((under_lab - face_lab) * weight[..., None]).sum(axis=(0, 1)) / total
    shifted = cv2.cvtColor((face_lab + shift.astype(np.float32)), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(shifted * 255.0), 0, 255).astype(np.uint8)


def crop_footprint(M: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """The crop's four corners in photo coordinates, shape (4, 2)."""
    width, height = crop_size
    corners = np.array(
        [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]]
    )
    return apply_transform(invert_transform(M), corners)


def paste_back(
    photo: Image.Image,
    face_img: Image.Image,
    M: np.ndarray,
    feather: float = DEFAULT_FEATHER,
    crop_size: int | None = None,
    landmarks: np.ndarray | None = None,
    colour_match: bool = False,
) -> Image.Image:
    """Warp a (translated) face crop back into ``photo`` with a feathered edge; returns a new image.

    ``M`` is the photo -> crop transform the crop was made with and
    ``crop_size`` the side it was made at; when the face image has another
    size (a model working at a different resolution) ``M`` is rescaled to it.
    ``crop_size=None`` means the face image's own size.

    ``landmarks``: the face's 5 landmarks in photo coordinates; the crop is
    then blended through the feathered face oval (:func:`face_mask`), else
    through a feathered square. Pixels where the warped mask is 0 (outside the
    oval, or outside the crop's footprint) are returned unchanged, bit for bit
    (with ``feather`` > 0; a hard edge can reach half a crop pixel beyond it).
    ``colour_match``: first shift the face's colours to the photo's along the
    seam (:func:`match_colours`, weighted by 4 alpha (1 - alpha)).
    """
    photo_rgb = np.asarray(photo.convert("RGB"))
    face = np.asarray(face_img.convert("RGB"))
    face_h, face_w = face.shape[:2]
    M = np.asarray(M, dtype=np.float64)
    if crop_size is not None and (face_w, face_h) != (crop_size, crop_size):
        sx, sy = face_w / crop_size, face_h / crop_size
        resize = np.array([[sx, 0.0, 0.5 * (sx - 1.0)], [0.0, sy, 0.5 * (sy - 1.0)]])
        M = compose_transforms(M, resize)
    if landmarks is not None:
        mask = face_mask(apply_transform(M, landmarks), face_w, face_h, feather)
    else:
        mask = feather_mask(face_w, face_h, feather)
    if colour_match:
        under = warp_array(photo_rgb, M, (face_w, face_h), border="replicate")
        face = match_colours(face, under, 4.0 * mask * (1.0 - mask))
    photo_h, photo_w = photo_rgb.shape[:2]
    corners = crop_footprint(M, (face_w, face_h))
    x0 = max(int(math.floor(corners[:, 0].min())), 0)
    y0 = max(int(math.floor(corners[:, 1].min())), 0)
    x1 = min(int(math.ceil(corners[:, 0].max())) + 1, photo_w)
    y1 = min(int(math.ceil(corners[:, 1].max())) + 1, photo_h)
    result = photo_rgb.copy()
    if x0 >= x1 or y0 >= y1:
        return Image.fromarray(result, "RGB")
    crop_to_roi = compose_transforms(invert_transform(M), np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]))
    roi_size = (x1 - x0, y1 - y0)
    warped_face = warp_array(face, crop_to_roi, roi_size, border="replicate").astype(np.float32)
    alpha = warp_array(mask, crop_to_roi, roi_size, border="constant")[..., None]
    roi = result[y0:y1, x0:x1].astype(np.float32)
    blended = roi + alpha * (warped_face - roi)
    result[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return Image.fromarray(result, "RGB")
