"""Domain datasets, robust loading, the pre-resized cache and `twingan prep check/cache`, on real files."""
from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import twingan.data.datasets as datasets_module
from twingan.cli.main import main
from twingan.data.cache import BUILD_DIR_NAME, build_cache
from twingan.data.cat_crop import CatKeypointError, cat_face_transform, read_cat_keypoints
from twingan.data.datasets import (
    BadImageWarning,
    CatDataset,
    CelebADataset,
    FolderDataset,
    GetchuDataset,
    build_domain_dataset,
    hash_split,
)
from twingan.data.image_io import load_image
from twingan.errors import DatasetError, ImageLoadError

RNG = np.random.default_rng(1234)


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colour picture (JPEG-friendly), uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [127 + 120 * np.sin(2 * math.pi * (rng.uniform(0.3, 1.2) * xx + rng.uniform(0.3, 1.2) * yy + rng.uniform()))
                for _ in range(3)]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def write_huge_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A tiny PNG whose header declares width x height pixels (a decompression bomb's header)."""
    Image.new("1", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def write_exif_rotated_jpeg(path: Path, pixels: np.ndarray, orientation: int = 6) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


GOOD_KINDS = ("good.jpg", "good.png", "rgba.png", "gray.png", "palette.png", "gray16.png", "cmyk.jpg",
              "sub/exif.jpg", "sub/anim.gif")
BAD_KINDS = {
    "truncated.jpg": "truncated",
    "empty.jpg": "empty",
    "text.jpg": "not an image",
    "sub/huge.png": "too large",
}


def make_mixed_folder(root: Path) -> Path:
    """A folder with one good image of each supported kind and one file of each bad kind."""
    (root / "sub").mkdir(parents=True)
    Image.fromarray(smooth_image(40, 56, 0)).save(root / "good.jpg", quality=95)
    Image.fromarray(smooth_image(48, 64, 1)).save(root / "good.png")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 16:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    Image.fromarray(np.full((30, 30), 100, np.uint8), "L").save(root / "gray.png")
    palette_image = Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 3).astype(np.uint8), "P")
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    palette_image.save(root / "palette.png")
    Image.fromarray(np.full((20, 24), 128 * 257, np.uint16)).save(root / "gray16.png")
    Image.fromarray(np.full((24, 24, 3), (200, 50, 30), np.uint8)).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    write_exif_rotated_jpeg(root / "sub" / "exif.jpg", smooth_image(32, 48, 2))
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(root / "sub" / "anim.gif", save_all=True, append_images=frames[1:])
    jpeg = (root / "good.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is a text file, not a JPEG\n")
    write_huge_png(root / "sub" / "huge.png")
    (root / "notes.txt").write_text("not listed: not an image extension\n")
    return root


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    return make_mixed_folder(tmp_path / "mixed")


# ---------------------------------------------------------------------------------------------- load_image


def test_load_image_converts_every_pixel_format_to_rgb(mixed: Path) -> None:
    rgba = np.asarray(load_image(mixed / "rgba.png"))
    assert rgba[0, 0].tolist() == [255, 255, 255]  # transparent -> white background
    assert rgba[0, 20].tolist() == [200, 0, 0]
    assert np.asarray(load_image(mixed / "gray.png"))[3, 3].tolist() == [100, 100, 100]
    indices = np.arange(32 * 32).reshape(32, 32) % 3
    expected_palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[indices]
    assert np.array_equal(np.asarray(load_image(mixed / "palette.png")), expected_palette)
    assert np.asarray(load_image(mixed / "gray16.png"))[0, 0].tolist() == [128, 128, 128]
    cmyk = np.asarray(load_image(mixed / "cmyk.jpg")).astype(int)
    assert np.abs(cmyk[12, 12] - [200, 50, 30]).max() <= 4
    assert np.asarray(load_image(mixed / "sub" / "anim.gif"))[5, 5].tolist() == [255, 0, 0]
    for name in GOOD_KINDS:
        image = load_image(mixed / name)
        assert image.mode == "RGB"


