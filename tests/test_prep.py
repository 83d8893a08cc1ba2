"""`twingan prep human|anime|cats|dedup`: summaries, resume, clear errors, crop geometry, duplicates."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data
from skimage.feature import Cascade

from twingan.cli.main import main
from twingan.data.cat_crop import cat_face_transform
from twingan.errors import ConfigError
from twingan.faces.align import apply_transform
from twingan.faces.anime import AnimeFaceDetector, opencv_has_cascades
from twingan.faces.dedup import _near_duplicates
from twingan.faces.prep_runner import LOG_NAME, SUMMARY_NAME, Crop, SkipImage, run_prep


def _summary(dst) -> dict:
    return json.loads((dst / SUMMARY_NAME).read_text())


def _log_records(dst) -> list[dict]:
    return [json.loads(line) for line in (dst / LOG_NAME).read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def human_folder(tmp_path_factory):
    src = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(src / "astronaut.png")
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(astronaut.transpose(Image.FLIP_LEFT_RIGHT), (512, 0))
    (src / "group").mkdir()
    pair.resize((768, 384), Image.BILINEAR).save(src / "group" / "pair.jpg", quality=95)
    Image.fromarray(data.chelsea()).save(src / "cat.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return src


def test_prep_human_summary_resume_and_option_check(human_folder, tmp_path, capsys):
    dst = tmp_path / "crops"
    argv = ["prep", "human", str(human_folder), "--out", str(dst), "--size", "64", "--max-faces", "2",
            "--device", "cpu"]
    assert main(argv) == 0
    summary = _summary(dst)
    assert (summary["sources"], summary["kept"], summary["skipped"]) == (4, 2, 2)
    assert summary["skipped_by_reason"] == {"no face": 1, "unreadable image": 1}
    assert summary["crops_written"] == 3
    assert summary["this_run"] == {"processed": 4, "resumed": 0, "kept": 2, "skipped": 2}
    assert "2 kept, 2 skipped (no face: 1, unreadable image: 1)" in capsys.readouterr().out
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png"))
    assert outputs == ["astronaut.png", "group/pair_face0.png", "group/pair_face1.png"]
    assert all(Image.open(dst / name).size == (64, 64) for name in outputs)
    records = {r["source"]: r for r in _log_records(dst)}
    assert records["broken.jpg"]["reason"] == "unreadable image"
    assert records["cat.png"]["reason"] == "no face"
    # Two mirrored astronauts: both faces found, eyes levelled by the saved alignment matrix.
    pair_crops = records["group/pair.jpg"]["crops"]
    assert len(pair_crops) == 2
    for crop in pair_crops:
        eyes = apply_transform(np.array(crop["matrix"]), np.array(crop["landmarks"])[:2])
        assert abs(eyes[0, 1] - eyes[1, 1]) < 0.05  # landmarks are logged rounded to 0.01 px

    # Rerun: everything is already done.
    assert main(argv) == 0
    assert _summary(dst)["this_run"] == {"processed": 0, "resumed": 4, "kept": 0, "skipped": 0}
    assert _summary(dst)["kept"] == 2

    # A deleted crop is redone, and only that source.
    (dst / "astronaut.png").unlink()
    assert main(argv) == 0
    assert _summary(dst)["this_run"] == {"processed": 1, "resumed": 3, "kept": 1, "skipped": 0}
    assert (dst / "astronaut.png").is_file()

    # Other options into the same folder are refused with a clear message.
    capsys.readouterr()
    assert main(argv[:-4] + ["--size", "32", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "was prepared with" in err and "another --out folder" in err


def test_prep_human_reports_small_faces(human_folder, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(human_folder / "astronaut.png", src / "astronaut.png")
    dst = tmp_path / "crops"
    assert main(["prep", "human", str(src), "--out", str(dst), "--size", "32", "--min-face-size", "200",
                 "--device", "cpu"]) == 0
    assert _summary(dst)["skipped_by_reason"] == {"face too small": 1}


def test_prep_runner_names_outputs_and_survives_a_cut_log_line(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name, colour in [("a.jpg", 10), ("a.png", 20), ("sub/two.png", 30), ("sub/none.png", 40)]:
        Image.new("RGB", (16, 16), (colour, 0, 0)).save(src / name)
    calls = []

    def process(path, image):
        calls.append(path.name)
        if path.name == "none.png":
            raise SkipImage("nothing here", "test")
        count = 2 if path.name == "two.png" else 1
        return [Crop(image.resize((8, 8)), {"k": k}) for k in range(count)]

    dst = tmp_path / "dst"
    summary = run_prep("test", src, dst, process, {"size": 8}, progress=False)
    assert (summary["kept"], summary["skipped_by_reason"], summary["crops_written"]) == (3, {"nothing here": 1}, 4)
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png"))
    assert outputs == ["a.png", "a_png.png", "sub/two_face0.png", "sub/two_face1.png"]
    assert np.asarray(Image.open(dst / "a.png"))[0, 0, 0] == 10  # a.jpg came first in sorted order
    assert np.asarray(Image.open(dst / "a_png.png"))[0, 0, 0] == 20

    # A crash in the middle of writing the last record: that source is redone, the others are not.
    log = dst / LOG_NAME
    lines = log.read_text().splitlines()
    assert json.loads(lines[-1])["source"] == "sub/two.png"
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    calls.clear()
    summary = run_prep("test", src, dst, process, {"size": 8}, progress=False)
    assert calls == ["two.png"]
    assert summary["this_run"]["resumed"] == 3
    assert summary["kept"] == 3 and summary["crops_written"] == 4


def test_prep_refuses_output_inside_source(human_folder, capsys):
    assert main(["prep", "cats", str(human_folder), "--out", str(human_folder / "crops")]) == 1
    assert "inside the source folder" in capsys.readouterr().err


def test_anime_missing_or_invalid_cascade_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"lbpcascade_animeface\.xml.*github\.com/nagadomi/lbpcascade_animeface"):
        AnimeFaceDetector(tmp_path / "lbpcascade_animeface.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<html>not a cascade</html>")
    with pytest.raises(ConfigError, match="not an OpenCV cascade file"):
        AnimeFaceDetector(bad)
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (32, 32)).save(src / "a.png")
    rc = main(["prep", "anime", str(src), "--cascade", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "lbpcascade_animeface.xml" in err and "https://github.com/nagadomi/lbpcascade_animeface" in err


def _check_enlarged_geometry(detector: AnimeFaceDetector, image: Image.Image, reference_boxes) -> None:
    faces = detector.detect(image)
    assert len(faces) >= 1
    x, y, w, h = max(reference_boxes, key=lambda b: b[2] * b[3])
    face = faces[0]
    assert face.box == pytest.approx((x, y, x + w, y + h))
    cx1, cy1, cx2, cy2 = face.crop_box
    assert ((cx1 + cx2) / 2, (cy1 + cy2) / 2) == pytest.approx((x + w / 2, y + h / 2))
    assert (cx2 - cx1, cy2 - cy1) == pytest.approx((1.5 * max(w, h), 1.5 * max(w, h)))
    # The crop is the enlarged box resized: compare with PIL's crop + resize.
    crop = np.asarray(detector.crop(image, face, 64)).astype(float)
    box = tuple(int(round(v)) for v in face.crop_box)
    reference = np.asarray(image.crop(box).resize((64, 64), Image.BILINEAR)).astype(float)
    assert np.abs(crop - reference).mean() < 6


@pytest.mark.skipif(not opencv_has_cascades(), reason="this OpenCV has no CascadeClassifier (OpenCV >= 5)")
def test_anime_detector_enlarges_opencv_haar_boxes_1_5x():
    image = Image.fromarray(data.astronaut())
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    detector = AnimeFaceDetector(path, enlarge=1.5, min_size=60, backend="opencv")
    grey = cv2.equalizeHist(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY))
    reference = cv2.CascadeClassifier(path).detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))
    _check_enlarged_geometry(detector, image, [tuple(map(float, b)) for b in reference])


def test_anime_detector_enlarges_lbp_boxes_1_5x_with_skimage():
    image = Image.fromarray(data.astronaut())
    path = data.lbp_frontal_face_cascade_filename()
    detector = AnimeFaceDetector(path, enlarge=1.5, min_size=60, scale_factor=1.2, min_neighbors=4,
                                 backend="skimage")
    grey = cv2.equalizeHist(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY))
    found = Cascade(path).detect_multi_scale(img=grey, scale_factor=1.2, step_ratio=1.0, min_size=(60, 60),
                                             max_size=(512, 512), min_neighbor_number=4)
    _check_enlarged_geometry(detector, image, [(d["c"], d["r"], d["width"], d["height"]) for d in found])


def test_anime_crop_box_pad_and_clip_at_the_border():
    path = data.lbp_frontal_face_cascade_filename()
    pad = AnimeFaceDetector(path, enlarge=2.0, outside="pad", backend="skimage")
    clip = AnimeFaceDetector(path, enlarge=2.0, outside="clip", backend="skimage")
    box = (10.0, 20.0, 70.0, 80.0)  # 60 px face near the top-left corner of a 200x100 image
    assert pad.crop_box(box, (200, 100)) == pytest.approx((-20.0, -10.0, 100.0, 110.0))
    assert clip.crop_box(box, (200, 100)) == pytest.approx((0.0, 0.0, 100.0, 100.0))


def test_prep_anime_cli_runs_with_a_cascade(tmp_path):
    src = tmp_path / "art"
    src.mkdir()
    Image.fromarray(data.astronaut()).save(src / "face.png")
    Image.new("RGB", (200, 200), (240, 240, 240)).save(src / "blank.png")
    dst = tmp_path / "out"
    # A human-face cascade stands in for the anime one: OpenCV's Haar file when this OpenCV runs
    # cascades, else scikit-image's LBP file for the scikit-image backend.
    if opencv_has_cascades():
        cascade, backend = cv2.data.haarcascades + "haarcascade_frontalface_default.xml", "opencv"
    else:
        cascade, backend = data.lbp_frontal_face_cascade_filename(), "skimage"
    argv = ["prep", "anime", str(src), "--cascade", cascade, "--out", str(dst), "--size", "48",
            "--min-face-size", "60"]
    assert main(argv) == 0
    summary = _summary(dst)
    assert (summary["kept"], summary["skipped_by_reason"]) == (1, {"no face": 1})
    assert summary["options"]["backend"] == backend
    assert Image.open(dst / "face.png").size == (48, 48)


def _cat_keypoints(angle_deg: float, centre=(100.0, 90.0)) -> np.ndarray:
    """Nine CAT keypoints of an upright face (eyes 40 px apart) rotated about its centre."""
    upright = np.array([
        [-20, 0], [20, 0], [0, 25],            # left eye, right eye, mouth
        [-35, -20], [-30, -55], [-10, -30],    # left ear
        [10, -30], [30, -55], [35, -20],       # right ear
    ], dtype=float)
    a = np.radians(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return upright @ rotation.T + np.array(centre)


def _draw_cat(keypoints: np.ndarray) -> Image.Image:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(90, 160, size=(180, 200, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    for (x, y), colour in zip(keypoints[:2], [(255, 0, 0), (0, 0, 255)]):
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
    return image


def _write_cat_file(path, keypoints: np.ndarray) -> None:
    path.write_text("9 " + " ".join(f"{v:.0f}" for v in keypoints.reshape(-1)) + " ")


def _centroid(crop: np.ndarray, colour) -> np.ndarray:
    mask = np.all(np.abs(crop.astype(int) - colour) < 60, axis=2)
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_prep_cats_from_a_tiny_cat_layout(tmp_path):
    root = tmp_path / "cat_dataset"
    src = root / "CAT_00"
    src.mkdir(parents=True)
    tilted = np.round(_cat_keypoints(25.0))
    _draw_cat(tilted).save(src / "00000001_000.jpg", quality=98)
    _write_cat_file(src / "00000001_000.jpg.cat", tilted)
    upright = np.round(_cat_keypoints(0.0))
    _draw_cat(upright).save(src / "00000002_000.jpg", quality=98)
    _write_cat_file(src / "00000002_000.jpg.cat", upright)
    _draw_cat(upright).save(src / "00000003_000.jpg")
    _draw_cat(upright).save(src / "00000004_000.jpg")
    (src / "00000004_000.jpg.cat").write_text("9 1 2 3")
    dst = tmp_path / "cats"
    assert main(["prep", "cats", str(root), "--out", str(dst), "--size", "64"]) == 0
    summary = _summary(dst)
    assert summary["kept"] == 2
    assert summary["skipped_by_reason"] == {"invalid .cat keypoint file": 1, "no .cat keypoint file": 1}
    crop = np.asarray(Image.open(dst / "CAT_00" / "00000001_000.png"))
    assert crop.shape == (64, 64, 3)
    left, right = _centroid(crop, (255, 0, 0)), _centroid(crop, (0, 0, 255))
    assert abs(left[1] - right[1]) < 1.0
    # The eyes are where the shared cat transform sends them.
    expected = apply_transform(cat_face_transform(tilted, 64), tilted[:2])
    assert np.abs(np.stack([left, right]) - expected).max() < 1.0
    # `prep cats` is the former name of `prep cat` (the profile): a folder its log names 'cats' resumes.
    assert summary["tool"] == "cat"
    log = dst / ".prep_log.jsonl"
    header, *records = log.read_text().splitlines()
    log.write_text("\n".join([json.dumps({**json.loads(header), "tool": "cats"}), *records]) + "\n")
    assert main(["prep", "cat", str(root), "--out", str(dst), "--size", "64"]) == 0
    assert _summary(dst)["this_run"] == {"processed": 0, "resumed": 4, "kept": 0, "skipped": 0}


def test_prep_dedup_finds_exact_and_near_duplicates_and_moves_them(tmp_path, capsys):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    astronaut = Image.fromarray(data.astronaut()).resize((128, 128), Image.BILINEAR)
    astronaut.save(folder / "a.png")
    shutil.copy(folder / "a.png", folder / "sub" / "b.png")
    astronaut.resize((112, 112), Image.BILINEAR).save(folder / "c.jpg", quality=70)
    Image.fromarray(data.chelsea()).resize((128, 85)).save(folder / "d.png")
    Image.fromarray(data.coffee()).resize((128, 85)).save(folder / "e.png")
    (folder / "zz_broken.png").write_bytes(b"not a png")
    report_path = tmp_path / "report.json"
    assert main(["prep", "dedup", str(folder), "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["files"] == 6
    assert report["groups"] == [{
        "keep": "a.png",
        "duplicates": [
            {"file": "sub/b.png", "kind": "exact", "distance": 0},
            {"file": "c.jpg", "kind": "near", "distance": report["groups"][0]["duplicates"][1]["distance"]},
        ],
    }]
    assert report["groups"][0]["duplicates"][1]["distance"] <= 4
    assert report["unreadable"][0]["file"] == "zz_broken.png"
    assert (report["exact_duplicates"], report["near_duplicates"], report["moved"]) == (1, 1, 0)
    assert (folder / "sub" / "b.png").exists() and (folder / "c.jpg").exists()
    assert "1 exact + 1 near duplicates" in capsys.readouterr().out

    dup_dir = tmp_path / "dups"
    assert main(["prep", "dedup", str(folder), "--report", str(report_path), "--action", "move",
                 "--dup-dir", str(dup_dir)]) == 0
    assert json.loads(report_path.read_text())["moved"] == 2
    assert sorted(p.relative_to(dup_dir).as_posix() for p in dup_dir.rglob("*.*")) == ["c.jpg", "sub/b.png"]
    assert sorted(p.name for p in folder.rglob("*.*")) == ["a.png", "d.png", "e.png", "zz_broken.png"]
    # Nothing left to find.
    assert main(["prep", "dedup", str(folder), "--report", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["groups"] == []


def test_near_duplicate_search_matches_brute_force():
    rng = np.random.default_rng(1)
    base = [int(v) for v in rng.integers(0, 2**63, size=60, dtype=np.int64)]
    hashes = list(base)
    for h in base[:30]:  # plant neighbours 1..8 bits away
        flips = rng.choice(64, size=int(rng.integers(1, 9)), replace=False)
        for bit in flips:
            h ^= 1 << int(bit)
        hashes.append(h)
    hashes.append(None)
    order = rng.permutation(len(hashes))
    hashes = [hashes[i] for i in order]
    for threshold in (0, 3, 6):
        expected: dict[int, list[tuple[int, int]]] = {}
        assigned = [h is None for h in hashes]
        for i, h in enumerate(hashes):
            if assigned[i]:
                continue
            assigned[i] = True
            members = []
            for j in range(i + 1, len(hashes)):
                if not assigned[j] and (h ^ hashes[j]).bit_count() <= threshold:
                    assigned[j] = True
                    members.append((j, (h ^ hashes[j]).bit_count()))
            if members:
                expected[i] = members
        assert _near_duplicates(hashes, threshold) == expected
