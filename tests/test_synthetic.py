"""The built-in synthetic two-domain faces: determinism, layout, pairing, style gap, resume, CLI."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twingan.cli.main import main
from twingan.data.image_io import load_image
from twingan.data.synthetic import (
    HAIR_COLOUR_NAMES,
    MANIFEST_NAME,
    STYLES,
    FaceParams,
    generate_dataset,
    hair_colour_of,
    load_test_params,
    params_for_index,
    render,
    sample_params,
)
from twingan.errors import ConfigError

SIZE = 32


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _affine_fit_r2(src: np.ndarray, dst: np.ndarray) -> float:
    """R^2 of the best colour map dst ~ A @ src + b (3x3 matrix plus offset, least squares, over all pixels)."""
    x = np.concatenate([src.reshape(-1, 3), np.ones((src.size // 3, 1))], axis=1)
    y = dst.reshape(-1, 3)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    return float(1.0 - (residual**2).sum() / ((y - y.mean(axis=0)) ** 2).sum())


def test_params_json_round_trip_and_validation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        params = sample_params(rng)
        assert FaceParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    with pytest.raises(ValueError, match="hair_colour"):
        FaceParams.from_dict({**params.to_dict(), "hair_colour": "plaid"})


def test_render_is_deterministic_and_seed_dependent():
    a, b = params_for_index(7, "test", 0), params_for_index(8, "test", 0)
    assert a == params_for_index(7, "test", 0)
    assert a != b
    for style in STYLES:
        first = render(a, style, SIZE)
        assert first.size == (SIZE, SIZE) and first.mode == "RGB"
        assert _png_bytes(first) == _png_bytes(render(a, style, SIZE))
        assert _png_bytes(first) != _png_bytes(render(b, style, SIZE))


def test_synthetic_test_pairs_are_deterministic_from_the_seed(tmp_path):
    generate_dataset(tmp_path / "a", n_train=3, n_test=4, size=SIZE, seed=11, progress=False)
    generate_dataset(tmp_path / "b", n_train=3, n_test=4, size=SIZE, seed=11, progress=False)
    generate_dataset(tmp_path / "c", n_train=3, n_test=4, size=SIZE, seed=12, progress=False)
    files_a, files_b, files_c = (_files(tmp_path / name) for name in "abc")
    expected = {f"{split}/{style}/{i:05d}.png" for split, n in (("train", 3), ("test", 4)) for style in STYLES
                for i in range(n)} | {"test/params.jsonl", MANIFEST_NAME,
                                         "train/photo/labels.csv", "train/anime/labels.csv"}
    assert set(files_a) == expected
    assert files_a == files_b
    differing = [name for name in files_a if name.startswith("test/") and files_a[name] != files_c[name]]
    assert len(differing) == len([n for n in files_a if n.startswith("test/")])


def test_paired_test_files_match_saved_params(tmp_path):
    generate_dataset(tmp_path, n_train=2, n_test=5, size=SIZE, seed=3, progress=False)
    params = load_test_params(tmp_path)
    assert params == [params_for_index(3, "test", i) for i in range(5)]
    records = [json.loads(line) for line in (tmp_path / "test" / "params.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == [f"{i:05d}.png" for i in range(5)]
    for i, p in enumerate(params):
        for style in STYLES:
            on_disk = np.asarray(load_image(tmp_path / "test" / style / records[i]["file"]))
            assert np.array_equal(on_disk, np.asarray(render(p, style, SIZE)))
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert (manifest["seed"], manifest["size"], manifest["n_train"], manifest["n_test"], manifest["complete"]) == (
        3, SIZE, 2, 5, True)


def test_train_streams_are_unpaired(tmp_path):
    generate_dataset(tmp_path, n_train=6, n_test=1, size=SIZE, seed=5, progress=False)
    for i in range(6):
        photo_params = params_for_index(5, "train_photo", i)
        anime_params = params_for_index(5, "train_anime", i)
        assert photo_params != anime_params
        assert photo_params != params_for_index(5, "test", i)
        on_disk = np.asarray(load_image(tmp_path / "train" / "photo" / f"{i:05d}.png"))
        assert np.array_equal(on_disk, np.asarray(render(photo_params, "photo", SIZE)))
        on_disk = np.asarray(load_image(tmp_path / "train" / "anime" / f"{i:05d}.png"))
        assert np.array_equal(on_disk, np.asarray(render(anime_params, "anime", SIZE)))
    hair = [(params_for_index(5, "train_photo", i).hair_colour, params_for_index(5, "train_anime", i).hair_colour)
            for i in range(40)]
    assert sum(a == b for a, b in hair) < 20  # independent draws agree about 1 time in 8


def test_styles_differ_in_structure_not_by_a_colour_map():
    rng = np.random.default_rng(21)
    for _ in range(12):
        params = sample_params(rng)
        photo = np.asarray(render(params, "photo", 64), dtype=np.float64)
        anime = np.asarray(render(params, "anime", 64), dtype=np.float64)
        # the measure itself: a recoloured image is explained almost perfectly by a colour map
        recoloured = anime @ np.array([[0.6, 0.1, 0.0], [0.2, 0.9, 0.1], [0.0, 0.1, 0.7]]) + 12.0
        assert _affine_fit_r2(anime, recoloured) > 0.999
        assert _affine_fit_r2(photo, anime) < 0.8
        assert np.abs(photo - anime).mean() > 20.0


@pytest.mark.parametrize("size", [32, 64])
def test_hair_colour_of_recovers_the_true_colour(size):
    rng = np.random.default_rng(100 + size)
    params = [sample_params(rng) for _ in range(80)]
    for style in STYLES:
        hits = [hair_colour_of(render(p, style, size), style) == p.hair_colour_index for p in params]
        assert np.mean(hits) >= 0.95, (style, size, np.mean(hits))
    as_array = np.asarray(render(params[0], "anime", size))
    assert HAIR_COLOUR_NAMES[hair_colour_of(as_array, "anime")] == params[0].hair_colour
    with pytest.raises(ValueError, match="uint8"):
        hair_colour_of(as_array.astype(np.float32), "anime")


def test_resume_redraws_exactly_the_missing_and_damaged_files(tmp_path):
    generate_dataset(tmp_path, n_train=4, n_test=3, size=SIZE, seed=9, progress=False)
    before = _files(tmp_path)
    images = sorted(tmp_path.rglob("*.png"))
    stamps = {p: p.stat().st_mtime_ns for p in images}
    deleted = [images[0], images[5], images[-1]]
    for p in deleted:
        p.unlink()
    summary = generate_dataset(tmp_path, n_train=4, n_test=3, size=SIZE, seed=9, progress=False)
    assert (summary.rendered, summary.reused, summary.already_complete) == (3, len(images) - 3, False)
    assert _files(tmp_path) == before
    assert all(p.stat().st_mtime_ns == stamps[p] for p in images if p not in deleted)

    # an interrupted run (manifest not marked complete) with a truncated leftover
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({**manifest, "complete": False}))
    images[2].write_bytes(before[str(images[2].relative_to(tmp_path))][:40])
    summary = generate_dataset(tmp_path, n_train=4, n_test=3, size=SIZE, seed=9, progress=False)
    assert summary.rendered == 1
    assert _files(tmp_path) == before

    summary = generate_dataset(tmp_path, n_train=4, n_test=3, size=SIZE, seed=9, progress=False)
    assert summary.already_complete and summary.rendered == 0


def test_worker_pool_gives_the_same_files(tmp_path):
    generate_dataset(tmp_path / "one", n_train=31, n_test=2, size=16, seed=4, progress=False, workers=1)
    generate_dataset(tmp_path / "two", n_train=31, n_test=2, size=16, seed=4, progress=False, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_mismatching_or_foreign_folder_is_refused(tmp_path):
    generate_dataset(tmp_path / "ds", n_train=2, n_test=1, size=SIZE, seed=1, progress=False)
    for change in ({"seed": 2}, {"size": 48}, {"n_train": 3}, {"n_test": 2}):
        request = {"n_train": 2, "n_test": 1, "size": SIZE, "seed": 1, **change}
        with pytest.raises(ConfigError, match="choose another --out or delete"):
            generate_dataset(tmp_path / "ds", progress=False, **request)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "me.png").write_bytes(b"not ours")
    with pytest.raises(ConfigError, match="no synthetic.json"):
        generate_dataset(foreign, n_train=2, n_test=1, size=SIZE, seed=1, progress=False)
    with pytest.raises(ConfigError, match="--size"):
        generate_dataset(tmp_path / "tiny", n_train=2, n_test=1, size=4, seed=1, progress=False)


def test_cli_prep_synthetic(tmp_path, capsys):
    out = tmp_path / "synthetic"
    argv = ["prep", "synthetic", "--out", str(out), "--n-train", "3", "--n-test", "2", "--size", "24",
            "--seed", "6", "--quiet"]
    assert main(argv) == 0
    assert "drew 10 images" in capsys.readouterr().out
    assert len(list((out / "train" / "anime").glob("*.png"))) == 3
    assert load_test_params(out) == [params_for_index(6, "test", i) for i in range(2)]
    assert load_image(out / "test" / "photo" / "00001.png").size == (24, 24)
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    assert main(argv[:-2] + ["7", "--quiet"]) == 1
    assert "choose another --out" in capsys.readouterr().err