def test_load_image_scales_dark_16_bit_by_the_16_bit_range(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "dark16.png")
    assert np.asarray(load_image(tmp_path / "dark16.png"))[0, 0, 0] == round(200 / 65535 * 255)


def test_load_image_applies_exif_orientation(mixed: Path) -> None:
    original = smooth_image(32, 48, 2).astype(int)
    loaded = np.asarray(load_image(mixed / "sub" / "exif.jpg")).astype(int)
    rotated = np.rot90(original, k=-1)  # orientation 6: shown turned 90 degrees clockwise
    assert loaded.shape == rotated.shape == (48, 32, 3)
    assert np.abs(loaded - rotated).mean() < 4
    assert np.abs(loaded - np.rot90(original, k=1)).mean() > 20


@pytest.mark.parametrize("name, words", sorted(BAD_KINDS.items()))
def test_load_image_rejects_bad_files_with_a_reason(mixed: Path, name: str, words: str) -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(mixed / name)
    assert words in info.value.reason
    assert info.value.path == str(mixed / name)


def test_load_image_draft_decodes_small_but_not_below_the_request(mixed: Path) -> None:
    image = load_image(mixed / "good.jpg", draft_size=16)
    assert min(image.size) >= 16 and image.size[0] < 56


# ---------------------------------------------------------------------------------------------- folder datasets


def test_folder_dataset_loads_good_files_and_skips_bad_ones(mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []

    def spy(path, **kwargs):
        opened.append(Path(path).name)
        return load_image(path, **kwargs)

    monkeypatch.setattr(datasets_module, "load_image", spy)
    dataset = FolderDataset(mixed, resolution=16)
    names = [p.relative_to(mixed).as_posix() for p in dataset.paths]
    assert sorted(names) == sorted(list(GOOD_KINDS) + list(BAD_KINDS))
    with pytest.warns(BadImageWarning) as record:
        items = [dataset[i] for i in range(len(dataset))]
    assert len(record) == len(BAD_KINDS)
    assert set(opened) == {Path(n).name for n in names}
    for item in items:
        assert item.shape == (3, 16, 16) and item.dtype == torch.uint8
    bad = {Path(p).relative_to(mixed).as_posix(): reason for p, reason in dataset.bad_files.items()}
    assert set(bad) == set(BAD_KINDS)
    for name, words in BAD_KINDS.items():
        assert words in bad[name]
    # A bad item is replaced by the next readable one (index + 1, ... modulo the length).
    for index, name in enumerate(names):
        if name in BAD_KINDS:
            following = next(j % len(names) for j in range(index + 1, index + len(names)) if names[j % len(names)] not in BAD_KINDS)
            assert torch.equal(items[index], items[following])


def test_items_are_centre_cropped_and_area_resized(mixed: Path) -> None:
    dataset = FolderDataset(mixed, resolution=16)
    index = [p.name for p in dataset.paths].index("good.png")
    source = smooth_image(48, 64, 1).astype(np.float64)[:, 8:56]  # centre 48x48 of 48x64
    reference = source.reshape(16, 3, 16, 3, 3).mean(axis=(1, 3))  # 3x3 area means
    item = dataset[index].permute(1, 2, 0).numpy().astype(np.float64)
    assert np.abs(item - reference).max() <= 1.0
    dataset.set_resolution(96)  # enlarging works too
    assert dataset[index].shape == (3, 96, 96)


def test_dataloader_with_two_workers_survives_a_full_epoch_and_reports_bad_files(mixed: Path) -> None:
    dataset = FolderDataset(mixed, resolution=8)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, shuffle=True, num_workers=2)
    seen = sum(batch.shape[0] for batch in loader)
    assert seen == len(dataset)
    bad = {Path(p).relative_to(mixed).as_posix(): reason for p, reason in dataset.bad_files.items()}
    assert set(bad) == set(BAD_KINDS)
    assert "truncated" in bad["truncated.jpg"] and "empty" in bad["empty.jpg"]


