"""Domain face profiles: config, checkpoints and releases record them, older checkpoints derive them from the
domain names, and translate, embed and the web demo detect faces by profile, not by the name 'human'."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pytest
from PIL import Image
from skimage import data

from twingan.checkpoint import DIGEST_KEY, load_tensors, read_meta, save_checkpoint
from twingan.cli.main import main
from twingan.errors import ConfigError
from twingan.faces import FaceDetector
from twingan.faces.profiles import META_KEY, checkpoint_profiles, derive_profile, resolve_profiles
from twingan.inference import Translator
from twingan.inference.release import write_release
from twingan.search import EmbeddingStore
from twingan.training.config import compose_config, dataset_specs, domain_profiles
from twingan.web import WebDemo

RENAMED = {"human": "selfie", "anime": "toon"}


def rewrite_checkpoint(src: Path, dst: Path, profiles: Mapping[str, str] | None, rename: bool = True) -> Path:
    """``src`` with its domains renamed (human -> selfie, anime -> toon) and ``profiles`` recorded (None: none,
    as a checkpoint written before profiles existed). The weights are the same tensors."""
    meta = {k: v for k, v in read_meta(src).items() if k not in ("format", "format_version", DIGEST_KEY)}
    meta.pop(META_KEY)
    if rename:
        meta["model_config"] = {**meta["model_config"], "domains": [RENAMED[d] for d in meta["model_config"]["domains"]]}
    if profiles is not None:
        meta[META_KEY] = dict(profiles)
    return save_checkpoint(dst, load_tensors(src), meta)


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def selfie_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("selfie")
    return rewrite_checkpoint(tiny_checkpoint, folder / "selfie.safetensors", {"selfie": "photo", "toon": "anime"})


def test_profiles_resolve_and_bad_values_are_one_line_errors():
    assert [derive_profile(name) for name in ("human", "anime", "cat", "selfie")] == ["photo", "anime", "cat", "none"]
    assert resolve_profiles({"human": None, "selfie": "photo", "toon": "none"}) == {
        "human": "photo", "selfie": "photo", "toon": "none"}
    cfg = compose_config(["data.domains.anime.profile=none"])
    assert domain_profiles(cfg) == {"human": "photo", "anime": "none"}
    assert all("profile" not in spec for spec in dataset_specs(cfg))
    with pytest.raises(ConfigError) as error:
        compose_config(["data.domains.human.profile=face"])
    assert str(error.value) == ("data.domains.human.profile='face' is not a face profile; use one of photo, anime, "
                                "cat, none or null (from the name)")


def test_training_and_release_record_profiles_and_old_checkpoints_derive_them(tiny_checkpoint, tmp_path):
    assert read_meta(tiny_checkpoint)[META_KEY] == {"human": "photo", "anime": "anime"}
    old = rewrite_checkpoint(tiny_checkpoint, tmp_path / "old.safetensors", None, rename=False)
    assert META_KEY not in read_meta(old)
    translator = Translator.load(old, device="cpu")
    assert translator.profiles == {"human": "photo", "anime": "anime"}
    assert translator.detects_faces("human") and not translator.detects_faces("anime")
    assert Translator.load(rewrite_checkpoint(tiny_checkpoint, tmp_path / "names.safetensors", None),
                           device="cpu").profiles == {"selfie": "none", "toon": "none"}
    release = write_release(old, tmp_path / "old.release.safetensors", evaluate=False)
    assert read_meta(release.path)[META_KEY] == {"human": "photo", "anime": "anime"}
    assert "human (photo), anime (anime)" in release.card.read_text()
    assert checkpoint_profiles({META_KEY: {"human": "none"}}, ["human", "cat"]) == {"human": "none", "cat": "cat"}


def test_a_photo_profile_domain_is_detected_in_translate_exactly_as_human(
    tiny_checkpoint, selfie_checkpoint, astronaut_file, tmp_path, capsys
):
    outputs = {}
    for name, checkpoint, to in (("human", tiny_checkpoint, "anime"), ("selfie", selfie_checkpoint, "toon")):
        out = tmp_path / name
        code = main(["translate", str(checkpoint), str(astronaut_file), "--to", to, "--out", str(out),
                     "--paste-back", "--no-progress"])
        assert code == 0, capsys.readouterr().err
        assert "note:" not in capsys.readouterr().err
        outputs[name] = {p.name: np.asarray(Image.open(p)) for p in sorted(out.iterdir())}
    assert list(outputs["selfie"]) == ["astronaut.png", "astronaut_pasted.png"]
    for file, pixels in outputs["human"].items():
        assert np.array_equal(outputs["selfie"][file], pixels)

    selfie = Translator.load(selfie_checkpoint, device="cpu")
    human = Translator.load(tiny_checkpoint, device="cpu")
    avatar = selfie.translate_photo(astronaut_file, to="toon").avatar
    assert np.array_equal(np.asarray(avatar), np.asarray(human.translate_photo(astronaut_file, to="anime").avatar))

    none = rewrite_checkpoint(tiny_checkpoint, tmp_path / "none.safetensors", {"selfie": "none", "toon": "anime"})
    assert main(["translate", str(none), str(astronaut_file), "--to", "toon", "--out", str(tmp_path / "crop"),
                 "--no-progress"]) == 0
    assert "'selfie' (none) inputs are taken as face crops" in capsys.readouterr().err
    centre = selfie.translate(Image.open(astronaut_file), to="toon")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "crop" / "astronaut.png")), np.asarray(centre))


def test_a_photo_profile_domain_embeds_and_serves_as_human(
    tiny_checkpoint, selfie_checkpoint, astronaut_file, tmp_path, capsys
):
    vectors = {}
    for name, checkpoint, domain in (("human", tiny_checkpoint, "human"), ("selfie", selfie_checkpoint, "selfie")):
        out = tmp_path / f"{name}.emb"
        assert main(["embed", str(checkpoint), str(astronaut_file), "--domain", domain, "--out", str(out),
                     "--device", "cpu", "--no-progress", "--detect"]) == 0
        assert "note:" not in capsys.readouterr().err
        vectors[name] = EmbeddingStore.open(out).load()[0]
    np.testing.assert_array_equal(vectors["selfie"], vectors["human"])
    assert main(["embed", str(selfie_checkpoint), str(astronaut_file), "--domain", "toon", "--out",
                 str(tmp_path / "toon.emb"), "--device", "cpu", "--no-progress", "--detect"]) == 0
    assert "'toon' pictures (face profile anime) may have none" in capsys.readouterr().err

    demo = WebDemo(Translator.load(selfie_checkpoint, device="cpu"), detector=FaceDetector(device="cpu"))
    try:
        assert demo.default_domains() == ("selfie", "toon")
        assert [(e.src, e.to, e.detect) for e in demo.examples()][:1] == [("selfie", "toon", True)]
        assert demo.pipeline("selfie").detector is demo.detector and demo.pipeline("toon").detector is None
    finally:
        demo.close()
