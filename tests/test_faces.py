"""Face detection (MTCNN), 5-point alignment and paste-back, checked on skimage's astronaut."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.feature import Cascade

from twingan.faces import FaceDetector, apply_transform, face_alignment_transform, invert_transform, paste_back
from twingan.faces.align import canonical_landmarks, face_mask, match_colours, warp_array, warp_to_crop


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


def test_mtcnn_runs_on_a_copy_shrunk_to_its_first_pyramid_scale(astronaut, monkeypatch):
    """min_face_size 20: MTCNN's pyramid starts at 12 / 20, so the 512 px photo is detected on a copy shrunk to
    that scale but kept at 320 px (MIN_SHRUNK_SIDE); the landmarks land where detection on the photo itself
    puts them. A 128 px picture is detected as it is."""
    shrinking = FaceDetector(device="cpu", min_face_size=20)
    seen = []
    detect = shrinking._mtcnn.detect

    def spy(images, landmarks):
        seen.extend(image.size for image in images)
        return detect(images, landmarks=landmarks)

    monkeypatch.setattr(shrinking._mtcnn, "detect", spy)
    faces = shrinking.detect(astronaut)
    assert astronaut.size == (512, 512) and seen == [(320, 320)]
    shrinking.detect(astronaut.resize((128, 128)))
    assert seen[-1] == (128, 128)
    full = FaceDetector(device="cpu", min_face_size=12).detect(astronaut)  # scale 1: the photo itself
    assert len(faces) == len(full) == 1
    assert np.abs(faces[0].landmarks - full[0].landmarks).max() < 3.0


# ------------------------------------------------------------------ paste-back through the face oval


def _crop_coordinates(matrix: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop (x, y) of every photo pixel centre, straight from M (numpy, no OpenCV)."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    return (matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2], matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2])


def _mask_support(mask: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Whether any of the four crop pixels around each (cx, cy) has alpha > 0 (bilinear warping reads those)."""
    h, w = mask.shape
    inside = (cx > -1) & (cx < w) & (cy > -1) & (cy < h)
    x0, y0 = np.floor(cx).astype(int), np.floor(cy).astype(int)
    support = np.zeros(cx.shape, dtype=bool)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = np.clip(x0 + dx, 0, w - 1), np.clip(y0 + dy, 0, h - 1)
            valid = inside & (x0 + dx >= 0) & (x0 + dx < w) & (y0 + dy >= 0) & (y0 + dy < h)
            support |= valid & (mask[yi, xi] > 0)
    return support


def test_face_mask_covers_the_face_and_nothing_at_the_crop_edge(astronaut_faces):
    size = 128
    matrix = face_alignment_transform(astronaut_faces[0].landmarks, size)
    points = apply_transform(matrix, astronaut_faces[0].landmarks)
    mask = face_mask(points, size, size, feather=0.1)
    assert mask.dtype == np.float32 and mask.shape == (size, size)
    for x, y in np.rint(points).astype(int):  # eyes, nose, mouth corners: fully the face
        assert mask[y, x] == 1.0
    assert mask[[0, -1]].max() == 0 and mask[:, [0, -1]].max() == 0
    assert mask[2, size // 2] == 0  # the top of the crop (hair) and its corners are not the face
    assert mask[:12, :12].max() == 0 and mask[-12:, -12:].max() == 0
    assert 0.2 < (mask > 0).mean() < 0.5
    assert 0 < ((mask > 0) & (mask < 1)).mean() < 0.2  # a feathered edge
    hard = face_mask(points, size, size, feather=0)
    assert set(np.unique(hard)) == {0.0, 1.0} and np.all(hard[mask == 1.0] == 1.0)


def test_pixels_outside_the_face_mask_are_unchanged(astronaut, astronaut_faces):
    face = astronaut_faces[0]
    size = 128
    matrix = face_alignment_transform(face.landmarks, size)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    pasted = np.asarray(paste_back(astronaut, noise, matrix, landmarks=face.landmarks, colour_match=True))
    before = np.asarray(astronaut)
    mask = face_mask(apply_transform(matrix, face.landmarks), size, size)
    cx, cy = _crop_coordinates(matrix, before.shape[:2])
    support = _mask_support(mask, cx, cy)
    changed = np.any(pasted != before, axis=2)
    assert not np.any(changed & ~support)  # outside the mask: bit for bit the photo
    assert changed[support & (np.abs(cx - size / 2) < 20) & (np.abs(cy - size / 2) < 20)].all()
    in_square = (cx > 0) & (cx < size - 1) & (cy > 0) & (cy < size - 1)
    assert (in_square & ~support).sum() > 0.4 * in_square.sum()  # most of the crop square keeps the photo's pixels


def test_colour_matching_removes_the_step_at_the_seam(astronaut, astronaut_faces):
    from scipy.ndimage import map_coordinates

    face = astronaut_faces[0]
    size = 128
    matrix = face_alignment_transform(face.landmarks, size)
    blue = Image.new("RGB", (size, size), (40, 60, 220))
    plain = np.asarray(paste_back(astronaut, blue, matrix, landmarks=face.landmarks)).astype(float)
    matched = np.asarray(paste_back(astronaut, blue, matrix, landmarks=face.landmarks, colour_match=True)).astype(float)
    before = np.asarray(astronaut).astype(float)
    mask = face_mask(apply_transform(matrix, face.landmarks), size, size)
    cx, cy = _crop_coordinates(matrix, before.shape[:2])
    alpha = map_coordinates(mask, [cy, cx], order=1, cval=0.0)
    seam = (alpha > 0.2) & (alpha < 0.8)
    assert seam.sum() > 200
    # The mean colour step across the seam (face minus photo, per channel) nearly vanishes.
    step_plain = np.abs((plain - before)[seam].mean(axis=0)).max()
    step_matched = np.abs((matched - before)[seam].mean(axis=0)).max()
    assert step_matched < 0.15 * step_plain
    assert np.abs(matched - before)[seam].mean() < 0.5 * np.abs(plain - before)[seam].mean()
    centre = (alpha > 0.999)
    assert np.abs(matched - before)[centre].mean() < np.abs(plain - before)[centre].mean()
    # A uniform face shifted to the photo's seam colour: its centre takes that colour (weighted mean in Lab).
    under = warp_array(np.asarray(astronaut), matrix, (size, size), border="replicate")
    weight = 4 * mask * (1 - mask)
    lab = cv2.cvtColor(under.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    expected = (lab * weight[..., None]).sum((0, 1)) / weight.sum()
    shifted = match_colours(np.asarray(blue), under, weight)
    got = cv2.cvtColor(shifted.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)[size // 2, size // 2]
    np.testing.assert_allclose(got, expected, atol=1.5)