def test_scan_lists_every_bad_file_and_an_unreadable_dataset_is_an_error(mixed: Path, tmp_path: Path) -> None:
    dataset = FolderDataset(mixed, resolution=8)
    bad = dataset.scan(num_workers=2)
    assert {Path(p).relative_to(mixed).as_posix() for p in bad} == set(BAD_KINDS)
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "a.jpg").write_bytes(b"")
    (only_bad / "b.png").write_text("nope")
    broken = FolderDataset(only_bad, resolution=8)
    with pytest.raises(DatasetError, match=str(only_bad)):
        broken.scan()
    with pytest.raises(DatasetError, match="none of the 2 files"), pytest.warns(BadImageWarning):
        FolderDataset(only_bad, resolution=8)[0]


def test_hash_split_partitions_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(60):
        Image.new("RGB", (4, 4)).save(root / f"{i:03d}.png")
    splits = {s: FolderDataset(root, s, val_fraction=0.2, test_fraction=0.2) for s in ("train", "val", "test")}
    names = {s: {p.name for p in d.paths} for s, d in splits.items()}
    assert set.union(*names.values()) == {f"{i:03d}.png" for i in range(60)}
    assert sum(len(n) for n in names.values()) == 60
    for split, members in names.items():
        assert all(hash_split(n, 0.2, 0.2) == split for n in members)
        assert len(members) >= 5


# ---------------------------------------------------------------------------------------------- CelebA, Getchu


def make_celeba(root: Path, csv: bool = False) -> None:
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    partitions = [0, 0, 0, 1, 1, 2]
    male = [True, False, True, False, True, False]
    smiling = [False, False, True, True, False, True]
    for i in range(6):
        Image.fromarray(smooth_image(24, 20, i)).save(images / f"{i + 1:06d}.jpg")
    if csv:
        (root / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{i + 1:06d}.jpg,{p}\n" for i, p in enumerate(partitions)))
        (root / "list_attr_celeba.csv").write_text("image_id,Male,Smiling\n" + "".join(
            f"{i + 1:06d}.jpg,{1 if m else -1},{1 if s else -1}\n" for i, (m, s) in enumerate(zip(male, smiling))))
    else:
        (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(partitions)))
        (root / "list_attr_celeba.txt").write_text("6\nMale Smiling \n" + "".join(
            f"{i + 1:06d}.jpg {1 if m else -1:2d} {1 if s else -1:2d}\n" for i, (m, s) in enumerate(zip(male, smiling))))


@pytest.mark.parametrize("csv", [False, True], ids=["txt", "kaggle-csv"])
def test_celeba_layout_gives_splits_and_attributes(tmp_path: Path, csv: bool) -> None:
    make_celeba(tmp_path / "celeba", csv=csv)
    train = build_domain_dataset({"kind": "celeba", "root": str(tmp_path / "celeba"), "split": "train", "resolution": 16})
    assert isinstance(train, CelebADataset)
    assert [p.name for p in train.paths] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert train.attributes["Male"].tolist() == [True, False, True]
    assert train.attributes["Smiling"].tolist() == [False, False, True]
    val = CelebADataset(tmp_path / "celeba", "val")
    test = CelebADataset(tmp_path / "celeba", "test")
    everything = CelebADataset(tmp_path / "celeba", "all")
    assert [p.name for p in val.paths] == ["000004.jpg", "000005.jpg"]
    assert [p.name for p in test.paths] == ["000006.jpg"]
    assert len(everything) == 6 and everything.attributes["Male"].sum() == 3
    assert train[0].shape == (3, 16, 16)


def test_celeba_errors_name_the_missing_file(tmp_path: Path) -> None:
    make_celeba(tmp_path / "celeba")
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetError, match="list_eval_partition.txt"):
        CelebADataset(tmp_path / "celeba", "train")
    assert len(CelebADataset(tmp_path / "celeba", "all")) == 6
    with pytest.raises(DatasetError, match="img_align_celeba"):
        CelebADataset(tmp_path / "celeba" / "img_align_celeba", "all")


