"""Face detection (MTCNN), 5-point alignment and paste-back, checked on skimage's astronaut."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.feature import Cascade

from twingan.faces import FaceDetector, apply_transform, face_alignment_transform, invert_transform, paste_back
from twingan.faces.align import canonical_landmarks, warp_array, warp_to_crop


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(device="cpu", min_face_size=40)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def astronaut_faces(detector, astronaut):
    return detector.detect(astronaut)


def _changed_bbox(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int]:
    changed = np.any(np.asarray(before) != np.asarray(after), axis=2)
    ys, xs = np.nonzero(changed)
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_astronaut_has_exactly_one_face_matching_another_detector(astronaut_faces, astronaut):
    assert len(astronaut_faces) == 1
    face = astronaut_faces[0]
    assert face.score > 0.99
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float64
    x1, y1, x2, y2 = face.box
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # An independent detector (scikit-image's LBP frontal-face cascade) finds the same face.
    cascade = Cascade(data.lbp_frontal_face_cascade_filename())
    found = cascade.detect_multi_scale(
        img=np.asarray(astronaut), scale_factor=1.2, step_ratio=1, min_size=(60, 60), max_size=(200, 200)
    )
    ref = max(found, key=lambda d: d["width"] * d["height"])
    hx, hy, hw, hh = ref["c"], ref["r"], ref["width"], ref["height"]
    inter_w = min(x2, hx + hw) - max(x1, hx)
    inter_h = min(y2, hy + hh) - max(y1, hy)
    inter = max(inter_w, 0) * max(inter_h, 0)
    iou = inter / (face.area + hw * hh - inter)
    assert iou > 0.5


def test_aligned_crop_has_level_eyes_at_the_template(detector, astronaut, astronaut_faces):
    face = astronaut_faces[0]
    size = 128
    matrix = face_alignment_transform(face.landmarks, size)
    assert matrix.shape == (2, 3) and matrix.dtype == np.float64
    mapped = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert abs(mapped[0, 1] - mapped[1, 1]) < 1e-9
    template = canonical_landmarks(size)
    np.testing.assert_allclose(mapped[:2].mean(axis=0), template[:2].mean(axis=0), atol=1e-9)
    # Similarity transform: uniform scale, no shear.
    linear = matrix[:, :2]
    np.testing.assert_allclose(linear @ linear.T, np.eye(2) * np.linalg.det(linear), atol=1e-12)

    crop = warp_to_crop(astronaut, matrix, size)
    assert crop.size == (size, size)
    redetected = detector.detect(crop)
    assert len(redetected) == 1
    eyes = redetected[0].landmarks[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0
    # The warp really applied the matrix: the re-detected landmarks sit where M sends the originals.
    assert np.abs(redetected[0].landmarks - apply_transform(matrix, face.landmarks)).max() < 2.5


def test_alignment_levels_a_rotated_face(detector, astronaut, astronaut_faces):
    rotated = astronaut.rotate(20, resample=Image.BILINEAR, center=(224, 110))
    faces = detector.detect(rotated)
    assert len(faces) == 1
    eyes = faces[0].landmarks[:2]
    tilt = np.degrees(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    upright = astronaut_faces[0].landmarks[:2]
    upright_tilt = np.degrees(np.arctan2(upright[1, 1] - upright[0, 1], upright[1, 0] - upright[0, 0]))
    assert abs((upright_tilt - tilt) - 20) < 4  # PIL rotates counter-clockwise
    matrix = face_alignment_transform(faces[0].landmarks, 128)
    redetected = detector.detect(warp_to_crop(rotated, matrix, 128))
    assert len(redetected) == 1
    assert abs(redetected[0].landmarks[0, 1] - redetected[0].landmarks[1, 1]) < 1.5


def test_paste_back_of_unchanged_crop_reproduces_the_photo(astronaut, astronaut_faces):
    face = astronaut_faces[0]
    matrix = face_alignment_transform(face.landmarks, 256)
    crop = warp_to_crop(astronaut, matrix, 256)
    pasted = paste_back(astronaut, crop, matrix, feather=0.1)
    before, after = np.asarray(astronaut).astype(int), np.asarray(pasted).astype(int)
    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    assert np.abs(before - after)[y1:y2, x1:x2].mean() < 3.5
    # Far outside the face: bit-identical (the crop's footprint ends ~2.5 face widths away).
    assert np.array_equal(before[300:], after[300:])
    assert np.array_equal(before[:, 360:], after[:, 360:])
    assert np.array_equal(before[:, :100], after[:, :100])


def test_paste_back_of_solid_colour_lands_on_the_face(astronaut, astronaut_faces):
    face = astronaut_faces[0]
    size = 128
    matrix = face_alignment_transform(face.landmarks, size)
    red = Image.new("RGB", (size, size), (255, 0, 0))
    pasted = paste_back(astronaut, red, matrix, feather=0.1)
    x1, y1, x2, y2 = face.box
    # The whole detected face box is fully covered by the opaque centre of the crop.
    covered = np.asarray(pasted)[int(np.ceil(y1)) : int(y2), int(np.ceil(x1)) : int(x2)]
    assert np.all(covered == [255, 0, 0])
    # The changed pixels span the crop square mapped back by solving M p = corner (no invert_transform).
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    back = np.linalg.solve(matrix[:, :2], (corners - matrix[:, 2]).T).T
    expected = np.array([back[:, 0].min(), back[:, 1].min(), back[:, 0].max(), back[:, 1].max()])
    expected = np.clip(expected, 0, 511)
    # The same crop made by a model at another resolution pastes to the same place.
    pasted_small = paste_back(astronaut, red.resize((64, 64)), matrix, feather=0.1, crop_size=size)
    for result in (pasted, pasted_small):
        changed = np.array(_changed_bbox(astronaut, result), dtype=float)
        np.testing.assert_allclose(changed, expected, atol=4.0)
        # Never outside the footprint.
        assert changed[0] >= np.floor(expected[0]) and changed[1] >= np.floor(expected[1])
        assert changed[2] <= np.ceil(expected[2]) and changed[3] <= np.ceil(expected[3])


def test_invert_transform_round_trips_points_in_float64(astronaut_faces):
    matrix = face_alignment_transform(astronaut_faces[0].landmarks, 256, margin=0.4)
    inverse = invert_transform(matrix)
    assert inverse.dtype == np.float64
    points = np.random.default_rng(0).uniform(-1000, 5000, size=(50, 2))
    round_trip = apply_transform(inverse, apply_transform(matrix, points))
    assert np.abs(round_trip - points).max() < 1e-9
    np.testing.assert_allclose(inverse, cv2.invertAffineTransform(matrix), rtol=1e-12, atol=1e-12)


def test_face_alignment_rejects_bad_landmarks():
    with pytest.raises(ValueError):
        face_alignment_transform(np.zeros((4, 2)), 128)
    with pytest.raises(ValueError):
        face_alignment_transform(np.full((5, 2), np.nan), 128)


def test_warp_antialiases_large_downscales():
    # A one-pixel checkerboard shrunk 8x must average to mid-grey, not alias to black or white.
    checker = ((np.indices((512, 512)).sum(axis=0) % 2) * 255).astype(np.uint8)
    shrink = np.array([[1 / 8, 0.0, 0.0], [0.0, 1 / 8, 0.0]])
    small = warp_array(checker, shrink, (64, 64), border="replicate")
    assert abs(small[4:-4, 4:-4].astype(float).mean() - 127.5) < 2
    assert small[4:-4, 4:-4].std() < 3


def test_detect_many_matches_detect(detector, astronaut):
    small = astronaut.resize((320, 320), Image.BILINEAR)
    cat = Image.fromarray(data.chelsea()).resize((320, 213), Image.BILINEAR)
    batch = detector.detect_many([small, cat, small.copy()])
    single = detector.detect(small)
    assert [len(faces) for faces in batch] == [1, 0, 1]
    np.testing.assert_allclose(batch[0][0].box, single[0].box, atol=1e-3)
    np.testing.assert_allclose(batch[2][0].landmarks, single[0].landmarks, atol=1e-3)


def test_detection_on_a_downscaled_copy_maps_back_to_full_resolution(detector, astronaut, astronaut_faces):
    big = astronaut.resize((1024, 1024), Image.BILINEAR)
    # min_face_size 80 at full size is 40 on the half-size copy: the same pyramid as the module's detector.
    limited = FaceDetector(device="cpu", min_face_size=80, max_detect_side=512)
    faces = limited.detect(big)
    assert len(faces) == 1
    # Detected on the 512 copy, reported in 1024 coordinates: twice the original detection.
    expected = (astronaut_faces[0].landmarks + 0.5) * 2 - 0.5
    assert np.abs(faces[0].landmarks - expected).max() < 1.0
