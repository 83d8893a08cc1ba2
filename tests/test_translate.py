"""Translation for users: the CLI on good and bad files, faces in photos, the Python API, torch.hub, loading errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from skimage import data
from skimage.feature import Cascade

import twingan
from twingan.checkpoint import load_translator
from twingan.cli.main import main
from twingan.data.image_io import pil_to_tensor
from twingan.errors import CheckpointError, ConfigError
from twingan.faces import FaceDetector, face_alignment_transform, warp_to_crop
from twingan.faces.align import apply_transform, crop_footprint, face_mask, invert_transform, match_colours
from twingan.inference import Translator
from twingan.inference.faces_pipeline import FacePipeline, center_crop_transform
from twingan.models import ModelConfig, TwinGAN

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def translator(tiny_checkpoint) -> Translator:
    return twingan.load(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def raw_model(tiny_checkpoint) -> TwinGAN:
    """The same checkpoint loaded without the API: the reference the API is checked against."""
    model, _ = load_translator(tiny_checkpoint, device="cpu")
    return model


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(device="cpu")


def reference_translation(model: TwinGAN, square_rgb: np.ndarray, src="human", dst="anime") -> np.ndarray:
    """Translate an (R, R, 3) uint8 picture straight through the model: (x / 127.5 - 1) -> model -> clamp -> uint8."""
    x = torch.from_numpy(np.array(square_rgb)).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]
    with torch.no_grad():
        y = model.translate(x, src, dst)[0].clamp(-1, 1)
    return ((y + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def same_pixels(a, b) -> bool:
    """Equal up to one grey level: batched and single-image convolutions round differently in the last bit."""
    a, b = np.asarray(a).astype(int), np.asarray(b).astype(int)
    return a.shape == b.shape and np.abs(a - b).max() <= 1


def square_then_resize(img: Image.Image, size: int) -> np.ndarray:
    """Centre square and resize (box filter when shrinking), the training preprocessing, written out again."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.crop((left, top, left + side, top + side))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BOX if side > size else Image.Resampling.BICUBIC)
    return np.asarray(square.convert("RGB"))