def test_getchu_split_lists(tmp_path: Path) -> None:
    root = tmp_path / "getchu"
    (root / "faces").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(smooth_image(20, 20, i)).save(root / "faces" / f"{i}.png")
    (root / "train.txt").write_text("# training faces\nfaces/0.png\nfaces/1.png\n\nfaces/2.png\nfaces/3.png\n")
    (root / "val.txt").write_text("faces/4.png\nfaces/5.png\n")
    train = build_domain_dataset({"kind": "getchu", "root": str(root), "split": "train", "resolution": 8})
    assert isinstance(train, GetchuDataset)
    assert [p.name for p in train.paths] == ["0.png", "1.png", "2.png", "3.png"]
    assert [p.name for p in GetchuDataset(root, "val").paths] == ["4.png", "5.png"]
    assert len(GetchuDataset(root, "all")) == 6
    with pytest.raises(DatasetError, match="test.txt"):
        GetchuDataset(root, "test")
    (root / "train.txt").unlink()
    (root / "val.txt").unlink()
    by_hash = [GetchuDataset(root, s, val_fraction=0.3, test_fraction=0.3) for s in ("train", "val", "test")
               if any(hash_split(f"faces/{i}.png", 0.3, 0.3) == s for i in range(6))]
    assert sum(len(d) for d in by_hash) == 6


# ---------------------------------------------------------------------------------------------- CAT


CAT_TEMPLATE = np.array([[-15, 0], [15, 0], [0, 20], [-25, -15], [-22, -40], [-8, -22], [8, -22], [22, -40], [25, -15]],
                        dtype=np.float64)


