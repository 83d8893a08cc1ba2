"""Reference-guided and attribute-guided translation: the API, `twingan translate --reference/--attr`, and the
conditioned scores of `twingan eval`, on checkpoints of tiny real training runs with model.style_dim=8 and with
a hair attribute (the synthetic training folders carry labels.csv)."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import twingan
from twingan.checkpoint import load_translator
from twingan.cli.main import main
from twingan.data.image_io import load_image, pil_to_tensor
from twingan.data.synthetic import HAIR_COLOUR_NAMES, FaceParams, hair_colour_of, load_test_params, params_for_index
from twingan.errors import ConfigError, ImageLoadError
from twingan.faces import FaceDetector, face_alignment_transform, warp_to_crop
from twingan.inference import Translator
from twingan.metrics.evaluate import evaluate_checkpoint
from twingan.metrics.paired import reference_partners, reference_target
from twingan.training import train

from helpers import tiny_run_overrides

HAIR_VALUES = "[" + ",".join(HAIR_COLOUR_NAMES) + "]"
REF_KEYS = [f"{d}/{p}_{m}" for d in ("photo2anime", "anime2photo") for p in ("ref", "noref")
            for m in ("hair_acc", "pose_l1", "pose_acc")]
ATTR_KEYS = ["photo2anime/attr_hair_acc", "anime2photo/attr_hair_acc"]


@pytest.fixture(scope="module")
def style_checkpoint(synthetic_root, tmp_path_factory) -> Path:
    return train(tiny_run_overrides(synthetic_root, tmp_path_factory.mktemp("style_run"), "model.style_dim=8"))


@pytest.fixture(scope="module")
def attr_checkpoint(synthetic_root, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("attr_run")
    return train(tiny_run_overrides(synthetic_root, run_dir, f"+model.attributes.hair={HAIR_VALUES}"))


@pytest.fixture(scope="module")
def paired_params(synthetic_root) -> list[FaceParams]:
    return load_test_params(synthetic_root)


def two_references(root: Path, params: list[FaceParams]) -> tuple[Path, Path]:
    """Two anime test faces with different hair colours."""
    first = params[0].hair_colour
    other = next(i for i, p in enumerate(params) if p.hair_colour != first)
    return root / "test" / "anime" / "00000.png", root / "test" / "anime" / f"{other:05d}.png"


def modulated(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if "modulation" in name]


def with_random_modulation(translator: Translator, scale: float = 0.5) -> Translator:
    """A copy whose norm modulation weights are random and large enough to change whole pixels."""
    model = copy.deepcopy(translator.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in modulated(model):
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return Translator(model)


# ---------------------------------------------------------------- the Python API


def test_reference_changes_the_translation_and_is_the_target_style(style_checkpoint, synthetic_root, paired_params):
    translator = twingan.load(style_checkpoint, device="cpu")
    assert translator.has_style and translator.attributes == {}
    ref_a, ref_b = two_references(synthetic_root, paired_params)
    photos = [load_image(synthetic_root / "test" / "photo" / f"{i:05d}.png") for i in range(3)]

    out = translator.translate(photos[0], to="anime", reference=ref_a)
    assert isinstance(out, Image.Image) and out.size == (16, 16)
    outs = translator.translate(photos, to="anime", reference=ref_a)
    assert isinstance(outs, list) and len(outs) == 3
    # The same reference gives the same output, however it is given, alone or in a batch.
    pil_ref = load_image(ref_a)
    for same in (ref_a, str(ref_a), pil_ref, np.asarray(pil_ref), pil_to_tensor(pil_ref)):
        assert np.array_equal(np.asarray(translator.translate(photos[0], to="anime", reference=same)),
                              np.asarray(out))
    assert np.array_equal(np.asarray(outs[0]), np.asarray(out))

    # A few training steps move the zero-initialised modulation weights a little; a different reference then
    # changes the model output (not necessarily by a whole grey level).
    if all(float(p.detach().abs().max()) == 0.0 for p in modulated(translator.model)):
        # The weights stayed at exactly zero (training untouched them): random ones test the plumbing instead.
        translator = with_random_modulation(translator, scale=1e-3)
    x = translator.preprocess(photos)
    cond_a, cond_b = translator.condition("anime", reference=ref_a), translator.condition("anime", reference=ref_b)
    out_a = translator.translate_tensor(x, "anime", "human", cond=cond_a)
    out_b = translator.translate_tensor(x, "anime", "human", cond=cond_b)
    assert float((out_a - out_b).abs().max()) > 0
    assert torch.equal(out_a, translator.translate_tensor(x, "anime", "human", cond=cond_a))
    assert torch.equal(translator.translate_tensor(x, "anime", "human"),
                       translator.translate_tensor(x, "anime", "human", cond=None))

    # With clearly non-zero modulation the outputs differ in pixels, and the code is the TARGET domain's.
    strong = with_random_modulation(translator)
    a = np.asarray(strong.translate(photos[0], to="anime", reference=ref_a)).astype(int)
    b = np.asarray(strong.translate(photos[0], to="anime", reference=ref_b)).astype(int)
    assert np.abs(a - b).max() > 0
    model = strong.model
    ref = pil_to_tensor(load_image(ref_a))[None]
    with torch.no_grad():
        expected = model.translate(x[:1], "human", "anime", model.condition(1, style=model.style(ref, "anime")))
        other_head = model.translate(x[:1], "human", "anime", model.condition(1, style=model.style(ref, "human")))
    got = strong.translate_tensor(x[:1], "anime", "human", cond=strong.condition("anime", reference=ref_a))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert float((got - other_head).abs().max()) > 1e-4


def test_attributes_in_the_api(attr_checkpoint, synthetic_root):
    translator = twingan.load(attr_checkpoint, device="cpu")
    assert not translator.has_style and translator.attributes == {"hair": HAIR_COLOUR_NAMES}
    photo = load_image(synthetic_root / "test" / "photo" / "00000.png")
    as_dict = translator.translate(photo, to="anime", attrs={"hair": "blue"})
    for same in (["hair=blue"], "hair=blue", ("hair=blue",)):
        assert np.array_equal(np.asarray(translator.translate(photo, to="anime", attrs=same)), np.asarray(as_dict))
    assert translator.attribute_labels({"hair": "blue"}) == [HAIR_COLOUR_NAMES.index("blue")]
    x = translator.preprocess(photo)
    blue = translator.translate_tensor(x, "anime", "human", cond=translator.condition("anime", attrs=["hair=blue"]))
    pink = translator.translate_tensor(x, "anime", "human", cond=translator.condition("anime", attrs=["hair=pink"]))
    assert float((blue - pink).abs().max()) > 0
    assert translator.condition("anime", attrs={}) is None and translator.condition("anime", attrs=[]) is None
    for bad, message in ((["hair=purple"], r"hair='purple' is not one of \['black'"),
                         (["eyes=blue"], "unknown attribute 'eyes'; this model knows"),
                         (["hairblue"], "must look like NAME=VALUE"),
                         (["hair=blue", "hair=red"], "given twice")):
        with pytest.raises(ConfigError, match=message):
            translator.translate(photo, to="anime", attrs=bad)


def test_training_stores_the_attribute_prior_of_the_labels(attr_checkpoint, synthetic_root):
    """The checkpoint's prior over hair colours is each domain's labels.csv, counted here with the csv module."""
    import csv

    model, _ = load_translator(attr_checkpoint)
    folders = {"human": "photo", "anime": "anime"}  # the demo's domains and their synthetic styles
    for d, domain in enumerate(model.domains):
        with open(synthetic_root / "train" / folders[domain] / "labels.csv", newline="") as fh:
            hair = [row["hair"] for row in csv.DictReader(fh)]
        expected = torch.tensor([hair.count(v) / len(hair) for v in HAIR_COLOUR_NAMES])
        assert len(set(hair)) >= 2  # a prior that differs from one value certain
        torch.testing.assert_close(model.attribute_prior[d], expected)


def test_api_refuses_what_the_checkpoint_was_not_trained_for(style_checkpoint, attr_checkpoint, tiny_checkpoint,
                                                             synthetic_root):
    photo = np.zeros((16, 16, 3), np.uint8)
    reference = synthetic_root / "test" / "anime" / "00001.png"
    for path in (attr_checkpoint, tiny_checkpoint):
        with pytest.raises(ConfigError, match=r"trained without reference guidance.*model.style_dim>0 "
                                              r"\(experiment=reference_demo\)"):
            twingan.load(path, device="cpu").translate(photo, to="anime", reference=reference)
    for path in (style_checkpoint, tiny_checkpoint):
        with pytest.raises(ConfigError, match=r"trained without attributes.*experiment=attributes_demo"):
            twingan.load(path, device="cpu").translate(photo, to="anime", attrs={"hair": "blue"})
    style = twingan.load(style_checkpoint, device="cpu")
    with pytest.raises(ImageLoadError, match="file not found"):
        style.translate(photo, to="anime", reference=synthetic_root / "missing.png")
    with pytest.raises(ConfigError, match="reference must be one image, got 2"):
        style.translate(photo, to="anime", reference=[photo, photo])


# ---------------------------------------------------------------- the CLI


def test_cli_reference_and_attr(style_checkpoint, attr_checkpoint, synthetic_root, tmp_path, capsys):
    photos = synthetic_root / "test" / "photo"
    reference = synthetic_root / "test" / "anime" / "00001.png"
    out = tmp_path / "styled"
    assert main(["translate", str(style_checkpoint), str(photos), "--to", "anime", "--out", str(out), "--no-detect",
                 "--reference", str(reference), "--no-progress"]) == 0
    assert "4 translated, 0 failed" in capsys.readouterr().out
    api = twingan.load(style_checkpoint, device="cpu")
    for i in range(4):
        expected = api.translate(load_image(photos / f"{i:05d}.png"), to="anime", reference=reference)
        assert np.array_equal(np.asarray(Image.open(out / f"{i:05d}.png")), np.asarray(expected))

    out = tmp_path / "blue"
    assert main(["translate", str(attr_checkpoint), str(photos / "00000.png"), "--to", "anime", "--out", str(out),
                 "--no-detect", "--attr", "hair=blue", "--no-progress"]) == 0
    expected = twingan.load(attr_checkpoint, device="cpu").translate(load_image(photos / "00000.png"), to="anime",
                                                                     attrs={"hair": "blue"})
    assert np.array_equal(np.asarray(Image.open(out / "00000.png")), np.asarray(expected))


def test_cli_errors_are_one_line_before_any_work(style_checkpoint, attr_checkpoint, tiny_checkpoint, synthetic_root,
                                                 tmp_path, capsys):
    photos = str(synthetic_root / "test" / "photo")
    good_ref = str(synthetic_root / "test" / "anime" / "00001.png")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    out = tmp_path / "out"
    cases = [
        (style_checkpoint, ["--reference", str(tmp_path / "missing.png")], "--reference .*missing.png: file not found"),
        (style_checkpoint, ["--reference", str(text)], "--reference .*notes.png: not an image"),
        (tiny_checkpoint, ["--reference", good_ref], "trained without reference guidance"),
        (style_checkpoint, ["--attr", "hair=blue"], "trained without attributes"),
        (attr_checkpoint, ["--attr", "hair=purple"], "hair='purple' is not one of"),
        (attr_checkpoint, ["--attr", "hair"], "must look like NAME=VALUE"),
    ]
    for checkpoint, extra, message in cases:
        code = main(["translate", str(checkpoint), photos, "--to", "anime", "--out", str(out), "--no-detect",
                     "--no-progress", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 1, extra
        assert len(err.splitlines()) == 1 and err.startswith("twingan translate: error: "), err
        assert re.search(message, err), (message, err)
        assert not out.exists()


def test_cli_human_reference_is_detected_and_aligned(style_checkpoint, synthetic_root, tmp_path, capsys):
    """Translating into 'human', the reference is a photo: its largest face is aligned like the inputs."""
    photo = Image.fromarray(data.astronaut())
    photo.save(tmp_path / "astronaut.png")
    source = synthetic_root / "test" / "anime" / "00000.png"
    api = twingan.load(style_checkpoint, device="cpu")
    face = FaceDetector(device="cpu").detect(photo)[0]
    crop = warp_to_crop(photo, face_alignment_transform(face.landmarks, 16), 16)
    for extra, expected_ref in (([], crop), (["--no-detect"], photo)):
        out = tmp_path / f"out{len(extra)}"
        assert main(["translate", str(style_checkpoint), str(source), "--to", "human", "--out", str(out),
                     "--reference", str(tmp_path / "astronaut.png"), "--no-progress", *extra]) == 0
        expected = api.translate(load_image(source), to="human", reference=expected_ref)
        assert np.array_equal(np.asarray(Image.open(out / "00000.png")), np.asarray(expected))
        # The photo API takes the reference the way the CLI does (detected and aligned unless detect=False).
        result = api.translate_photo(source, to="human", reference=tmp_path / "astronaut.png",
                                     detect=False if extra else None)
        assert np.array_equal(np.asarray(result.avatar), np.asarray(expected))
    capsys.readouterr()


# ---------------------------------------------------------------- the scores


def test_reference_partners_differ_in_hair_when_possible():
    params = [params_for_index(0, "test", i) for i in range(6)]
    params[1] = params[2] = params[3] = reference_target(params[1], params[0])  # four faces with the same hair
    partners = reference_partners(params)
    assert all(j != i for i, j in enumerate(partners))
    for i, j in enumerate(partners):
        assert params[j].hair_colour != params[i].hair_colour
    same = [params[0]] * 3
    assert reference_partners(same) == [1, 2, 0]
    target = reference_target(params[4], params[5])
    assert (target.hair_colour, target.eye_colour, target.yaw, target.mouth) == (
        params[5].hair_colour, params[5].eye_colour, params[4].yaw, params[4].mouth)


def test_eval_reports_reference_scores_for_a_style_model(style_checkpoint, synthetic_root, paired_params, tmp_path,
                                                        capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", str(style_checkpoint), "--baselines", "--json", str(out), "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    scores = result["scores"]
    assert result["systems"] == ["trained", "untrained", "pixels"]
    for system in result["systems"]:
        assert all(key in scores[system] for key in REF_KEYS), system
        assert not any(key in scores[system] for key in ATTR_KEYS)
        assert all(0.0 <= scores[system][key] <= 1.0 for key in REF_KEYS)
    for key in REF_KEYS[:3]:
        row = next(line for line in printed.splitlines() if line.startswith(key + " "))
        assert row.split()[1:] == [f"{scores[s][key]:.4f}" for s in result["systems"]]
    # The pixel baseline's reference-guided output is the reference: right hair, pose copied (never closer to the
    # target than to itself); its plain output is the input.
    assert scores["pixels"]["photo2anime/ref_hair_acc"] == 1.0
    assert scores["pixels"]["photo2anime/ref_pose_acc"] == scores["pixels"]["anime2photo/ref_pose_acc"] == 0.0
    # Untrained: zero-initialised modulation, so the reference changes nothing.
    for metric in ("pose_l1", "hair_acc"):
        assert scores["untrained"][f"photo2anime/ref_{metric}"] == pytest.approx(
            scores["untrained"][f"photo2anime/noref_{metric}"], abs=1e-6)

    # ref_hair_acc is what the API gives: photo i in the style of anime partner j has j's hair colour.
    api = twingan.load(style_checkpoint, device="cpu")
    partners = reference_partners(paired_params)
    hits = []
    for i, j in enumerate(partners):
        output = api.translate(load_image(synthetic_root / "test" / "photo" / f"{i:05d}.png"), to="anime",
                               reference=synthetic_root / "test" / "anime" / f"{j:05d}.png")
        hits.append(hair_colour_of(output, "anime") == paired_params[j].hair_colour_index)
    assert scores["trained"]["photo2anime/ref_hair_acc"] == pytest.approx(np.mean(hits))


def test_eval_attribute_scores_only_with_the_parts(attr_checkpoint, tiny_checkpoint, synthetic_root):
    result = evaluate_checkpoint(attr_checkpoint, baselines=True, device="cpu")
    for system in ("trained", "untrained", "pixels"):
        assert all(0.0 <= result["scores"][system][key] <= 1.0 for key in ATTR_KEYS)
        assert not any(key in result["scores"][system] for key in REF_KEYS)
    plain = evaluate_checkpoint(tiny_checkpoint, device="cpu")
    assert not any(key.split("/")[-1].startswith(("ref_", "noref_", "attr_")) for key in plain["scores"]["trained"])
    model, _ = load_translator(attr_checkpoint)
    assert model.attribute_schema.names == ("hair",)


def test_a_reference_of_the_same_attributes_but_another_seed_changes_little(style_checkpoint, synthetic_root, paired_params):
    """The style is what the reference looks like (hair, eyes), not its pixel noise or strand jitter:
    a re-render of the same face parameters with another seed moves the output far less than another hair colour."""
    import dataclasses

    from twingan.data.synthetic import render

    translator = with_random_modulation(twingan.load(style_checkpoint, device="cpu"))
    base = paired_params[0]
    other_hair = next(h for h in HAIR_COLOUR_NAMES if h != base.hair_colour)
    size = translator.resolution * 4
    same = render(base, "anime", size)
    reseeded = render(dataclasses.replace(base, seed=base.seed + 12345), "anime", size)
    recoloured = render(dataclasses.replace(base, hair_colour=other_hair), "anime", size)
    assert np.abs(np.asarray(same, np.int16) - np.asarray(reseeded, np.int16)).max() > 0  # really another rendering
    source = Image.open(synthetic_root / "test" / "photo" / "00001.png")
    outputs = [
        pil_to_tensor(translator.translate(source, to="anime", reference=ref)).float()
        for ref in (same, reseeded, recoloured)
    ]
    seed_change = (outputs[0] - outputs[1]).abs().mean().item()
    hair_change = (outputs[0] - outputs[2]).abs().mean().item()
    assert hair_change > 1e-3
    assert seed_change < 0.25 * hair_change, (seed_change, hair_change)


# ------------------------------------------------------------------ web demo


def _png(img: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def test_web_demo_translates_with_a_reference_and_attributes(style_checkpoint, attr_checkpoint, tiny_checkpoint,
                                                             synthetic_root, paired_params):
    from twingan.web import WebDemo, WebInputError

    source = load_image(synthetic_root / "test" / "photo" / "00000.png")
    first, second = (load_image(p) for p in two_references(synthetic_root, paired_params))
    styled = WebDemo(Translator.load(style_checkpoint, device="cpu"))
    try:
        out = styled.translate(_png(source), "human", "anime", detect=False, reference=_png(first))
        expected = styled.translator.translate(source, to="anime", src="human", reference=first)
        np.testing.assert_array_equal(np.asarray(out.avatars[0]), np.asarray(expected))
        other = styled.translate(_png(source), "human", "anime", detect=False, reference=_png(second))
        assert np.abs(np.asarray(other.avatars[0], dtype=int) - np.asarray(out.avatars[0], dtype=int)).max() > 0
        assert "in the reference's style" in out.message
        with pytest.raises(WebInputError, match="^Reference: The upload could not be used as an image"):
            styled.translate(_png(source), "human", "anime", detect=False, reference=b"not a picture")
        with pytest.raises(ConfigError, match="trained without attributes"):
            styled.translate(_png(source), "human", "anime", detect=False, attrs="hair=blue")
    finally:
        styled.close()

    labelled = WebDemo(Translator.load(attr_checkpoint, device="cpu"))
    try:
        out = labelled.translate(_png(source), "human", "anime", detect=False, attrs=" hair=blue ")
        expected = labelled.translator.translate(source, to="anime", src="human", attrs={"hair": "blue"})
        np.testing.assert_array_equal(np.asarray(out.avatars[0]), np.asarray(expected))
        assert "with hair=blue" in out.message
        plain = labelled.translate(_png(source), "human", "anime", detect=False, attrs="")
        np.testing.assert_array_equal(np.asarray(plain.avatars[0]),
                                      np.asarray(labelled.translator.translate(source, to="anime", src="human")))
        with pytest.raises(ConfigError, match="hair"):
            labelled.translate(_png(source), "human", "anime", detect=False, attrs="hair=plaid")
        with pytest.raises(ConfigError, match="without reference guidance"):
            labelled.translate(_png(source), "human", "anime", detect=False, reference=_png(first))
    finally:
        labelled.close()


def test_web_demo_reference_of_a_person_is_detected_and_a_faceless_one_refused(style_checkpoint, synthetic_root):
    from twingan.web import WebDemo, WebInputError

    anime = load_image(synthetic_root / "test" / "anime" / "00000.png")
    photo = Image.fromarray(data.astronaut(), "RGB")
    web = WebDemo(Translator.load(style_checkpoint, device="cpu"), detector=FaceDetector(device="cpu"))
    try:
        crop = web.pipeline("human").face_crops([photo])[0].crops[0].crop
        out = web.translate(_png(anime), "anime", "human", reference=_png(photo))
        expected = web.translator.translate(anime, to="human", src="anime", reference=crop)
        np.testing.assert_array_equal(np.asarray(out.avatars[0]), np.asarray(expected))
        with pytest.raises(WebInputError, match="No face found in the 64x48 reference picture"):
            web.translate(_png(anime), "anime", "human", reference=_png(Image.new("RGB", (64, 48), (90, 90, 90))))
    finally:
        web.close()


def test_web_page_offers_only_the_inputs_the_checkpoint_takes(style_checkpoint, attr_checkpoint, tiny_checkpoint,
                                                              monkeypatch, tmp_path):
    pytest.importorskip("gradio", reason="the web demo needs the [web] extra")
    from twingan.web import WebDemo
    from twingan.web.app import _translate_handler, build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    anime = _png(Image.new("RGB", (40, 40), (200, 120, 160)))
    for path, wanted in ((style_checkpoint, {"translate-reference"}), (attr_checkpoint, {"translate-attrs"}),
                         (tiny_checkpoint, set())):
        web = WebDemo(Translator.load(path, device="cpu"))
        try:
            config = build_app(web).get_config_file()
            ids = {c["props"].get("elem_id") for c in config["components"]}
            assert ids & {"translate-reference", "translate-attrs"} == wanted, path
            values = {"translate-reference": anime, "translate-attrs": "hair=nope"}
            names = [name.removeprefix("translate-") for name in sorted(wanted)]
            status, avatars, *_ = _translate_handler(web, names)(anime, "anime", "human", False,
                                                                 *(values[w] for w in sorted(wanted)))
            if wanted == {"translate-attrs"}:
                assert status.startswith("**Error:**") and "nope" in status and avatars == []
            else:
                assert status.startswith("**Done:**") and len(avatars) == 1
        finally:
            web.close()


def test_cli_export_of_a_style_checkpoint(style_checkpoint, tmp_path, capsys):
    from twingan.inference.export import read_export_metadata

    out = tmp_path / "styled.pt2"
    assert main(["export", str(style_checkpoint), "--format", "pt2", "--to", "anime", "--out", str(out)]) == 0
    assert "also reference (see the file's metadata)" in capsys.readouterr().out
    assert read_export_metadata(out)["inputs"] == ["image", "reference"]
    assert main(["export", str(style_checkpoint), "--format", "pt2", "--to", "anime", "--out", str(out),
                 "--plain"]) == 0
    assert "also" not in capsys.readouterr().out and read_export_metadata(out)["inputs"] == ["image"]