def pattern(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def make_mixed_folder(root: Path) -> dict[str, np.ndarray]:
    """Good pictures of every awkward kind (with the pixels they should decode to) and bad files."""
    root.mkdir(parents=True)
    expected: dict[str, np.ndarray] = {}
    good = pattern(20, 20, 0)
    Image.fromarray(good).save(root / "good.png")
    expected["good"] = good

    rgba = np.dstack([pattern(20, 20, 1), np.where(np.arange(20)[:, None] < 10, 0, 255).repeat(20, 1)]).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    expected["rgba"] = np.where(rgba[..., 3:] == 0, 255, rgba[..., :3]).astype(np.uint8)

    gray = pattern(20, 20, 2)[..., 0]
    Image.fromarray(gray, "L").save(root / "gray.png")
    expected["gray"] = np.repeat(gray[..., None], 3, axis=2)

    deep = (pattern(20, 20, 3)[..., 0].astype(np.uint16) * 256 + 100).astype(np.uint16)
    Image.fromarray(deep).save(root / "deep16.png")
    expected["deep16"] = np.repeat(np.rint(deep / 65535.0 * 255).astype(np.uint8)[..., None], 3, axis=2)

    Image.fromarray(pattern(20, 20, 4)).convert("CMYK").save(root / "cmyk.jpg", quality=95)

    wide = Image.fromarray(pattern(32, 20, 5))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    wide.save(root / "exif.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(root / "exif.jpg") as stored:
        expected["exif"] = np.rot90(np.asarray(stored.convert("RGB")), k=-1)

    frames = [Image.fromarray(np.full((20, 20, 3), v, np.uint8)) for v in (40, 200)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    expected["anim"] = np.full((20, 20, 3), 40, np.uint8)

    (root / "not_image.jpg").write_text("this is text, not a JPEG")
    Image.fromarray(pattern(40, 40, 6)).save(root / "truncated.jpg", quality=95)
    (root / "truncated.jpg").write_bytes((root / "truncated.jpg").read_bytes()[:300])
    (root / "empty.png").write_bytes(b"")
    Image.new("1", (9000, 9000)).save(root / "huge.png")
    Image.fromarray(pattern(6, 6, 7)).save(root / "tiny.png")
    (root / "notes.txt").write_text("a note beside the pictures")
    return expected


def test_folder_of_good_and_bad_files(translator, raw_model, tmp_path, capsys):
    src = tmp_path / "in"
    expected = make_mixed_folder(src)
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (src / "labels.csv").write_text("file,hair\ngood.png,black\n")  # a dataset's labels: not an input
    out = tmp_path / "out"
    code = main(["translate", str(translator.path), str(src), str(svg), str(tmp_path / "missing.jpg"),
                 "--to", "anime", "--out", str(out), "--no-detect", "--batch-size", "3", "--side-by-side",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "7 translated, 7 failed, 1 skipped" in captured.out
    reasons = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in captured.err.splitlines() if ": " in line}
    expect_reason = {
        src / "not_image.jpg": "not an image",
        src / "truncated.jpg": "truncated or corrupt",
        src / "empty.png": "empty file",
        src / "huge.png": "too large",
        src / "tiny.png": "too small",
        src / "notes.txt": "skipped, not an image file type",
        svg: "not an image",
        tmp_path / "missing.jpg": "file not found",
    }
    for path, reason in expect_reason.items():
        assert reason in reasons[str(path)], (path, reasons.get(str(path)))
    assert "labels.csv" not in captured.err
    good = {"good", "rgba", "gray", "deep16", "cmyk", "exif", "anim"}
    names = {p.name for p in out.iterdir()}
    assert names == {f"{n}.png" for n in good} | {f"{n}_side.png" for n in good}  # no partial or temp files
    for name, pixels in expected.items():
        reference = reference_translation(raw_model, square_then_resize(Image.fromarray(pixels), translator.resolution))
        assert same_pixels(Image.open(out / f"{name}.png"), reference), name
        side = np.asarray(Image.open(out / f"{name}_side.png"))
        assert side.shape == (16, 32, 3) and same_pixels(side[:, 16:], reference)
    # The EXIF rotation and the first GIF frame matter: the unrotated picture / second frame translate differently.
    unrotated = square_then_resize(Image.fromarray(np.rot90(expected["exif"], k=1)), 16)
    assert not same_pixels(reference_translation(raw_model, unrotated), Image.open(out / "exif.png"))
    second_frame = np.full((16, 16, 3), 200, np.uint8)
    assert not same_pixels(reference_translation(raw_model, second_frame), Image.open(out / "anim.png"))


def test_existing_outputs_are_skipped_unless_overwrite(translator, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(pattern(24, 24, 0)).save(src / "a.png")
    out = tmp_path / "out"
    args = ["translate", str(translator.path), str(src), "--to", "anime", "--out", str(out), "--no-detect",
            "--no-progress"]
    assert main(args) == 0
    (out / "a.png").write_bytes(b"stale")
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "0 translated, 0 failed, 1 skipped" in captured.out and "--overwrite" in captured.err
    assert (out / "a.png").read_bytes() == b"stale"
    assert main(args + ["--overwrite"]) == 0
    assert Image.open(out / "a.png").size == (16, 16)


def test_astronaut_face_is_detected_aligned_and_pasted_back(translator, detector, tmp_path, capsys):
    photo = Image.fromarray(data.astronaut())
    photo.save(tmp_path / "astronaut.png")
    out = tmp_path / "out"
    code = main(["translate", str(translator.path), str(tmp_path / "astronaut.png"), "--to", "anime", "--out",
                 str(out), "--paste-back", "--side-by-side", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "astronaut_pasted.png", "astronaut_side.png"]
    faces = detector.detect(photo)
    assert len(faces) == 1
    matrix = face_alignment_transform(faces[0].landmarks, translator.resolution)
    crop = warp_to_crop(photo, matrix, translator.resolution)
    avatar = Image.open(out / "astronaut.png")
    assert same_pixels(avatar, translator.translate(crop, to="anime"))
    assert np.array_equal(np.asarray(Image.open(out / "astronaut_side.png"))[:, :16], np.asarray(crop))

    original = np.asarray(photo)
    pasted = np.asarray(Image.open(out / "astronaut_pasted.png"))
    ys, xs = np.nonzero(np.any(original != pasted, axis=2))
    changed = (xs.min(), ys.min(), xs.max(), ys.max())
    corners = crop_footprint(matrix, (16, 16))
    assert corners[:, 0].min() - 1 <= changed[0] and changed[2] <= corners[:, 0].max() + 1
    assert corners[:, 1].min() - 1 <= changed[1] and changed[3] <= corners[:, 1].max() + 1
    # An independent detector's face box lies inside the replaced region, near its middle.
    cascade = Cascade(data.lbp_frontal_face_cascade_filename())
    found = cascade.detect_multi_scale(img=original, scale_factor=1.2, step_ratio=1, min_size=(60, 60),
                                       max_size=(200, 200))
    box = max(found, key=lambda d: d["width"] * d["height"])
    x1, y1, x2, y2 = box["c"], box["r"], box["c"] + box["width"], box["r"] + box["height"]
    assert changed[0] < x1 and changed[1] < y1 and x2 < changed[2] and y2 < changed[3]
    side = changed[2] - changed[0]
    centre_gap = np.hypot((x1 + x2 - changed[0] - changed[2]) / 2, (y1 + y2 - changed[1] - changed[3]) / 2)
    assert centre_gap < 0.15 * side
    # Warping the pasted photo back with the alignment gives the avatar again inside the face oval (its
    # colours shifted to the photo's along the seam), and the photo's own pixels in the crop's corners.
    mask = face_mask(apply_transform(matrix, faces[0].landmarks), 16, 16)
    inside = mask > 0.999
    assert inside.sum() >= 10 and not inside[[0, -1]].any() and not inside[:, [0, -1]].any()
    back = np.asarray(warp_to_crop(Image.fromarray(pasted), matrix, 16)).astype(float)[inside]
    matched = match_colours(np.asarray(avatar), np.asarray(crop), 4 * mask * (1 - mask)).astype(float)[inside]
    before = np.asarray(crop).astype(float)[inside]
    assert np.corrcoef(back.ravel(), matched.ravel())[0, 1] > 0.8
    assert np.abs(back - matched).mean() < 0.5 * np.abs(before - matched).mean()
    for corner in ([0, 0], [15, 0], [0, 15], [15, 15]):  # background and hair, outside the oval: untouched
        x, y = np.rint(apply_transform(invert_transform(matrix), np.array([corner], float))[0]).astype(int)
        if 0 <= x < 512 and 0 <= y < 512:
            assert np.array_equal(pasted[y, x], original[y, x])


def test_several_faces_limit_and_no_face(translator, detector, tmp_path):
    small = Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.BOX)
    pair = Image.new("RGB", (512, 256))
    pair.paste(small, (0, 0))
    pair.paste(small.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (256, 0))
    blank = Image.new("RGB", (96, 80), (128, 128, 128))
    pipeline = FacePipeline(translator, detector)
    two, none = pipeline.run([pair, blank], to="anime", src="human")
    assert len(two.translations) == 2 and two.error is None
    centres = sorted((c.face.box[0] + c.face.box[2]) / 2 for c in two.crops)
    assert centres[0] < 256 < centres[1]
    assert none.translations == [] and "no face found" in none.error
    assert len(FacePipeline(translator, detector, max_faces=1).run([pair], "anime", "human")[0].translations) == 1
    fallback = FacePipeline(translator, detector, fallback="center-crop").run([blank], "anime", "human")[0]
    assert fallback.error is None and fallback.crops[0].face is None
    assert np.array_equal(np.asarray(fallback.crops[0].crop), square_then_resize(blank, 16))

    pair.save(tmp_path / "pair.jpg", quality=95)
    out = tmp_path / "out"
    assert main(["translate", str(translator.path), str(tmp_path / "pair.jpg"), "--to", "anime", "--out", str(out),
                 "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pair_face0.png", "pair_face1.png"]


def test_center_crop_transform_matches_the_training_crop():
    photo = Image.fromarray(pattern(48, 30, 3))
    matrix = center_crop_transform(48, 30, 30)
    assert np.array_equal(np.asarray(warp_to_crop(photo, matrix, 30)), square_then_resize(photo, 30))


def test_api_accepts_pil_numpy_and_tensors(translator, raw_model):
    rgb = pattern(16, 16, 11)
    reference = reference_translation(raw_model, rgb)
    as_pil = translator.translate(Image.fromarray(rgb), to="anime")
    assert isinstance(as_pil, Image.Image) and same_pixels(as_pil, reference)
    x = pil_to_tensor(Image.fromarray(rgb))
    outs = translator.translate([rgb, x, Image.fromarray(rgb).convert("RGBA")], to="anime", batch_size=2)
    assert isinstance(outs, list) and all(same_pixels(o, reference) for o in outs)
    batch = translator.translate(torch.stack([x, x.flip(-1)]), to="anime", src="human")
    assert len(batch) == 2 and same_pixels(batch[0], reference)
    assert same_pixels(translator.translate(rgb[None], to="anime")[0], reference)
    big = Image.fromarray(pattern(64, 40, 12))  # non-square: centre square, box-filtered to 16 px
    expected = reference_translation(raw_model, square_then_resize(big, 16))
    assert same_pixels(translator.translate(big, to="anime"), expected)
    back = translator.translate(np.asarray(as_pil), to="human")
    assert same_pixels(back, reference_translation(raw_model, reference, "anime", "human"))

    vectors = translator.embed([rgb, big], domain="human")
    with torch.no_grad():
        latent, _ = raw_model.encode(torch.stack([x, pil_to_tensor(Image.fromarray(square_then_resize(big, 16)))]),
                                     "human")
    standardised = (latent - raw_model.latent_mean[0]) / raw_model.latent_std[0]  # the domain's calibrated statistics
    assert not torch.equal(raw_model.latent_std[0], torch.ones_like(raw_model.latent_std[0]))
    expected_vectors = F.normalize(standardised.flatten(1), dim=1).numpy()
    assert vectors.dtype == np.float32 and vectors.shape == (2, translator.embedding_dim("full"))
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(translator.embed(rgb, "anime", kind="pooled"), axis=1), 1.0, atol=1e-6)


def test_api_errors_are_clear(translator):
    with pytest.raises(ConfigError, match="'cat' is not a domain"):
        translator.translate(pattern(16, 16, 0), to="cat")
    with pytest.raises(ConfigError, match="uint8"):
        translator.translate(np.zeros((16, 16, 3), np.float32), to="anime")
    with pytest.raises(ConfigError, match="str"):
        translator.translate("photo.jpg", to="anime")
    three = Translator(TwinGAN(ModelConfig(domains=("human", "anime", "cat"), resolution=8, max_channels=4)))
    with pytest.raises(ConfigError, match="say which one"):
        three.translate(pattern(8, 8, 0), to="cat")
    assert three.translate(pattern(8, 8, 0), to="cat", src="anime").size == (8, 8)
    assert translator.source_domain("anime") == "human" and translator.source_domain("human") == "anime"


def test_torch_hub_loads_the_translator(translator, tiny_checkpoint):
    hub_translator = torch.hub.load(str(REPO_ROOT), "twingan", source="local", pretrained=str(tiny_checkpoint))
    rgb = pattern(16, 16, 5)
    assert np.array_equal(np.asarray(hub_translator.translate(rgb, to="anime")),
                          np.asarray(translator.translate(rgb, to="anime")))


def test_bad_checkpoints_are_refused_with_a_reason(tiny_checkpoint, tmp_path, capsys):
    pickled = tmp_path / "a.safetensors"
    torch.save({"weight": torch.zeros(2)}, pickled)
    foreign = tmp_path / "b.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    truncated = tmp_path / "c.safetensors"
    blob = Path(tiny_checkpoint).read_bytes()
    truncated.write_bytes(blob[: len(blob) - 1000])
    cases = {
        pickled: "pickled torch file; twingan never unpickles",
        foreign: "without twingan metadata",
        truncated: "truncated, corrupt or not a safetensors file",
        tmp_path / "absent.safetensors": "not found",
        tmp_path: "is a folder",
    }
    for path, reason in cases.items():
        with pytest.raises(CheckpointError, match=reason):
            twingan.load(path, device="cpu")
    assert main(["translate", str(pickled), str(tmp_path), "--to", "anime", "--out", str(tmp_path / "o")]) == 1
    assert "never unpickles" in capsys.readouterr().err


def test_mismatched_checkpoint_architecture_is_refused(tiny_checkpoint, tmp_path):
    from safetensors import safe_open

    with safe_open(str(tiny_checkpoint), framework="pt") as f:
        header = json.loads(f.metadata()["twingan"])
        tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith("ema.")}
    del header["tensor_sha256"]  # a file without a checksum loads, unverified; the architecture check speaks
    header["model_config"]["max_channels"] = 16
    save_file(tensors, str(tmp_path / "wider.safetensors"), metadata={"twingan": json.dumps(header)})
    with pytest.raises(CheckpointError, match="do not match the stored architecture"):
        twingan.load(tmp_path / "wider.safetensors", device="cpu")
    header["format_version"] = 99
    save_file(tensors, str(tmp_path / "future.safetensors"), metadata={"twingan": json.dumps(header)})
    with pytest.raises(CheckpointError, match="format version 99"):
        twingan.load(tmp_path / "future.safetensors", device="cpu")


def test_import_twingan_stays_light():
    import subprocess
    import sys

    code = "import sys, twingan; print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "False"


def test_inputs_from_folders_globs_and_files(tmp_path, monkeypatch):
    from twingan.inference.files import collect_inputs

    monkeypatch.chdir(tmp_path)
    for rel in ("photos/a.jpg", "photos/trip/b.png", "photos/trip/.hidden.png", "photos/out/old.png", "other/a.png",
                "loose/c.jpeg", "loose/d.JPG"):
        Path(rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20)).save(rel)
    Path("photos/readme.md").write_text("notes")
    found = collect_inputs(["photos", "loose/*.jp*g", "other/a.png", "photos/a.jpg"], exclude=Path("photos/out"))
    assert [(str(f.path), str(f.stem)) for f in found.files] == [
        ("photos/a.jpg", "a"), ("photos/trip/b.png", "trip/b"), ("loose/c.jpeg", "c")
    ]
    assert [str(f) for f in found.failures] == ["other/a.png: its output name 'a' is taken by photos/a.jpg; "
                                                 "rename one of them"]
    assert [f.label for f in found.skipped] == ["photos/readme.md"]
    deep = collect_inputs(["photos/**/*.png"], exclude=Path("photos/out"))
    assert [str(f.stem) for f in deep.files] == ["trip/b"]