def cat_keypoints(angle_degrees: float, centre: tuple[float, float]) -> np.ndarray:
    angle = math.radians(angle_degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return CAT_TEMPLATE @ rotation.T + np.array(centre)


def write_cat_photo(path: Path, keypoints: np.ndarray, size: tuple[int, int] = (200, 180)) -> None:
    """A grey photo with a red left eye and a green right eye at the keypoints, plus its .cat file."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.full((height, width, 3), 128, np.uint8)
    for point, colour in ((keypoints[0], (255, 0, 0)), (keypoints[1], (0, 255, 0))):
        pixels[(xx - point[0]) ** 2 + (yy - point[1]) ** 2 <= 16] = colour
    Image.fromarray(pixels).save(path)
    Path(f"{path}.cat").write_text("9 " + " ".join(f"{v:.0f}" for v in keypoints.round().ravel()) + " ")


def colour_centroid(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    mask = np.all(np.abs(image.astype(int) - colour) < 60, axis=-1)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 0
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("angle", [0.0, 25.0, -40.0])
def test_cat_face_transform_levels_the_eyes_and_keeps_the_face_inside(angle: float) -> None:
    keypoints = cat_keypoints(angle, (100.0, 90.0))
    for points in (keypoints, keypoints[[1, 0, 2, 3, 4, 5, 6, 7, 8]]):  # also with the eye labels swapped
        matrix = cat_face_transform(points, 64, margin=0.2)
        mapped = points @ matrix[:, :2].T + matrix[:, 2]
        assert mapped[0, 1] == pytest.approx(mapped[1, 1], abs=1e-9)
        assert mapped[2, 1] > mapped[0, 1]  # mouth below the eyes
        assert mapped.min() >= 0 and mapped.max() <= 63
        # The face spans 1 / (1 + 2 margin) of the crop along its longer side (here the height).
        assert mapped[:, 1].max() - mapped[:, 1].min() == pytest.approx(64 / 1.4, rel=1e-9)
        scale = np.linalg.norm(matrix[:, 0])
        assert np.allclose(matrix[:, :2] / scale @ (matrix[:, :2] / scale).T, np.eye(2))  # a similarity


def test_cat_dataset_crops_level_faces_and_records_bad_keypoint_files(tmp_path: Path) -> None:
    root = tmp_path / "cats" / "CAT_00"
    root.mkdir(parents=True)
    write_cat_photo(root / "00000001_000.jpg", cat_keypoints(25.0, (100.0, 90.0)))
    write_cat_photo(root / "00000002_000.jpg", cat_keypoints(-30.0, (90.0, 100.0)))
    write_cat_photo(root / "00000003_000.jpg", cat_keypoints(0.0, (100.0, 90.0)))
    (root / "00000003_000.jpg.cat").write_text("7 1 2 3 4 5 6 7 8 9 10 11 12 13 14")
    Image.new("RGB", (50, 50)).save(root / "00000004_000.jpg")  # no .cat file
    dataset = build_domain_dataset({"kind": "cat", "root": str(tmp_path / "cats"), "resolution": 64})
    assert isinstance(dataset, CatDataset)
    assert np.allclose(dataset.keypoints[0], cat_keypoints(25.0, (100.0, 90.0)).round())
    for index in (0, 1):
        crop = dataset[index].permute(1, 2, 0).numpy()
        left, right = colour_centroid(crop, (255, 0, 0)), colour_centroid(crop, (0, 255, 0))
        assert abs(left[1] - right[1]) < 1.0
        assert left[0] < right[0]
    bad = {Path(p).name: reason for p, reason in dataset.bad_files.items()}
    assert set(bad) == {"00000003_000.jpg", "00000004_000.jpg"}
    assert "declares 7 points" in bad["00000003_000.jpg"]
    assert "not found" in bad["00000004_000.jpg"]


def test_read_cat_keypoints_rejects_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg.cat"
    for text, words in (("", "empty"), ("9 1 2 3", "18"), ("9 " + "a " * 18, "non-number"),
                        ("9 " + "5 5 " * 9, "same place")):
        path.write_text(text)
        with pytest.raises(CatKeypointError, match=words):
            read_cat_keypoints(path)


# ---------------------------------------------------------------------------------------------- cache


@pytest.mark.filterwarnings("ignore::twingan.data.datasets.BadImageWarning")
def test_cache_serves_the_same_pixels_and_marks_bad_files(mixed: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    plain = FolderDataset(mixed, resolution=16)
    cache = build_cache(plain, [8, 16], cache_dir, num_workers=2)
    assert cache.resolutions == [8, 16] and set(cache.bad) == set(BAD_KINDS)
    cached = build_domain_dataset({"kind": "folder", "root": str(mixed), "cache": str(cache_dir), "resolution": 16})
    assert set(Path(p).relative_to(mixed).as_posix() for p in cached.bad_files) == set(BAD_KINDS)
    for resolution in (8, 16, 12):  # 12 is not cached: decoded from the files
        plain.set_resolution(resolution)
        cached.set_resolution(resolution)
        expected = [plain[i] for i in range(len(plain))]
        assert all(torch.equal(cached[i], expected[i]) for i in range(len(plain)))
    array = np.load(cache_dir / cache.array_files[16].name, mmap_mode="r")
    assert array.shape == (len(plain), 16, 16, 3) and array.dtype == np.uint8
    assert not (cache_dir / BUILD_DIR_NAME).exists()


def test_stale_cache_is_reported_with_the_rebuild_command(mixed: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    build_cache(FolderDataset(mixed), [8], cache_dir)
    Image.fromarray(smooth_image(48, 64, 99)).save(mixed / "good.png")
    stat = (mixed / "good.png").stat()
    os.utime(mixed / "good.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    with pytest.raises(DatasetError, match="stale") as info:
        build_domain_dataset({"kind": "folder", "root": str(mixed), "cache": str(cache_dir)})
    assert "good.png" in str(info.value) and "twingan prep cache --kind folder" in str(info.value)
    build_cache(FolderDataset(mixed), [8], cache_dir)
    Image.new("RGB", (9, 9)).save(mixed / "new.png")
    with pytest.raises(DatasetError, match="not in the cache"):
        build_domain_dataset({"kind": "folder", "root": str(mixed), "cache": str(cache_dir)})
    with pytest.raises(DatasetError, match="no image cache"):
        build_domain_dataset({"kind": "folder", "root": str(mixed), "cache": str(tmp_path / "nowhere")})


def test_interrupted_cache_build_resumes_and_keeps_the_old_cache_readable(mixed: Path, tmp_path: Path) -> None:
    dataset = FolderDataset(mixed)
    reference = build_cache(dataset, [8, 16], tmp_path / "reference")
    cache_dir = tmp_path / "cache"
    build_cache(dataset, [8], cache_dir)  # an older cache, which must stay usable during the rebuild

    def interrupt_after_five(items, done, total):
        for count, item in enumerate(items):
            if count == 5:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        build_cache(dataset, [8, 16], cache_dir, chunk=2, progress=interrupt_after_five)
    assert json.loads((cache_dir / BUILD_DIR_NAME / "progress.json").read_text())["rows_done"] == 4
    assert FolderDataset(mixed, resolution=8, cache=cache_dir).cache.resolutions == [8]
    starts = []

    def record_start(items, done, total):
        starts.append((done, total))
        return items

    resumed = build_cache(dataset, [8, 16], cache_dir, chunk=2, progress=record_start)
    assert starts == [(4, len(dataset))]
    for resolution in (8, 16):
        assert np.array_equal(resumed.array(resolution), reference.array(resolution))
    assert resumed.bad == reference.bad
    assert sorted(p.name for p in cache_dir.glob("*.npy")) == sorted(p.name for p in resumed.array_files.values())


# ---------------------------------------------------------------------------------------------- spec and CLI


def test_build_domain_dataset_rejects_bad_specs(mixed: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="kind"):
        build_domain_dataset({"kind": "flickr", "root": str(mixed)})
    with pytest.raises(DatasetError, match=str(tmp_path / "missing")):
        build_domain_dataset({"kind": "folder", "root": str(tmp_path / "missing")})
    with pytest.raises(DatasetError, match="root"):
        build_domain_dataset({"kind": "folder"})
    with pytest.raises(DatasetError, match="spilt"):
        build_domain_dataset({"kind": "folder", "root": str(mixed), "spilt": "train"})
    with pytest.raises(DatasetError, match="split"):
        build_domain_dataset({"kind": "folder", "root": str(mixed), "split": "training"})
    with pytest.raises(DatasetError, match="margin"):
        build_domain_dataset({"kind": "celeba", "root": str(mixed), "margin": 0.1})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=str(empty)):
        build_domain_dataset({"kind": "folder", "root": str(empty)})


def test_prep_check_lists_problem_files(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "report.json"
    assert main(["prep", "check", str(mixed), "--workers", "0", "--report", str(report)]) == 1
    out = capsys.readouterr().out
    for name, words in BAD_KINDS.items():
        line = next(line for line in out.splitlines() if line.startswith(str(mixed / name)))
        assert words in line
    assert f"{len(GOOD_KINDS)} readable, {len(BAD_KINDS)} with problems" in out
    assert len(json.loads(report.read_text())["problems"]) == len(BAD_KINDS)
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.new("RGB", (8, 8)).save(clean / "a.png")
    assert main(["prep", "check", str(clean), "--workers", "0"]) == 0
    assert main(["prep", "check", str(tmp_path / "absent")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_prep_cache_builds_a_cache_the_dataset_uses(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    assert main(["prep", "cache", "--root", str(mixed), "--resolutions", "8", "16", "--out", str(out),
                 "--workers", "0"]) == 0
    dataset = build_domain_dataset({"kind": "folder", "root": str(mixed), "cache": str(out), "resolution": 8})
    assert dataset.cache.resolutions == [8, 16]
