"""Generation from noise: the API (determinism by seed, latent walks) and `twingan generate` (files, errors)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_run_overrides
from twingan.checkpoint import load_tensors, read_meta, save_checkpoint
from twingan.cli.main import main
from twingan.errors import CheckpointError, ConfigError
from twingan.inference import Translator
from twingan.inference.generation import (
    generate_images, generate_tensor, latent_walk, seed_condition, seed_labels, seed_noise, slerp, walk_condition,
    walk_noise,
)
from twingan.models import ModelConfig, TwinGAN

RES = 16
DROP = object()


@pytest.fixture(scope="module")
def gen_checkpoint(synthetic_root, tmp_path_factory) -> Path:
    """A real 16 px checkpoint with a mapping network (noise_dim 8) from a ten-step training run."""
    from twingan.training import train

    run_dir = tmp_path_factory.mktemp("gen_run")
    return train(tiny_run_overrides(synthetic_root, run_dir, "model.noise_dim=8"))


def derived_checkpoint(source: Path, path: Path, config_changes: dict, extra: dict | None = None) -> Path:
    """A loadable checkpoint with ``source``'s EMA weights under a changed model config (keys set to DROP go).

    Tensors whose shape the new config changes (e.g. the generation statistics set) keep the new model's values.
    """
    meta = read_meta(source)
    model_config = {k: v for k, v in {**meta["model_config"], **config_changes}.items() if v is not DROP}
    model = TwinGAN(ModelConfig.from_dict(model_config))
    state = load_tensors(source, prefix="ema.")
    expected = model.state_dict()
    tensors = {k: state[k] if k in state and state[k].shape == v.shape else v for k, v in expected.items()}
    tensors.update(extra or {})
    both = {f"{prefix}.{k}": v for prefix in ("ema", "model") for k, v in tensors.items()}
    keep = {k: meta[k] for k in ("kind", "twingan_version", "config", "progress") if k in meta}
    return save_checkpoint(path, both, {**keep, "model_config": model_config})


@pytest.fixture(scope="module")
def attr_checkpoint(gen_checkpoint, tmp_path_factory) -> Path:
    """The generation checkpoint with attributes {hair: [black, blonde]} and random (non-zero) modulation weights."""
    path = tmp_path_factory.mktemp("attr") / "attr.safetensors"
    meta = read_meta(gen_checkpoint)
    model = TwinGAN(ModelConfig.from_dict({**meta["model_config"], "attributes": {"hair": ["black", "blonde"]}}))
    gen = torch.Generator().manual_seed(0)
    modulation = {k: torch.randn(v.shape, generator=gen) * 0.5 for k, v in model.state_dict().items()
                  if ".modulation." in k}
    assert modulation, "the conditioned model has no modulation weights to set"
    return derived_checkpoint(gen_checkpoint, path, {"attributes": {"hair": ["black", "blonde"]}}, modulation)


@pytest.fixture(scope="module")
def plain_checkpoint(gen_checkpoint, tmp_path_factory) -> Path:
    """The same weights without the mapping network (noise_dim 0): a checkpoint trained without generation."""
    path = tmp_path_factory.mktemp("plain") / "plain.safetensors"
    return derived_checkpoint(gen_checkpoint, path, {"noise_dim": 0})


@pytest.fixture(scope="module")
def translator(gen_checkpoint) -> Translator:
    return Translator.load(gen_checkpoint, device="cpu")


def pixels(img) -> np.ndarray:
    return np.asarray(Image.open(img).convert("RGB") if isinstance(img, (str, Path)) else img.convert("RGB")).astype(int)


def within_one_level(a, b) -> bool:
    """Equal up to one grey level: another batch size may round the last float bit differently."""
    a, b = pixels(a), pixels(b)
    return a.shape == b.shape and np.abs(a - b).max() <= 1


def cli(*args) -> int:
    return main(["generate", *map(str, args), "--device", "cpu", "--no-progress"])


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".")] if folder.exists() else []


# ---- the API -----------------------------------------------------------------------------------


def test_seed_noise_rows_do_not_depend_on_n(translator):
    model = translator.model
    many = seed_noise(model, 11, 40)
    assert many.shape == (40, 8) and many.device.type == "cpu"
    for n in (1, 3, 17):
        assert torch.equal(seed_noise(model, 11, n), many[:n])
    assert not torch.equal(seed_noise(model, 12, 1)[0], many[0])


def test_same_seed_same_images_other_seed_differs(translator):
    first = generate_images(translator, 4, "anime", seed=7)
    again = generate_images(translator.model, 4, "anime", seed=7)
    other = generate_images(translator, 4, "anime", seed=8)
    assert len(first) == 4 and all(img.size == (RES, RES) and img.mode == "RGB" for img in first)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, again))
    assert all(not np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, other))
    assert not np.array_equal(pixels(first[0]), pixels(first[1]))


def test_image_i_does_not_depend_on_n_or_batch_size(translator):
    model = translator.model
    ref = generate_images(model, 9, "anime", seed=3, batch_size=4)
    for n in (1, 2, 5):  # same batch size: bit-identical
        assert all(np.array_equal(pixels(a), pixels(b))
                   for a, b in zip(generate_images(model, n, "anime", seed=3, batch_size=4), ref))
    for batch_size in (1, 3, 16):  # another batch size: the same faces up to float rounding
        assert all(within_one_level(a, b)
                   for a, b in zip(generate_images(model, 5, "anime", seed=3, batch_size=batch_size), ref))
    z = seed_noise(model, 3, 9)
    floats = generate_tensor(model, z, "anime", batch_size=4)
    for batch_size in (1, 9):
        torch.testing.assert_close(generate_tensor(model, z[:5], "anime", batch_size=batch_size), floats[:5],
                                   atol=1e-4, rtol=1e-4)


def test_walk_starts_and_ends_on_the_seeds_images(translator):
    model = translator.model
    seeds, steps = [1, 2, 3], 4
    frames = latent_walk(model, seeds, steps, "anime")
    assert len(frames) == steps * (len(seeds) - 1) + 1
    z = walk_noise(model, seeds, steps)
    for k, seed in enumerate(seeds):  # key frames: exactly the seeds' noise and image 0
        assert torch.equal(z[k * steps], seed_noise(model, seed, 1)[0])
        assert np.array_equal(pixels(frames[k * steps]), pixels(generate_images(model, 1, "anime", seed)[0]))
    walk_floats = generate_tensor(model, z, "anime")
    for k, seed in ((0, seeds[0]), (-1, seeds[-1])):
        torch.testing.assert_close(walk_floats[k], generate_tensor(model, seed_noise(model, seed, 1), "anime")[0],
                                   atol=1e-5, rtol=0)
    assert not np.array_equal(pixels(frames[1]), pixels(frames[0]))
    assert not np.array_equal(pixels(frames[2]), pixels(frames[steps]))


def test_slerp_endpoints_and_norm():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.isclose(mid.norm(), (a.norm() + b.norm()) / 2, atol=1e-5)
    cos = lambda u, v: float(torch.dot(u, v) / (u.norm() * v.norm()))  # noqa: E731
    assert abs(cos(mid, a) - cos(mid, b)) < 1e-5


def test_api_errors(translator, plain_checkpoint):
    model = translator.model
    with pytest.raises(ConfigError, match="trained without generation"):
        generate_images(Translator.load(plain_checkpoint, device="cpu"), 2, "anime", 0)
    with pytest.raises(ConfigError, match="'cat'.*human"):
        generate_images(model, 2, "cat", 0)
    with pytest.raises(ConfigError, match="at least 1"):
        generate_images(model, 0, "anime", 0)
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        latent_walk(model, [1], 4, "anime")
    with pytest.raises(ConfigError, match="at least 2 steps"):
        latent_walk(model, [1, 2], 1, "anime")
    with pytest.raises(ConfigError, match="without attributes"):
        generate_images(model, 1, "anime", 0, attrs=["hair=black"])


def test_model_mode_is_restored(translator):
    model = translator.model.train()
    try:
        generate_images(model, 2, "anime", 0)
        assert model.training
    finally:
        model.eval()


def test_attributes_condition_the_images(attr_checkpoint):
    model = Translator.load(attr_checkpoint, device="cpu").model
    black = generate_images(model, 2, "anime", 5, attrs=["hair=black"])
    blonde = generate_images(model, 2, "anime", 5, attrs={"hair": "blonde"})
    assert not np.array_equal(pixels(black[0]), pixels(blonde[0]))
    assert np.array_equal(pixels(blonde[0]), pixels(generate_images(model, 1, "anime", 5, attrs="hair=blonde")[0]))
    with pytest.raises(ConfigError, match="hair='blue'"):
        generate_images(model, 1, "anime", 5, attrs=["hair=blue"])


def test_unnamed_attributes_are_drawn_from_the_training_prior(attr_checkpoint):
    """A prior certain of one hair colour draws exactly the faces that name it; an even prior draws both."""
    model = Translator.load(attr_checkpoint, device="cpu").model
    for value, prior in (("black", [1.0, 0.0]), ("blonde", [0.0, 1.0])):
        model.attribute_prior[1] = torch.tensor(prior)
        drawn = generate_images(model, 3, "anime", 4)
        named = generate_images(model, 3, "anime", 4, attrs=f"hair={value}")
        assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(drawn, named))
    model.attribute_prior[1] = torch.tensor([0.5, 0.5])
    labels = seed_labels(model, 4, 40, "anime")
    assert set(labels[:, 0].tolist()) == {0, 1}
    assert torch.equal(seed_labels(model, 4, 5, "anime"), labels[:5])  # row i does not depend on n
    assert (seed_labels(model, 4, 40, "anime", attrs="hair=blonde") == 1).all()
    assert not torch.equal(seed_labels(model, 5, 40, "anime"), labels)
    with pytest.raises(ConfigError, match="hair='blue'"):
        seed_labels(model, 4, 2, "anime", attrs="hair=blue")


def test_an_attribute_checkpoint_without_the_prior_is_refused_with_the_reason(attr_checkpoint, tmp_path):
    """Checkpoints saved before the prior was stored name what is missing and what to do."""
    meta = read_meta(attr_checkpoint)
    tensors = {k: v for k, v in load_tensors(attr_checkpoint).items() if not k.endswith("attribute_prior")}
    keep = {k: meta[k] for k in ("kind", "twingan_version", "config", "progress", "model_config") if k in meta}
    old = save_checkpoint(tmp_path / "old.safetensors", tensors, keep)
    with pytest.raises(CheckpointError, match="attribute_prior.*attribute prior.*retrain"):
        Translator.load(old, device="cpu")


def test_attribute_walk_blends_the_seeds_conditions(attr_checkpoint):
    model = Translator.load(attr_checkpoint, device="cpu").model
    model.attribute_prior[1] = torch.tensor([0.5, 0.5])
    seeds = next([a, b] for a in range(50) for b in range(50)  # two seeds that drew different hair
                 if seed_labels(model, a, 1, "anime")[0, 0] != seed_labels(model, b, 1, "anime")[0, 0])
    steps = 4
    cond = walk_condition(model, seeds, steps, "anime")
    first, last = (seed_condition(model, s, 1, "anime")[0] for s in seeds)
    assert torch.equal(cond[0], first) and torch.equal(cond[-1], last)
    torch.testing.assert_close(cond[2], 0.5 * (first + last))
    frames = latent_walk(model, seeds, steps, "anime")
    for k, seed in enumerate(seeds):
        assert np.array_equal(pixels(frames[k * steps]), pixels(generate_images(model, 1, "anime", seed)[0]))
    assert seed_condition(Translator.load(attr_checkpoint).model, 0, 2, "anime").shape == (2, 2)
    assert walk_condition(TwinGAN(ModelConfig(resolution=16, max_channels=8, fmap_base=32, noise_dim=8)),
                          [0, 1], 2, "anime") is None


# ---- the CLI -----------------------------------------------------------------------------------


def test_cli_writes_images_and_grid(gen_checkpoint, tmp_path, translator):
    out = tmp_path / "faces"
    assert cli(gen_checkpoint, "--domain", "anime", "--n", 5, "--seed", 3, "--out", out, "--grid-cols", 2,
               "--batch-size", 2) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"seed3_{i:04d}.png" for i in range(5)] + ["grid.png"])
    assert all(Image.open(out / f"seed3_{i:04d}.png").size == (RES, RES) for i in range(5))
    pad = 2
    assert Image.open(out / "grid.png").size == (2 * RES + 3 * pad, 3 * RES + 4 * pad)
    grid = pixels(out / "grid.png")
    assert np.array_equal(grid[pad:pad + RES, pad + RES + pad:pad + 2 * RES + pad], pixels(out / "seed3_0001.png"))
    # image i is the same whatever --n (same --batch-size: bit-identical) and --batch-size (up to rounding)
    fewer, other_bs = tmp_path / "fewer", tmp_path / "other_bs"
    assert cli(gen_checkpoint, "--domain", "anime", "--n", 2, "--seed", 3, "--out", fewer, "--batch-size", 2) == 0
    assert cli(gen_checkpoint, "--domain", "anime", "--n", 3, "--seed", 3, "--out", other_bs, "--batch-size", 16) == 0
    for i in range(2):
        assert np.array_equal(pixels(fewer / f"seed3_{i:04d}.png"), pixels(out / f"seed3_{i:04d}.png"))
    for i in range(3):
        assert within_one_level(other_bs / f"seed3_{i:04d}.png", out / f"seed3_{i:04d}.png")
    assert np.array_equal(pixels(out / "seed3_0000.png"),
                          pixels(generate_images(translator, 1, "anime", 3, batch_size=2)[0]))
    assert not hidden_files(tmp_path)


def test_cli_interpolate_writes_strip_and_gif(gen_checkpoint, tmp_path):
    out = tmp_path / "walk"
    assert cli(gen_checkpoint, "--domain", "anime", "--interpolate", "--seeds", 1, 2, 3, "--steps", 4,
               "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["walk.gif", "walk_strip.png"]
    frames = 4 * 2 + 1
    strip = Image.open(out / "walk_strip.png")
    assert strip.size == (frames * RES, RES)
    gif = Image.open(out / "walk.gif")
    assert gif.n_frames == frames and gif.info.get("loop") == 0 and gif.is_animated
    # the strip's first and last frames are seed 1's and seed 3's image 0
    seeds_out = tmp_path / "seeds"
    for seed in (1, 3):
        assert cli(gen_checkpoint, "--domain", "anime", "--n", 1, "--seed", seed, "--out", seeds_out,
                   "--overwrite") == 0  # the two runs share grid.png
    strip_px = pixels(strip)
    assert np.array_equal(strip_px[:, :RES], pixels(seeds_out / "seed1_0000.png"))
    assert np.array_equal(strip_px[:, -RES:], pixels(seeds_out / "seed3_0000.png"))
    # many frames wrap into rows of 16
    long_out = tmp_path / "long"
    assert cli(gen_checkpoint, "--domain", "anime", "--interpolate", "--seeds", 4, 5, "--steps", 20,
               "--out", long_out) == 0
    assert Image.open(long_out / "walk_strip.png").size == (16 * RES, 2 * RES)
    assert Image.open(long_out / "walk.gif").n_frames == 21
    assert not hidden_files(tmp_path)


def test_cli_attr(attr_checkpoint, tmp_path):
    import csv

    black, blonde, drawn = tmp_path / "black", tmp_path / "blonde", tmp_path / "drawn"
    assert cli(attr_checkpoint, "--domain", "anime", "--n", 2, "--out", black, "--attr", "hair=black") == 0
    assert cli(attr_checkpoint, "--domain", "anime", "--n", 2, "--out", blonde, "--attr", "hair=blonde") == 0
    assert not np.array_equal(pixels(black / "seed0_0000.png"), pixels(blonde / "seed0_0000.png"))
    assert (black / "seed0_labels.csv").read_text() == "file,hair\nseed0_0000.png,black\nseed0_0001.png,black\n"
    # without --attr: each face's hair is drawn from the prior, and the CSV says which (the labels.csv format)
    assert cli(attr_checkpoint, "--domain", "anime", "--n", 12, "--seed", 4, "--out", drawn) == 0
    with open(drawn / "seed4_labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    model = Translator.load(attr_checkpoint, device="cpu").model
    assert [r["hair"] for r in rows] == [("black", "blonde")[v] for v in seed_labels(model, 4, 12, "anime")[:, 0]]
    assert {r["hair"] for r in rows} == {"black", "blonde"} and rows[3]["file"] == "seed4_0003.png"
    for r in rows[:2]:
        named = generate_images(model, 2, "anime", 4, attrs={"hair": r["hair"]})[int(r["file"][6:10])]
        assert np.array_equal(pixels(drawn / r["file"]), pixels(named))
    only_csv = tmp_path / "only_csv"  # the CSV is an output too: refused unless --overwrite, nothing written
    only_csv.mkdir()
    (only_csv / "seed4_labels.csv").write_text("keep me")
    assert cli(attr_checkpoint, "--domain", "anime", "--n", 1, "--seed", 4, "--out", only_csv) != 0
    assert [p.name for p in only_csv.iterdir()] == ["seed4_labels.csv"]
    assert (only_csv / "seed4_labels.csv").read_text() == "keep me"
    assert cli(attr_checkpoint, "--domain", "anime", "--n", 1, "--seed", 4, "--out", only_csv, "--overwrite") == 0
    assert (only_csv / "seed4_labels.csv").read_text().startswith("file,hair\nseed4_0000.png,")


@pytest.mark.parametrize(
    "which, args, expected",
    [
        ("plain", ["--n", 2], ["trained without generation", "experiment=generate_anime", "model.noise_dim>0"]),
        ("gen", ["--n", 2, "--domain", "cat"], ["--domain", "'cat'", "human", "anime"]),
        ("attr", ["--n", 2, "--attr", "hair=blue"], ["--attr", "blue", "black", "blonde"]),
        ("attr", ["--n", 2, "--attr", "colour=red"], ["--attr", "colour"]),
        ("attr", ["--n", 2, "--attr", "hair"], ["--attr", "NAME=VALUE"]),
        ("gen", ["--n", 2, "--attr", "hair=black"], ["--attr", "without attributes"]),
        ("gen", ["--n", 0], ["--n", "at least 1"]),
        ("gen", ["--n", -3], ["--n", "at least 1"]),
        ("gen", ["--interpolate", "--seeds", 1, 2, "--steps", 1], ["--steps", "at least 2"]),
        ("gen", ["--interpolate", "--seeds", 1], ["--seeds", "at least 2"]),
        ("gen", ["--interpolate"], ["--seeds", "at least 2"]),
        ("gen", ["--seeds", 1, 2], ["--seeds", "--interpolate"]),
        ("gen", ["--n", 2, "--batch-size", 0], ["--batch-size"]),
    ],
)
def test_cli_errors(which, args, expected, gen_checkpoint, attr_checkpoint, plain_checkpoint, tmp_path, capsys):
    checkpoint = {"gen": gen_checkpoint, "attr": attr_checkpoint, "plain": plain_checkpoint}[which]
    if "--domain" not in args:
        args = [*args, "--domain", "anime"]
    out = tmp_path / "out"
    assert cli(checkpoint, *args, "--out", out) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("twingan generate: error:"), err
    for text in expected:
        assert text in err, (text, err)
    assert not out.exists() or not any(out.iterdir())


def test_cli_refuses_existing_outputs_unless_overwrite(gen_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid.png").write_bytes(b"keep me")
    assert cli(gen_checkpoint, "--domain", "anime", "--n", 2, "--out", out) != 0
    err = capsys.readouterr().err
    assert "--overwrite" in err and "grid.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["grid.png"] and (out / "grid.png").read_bytes() == b"keep me"
    assert cli(gen_checkpoint, "--domain", "anime", "--n", 2, "--out", out, "--overwrite") == 0
    assert Image.open(out / "grid.png").size[0] > RES
    (out / "walk.gif").write_bytes(b"old")
    assert cli(gen_checkpoint, "--domain", "anime", "--interpolate", "--seeds", 1, 2, "--steps", 2,
               "--out", out) != 0
    assert "walk.gif" in capsys.readouterr().err and not (out / "walk_strip.png").exists()
    assert not hidden_files(out)
