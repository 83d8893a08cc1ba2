"""`twingan export`: torch.export (.pt2) and ONNX files for one direction, run outside twingan and checked against
PyTorch, with a dynamic batch size and without a warning."""
from __future__ import annotations

import re
import shutil
import warnings

import numpy as np
import pytest
import torch

from twingan.checkpoint import load_translator
from twingan.cli.main import main
from twingan.errors import ConfigError
from twingan.inference import Translator
from twingan.inference import export as export_module
from twingan.inference.export import PARITY_TOLERANCE, export_direction, read_export_metadata
from twingan.models import ModelConfig, TwinGAN

TOLERANCE = 1e-4
"""Exported vs PyTorch, fp32 on the CPU, [-1, 1] image units (the command's own default)."""


def pytorch_reference(checkpoint, x: torch.Tensor, src: str = "human", dst: str = "anime") -> np.ndarray:
    model, _ = load_translator(checkpoint, device="cpu")
    with torch.no_grad():
        return model.translate(x, src, dst).clamp(-1, 1).numpy()


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def printed_diff(text: str) -> float:
    return float(re.search(r"max abs diff ([0-9.e+-]+)", text).group(1))


def test_pt2_export_matches_pytorch(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "h2a.pt2"
    assert main(["export", str(tiny_checkpoint), "--format", "pt2", "--to", "anime", "--out", str(out)]) == 0
    assert printed_diff(capsys.readouterr().out) <= TOLERANCE
    program = torch.export.load(str(out)).module()
    for n in (5, 1):  # other batch sizes than the export's
        x = images(n, n)
        with torch.no_grad():
            got = program(x).numpy()
        assert got.shape == (n, 3, 16, 16)
        assert np.abs(got - pytorch_reference(tiny_checkpoint, x)).max() <= TOLERANCE
    meta = read_export_metadata(out)
    assert (meta["src"], meta["dst"], meta["resolution"]) == ("human", "anime", 16)


def test_onnx_export_runs_in_onnxruntime(tiny_checkpoint, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    assert PARITY_TOLERANCE == TOLERANCE
    checkpoint = tmp_path / "selfie2anime.safetensors"
    shutil.copy(tiny_checkpoint, checkpoint)
    assert main(["export", str(checkpoint), "--format", "onnx", "--to", "human"]) == 0
    text = capsys.readouterr().out
    assert printed_diff(text) <= TOLERANCE
    out = tmp_path / "selfie2anime.anime-to-human.onnx"  # the default name, beside the checkpoint
    assert str(out) in text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, 16, 16]
    for n in (4, 1):
        x = images(n, 2)
        (got,) = session.run(None, {"image": x.numpy()})
        assert got.shape == (n, 3, 16, 16)
        assert np.abs(got - pytorch_reference(tiny_checkpoint, x, "anime", "human")).max() <= TOLERANCE
    assert read_export_metadata(out)["input"] == "float32 (N, 3, 16, 16) RGB in [-1, 1]"


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_export_raises_no_warning(tiny_checkpoint, tmp_path, fmt):
    """The exporters used are current ones: nothing deprecated, and nothing hidden (no filter is installed)."""
    translator = Translator.load(tiny_checkpoint, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_direction(translator, fmt, "anime", None, tmp_path / f"m.{fmt}")
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_parity_failure_keeps_no_file_and_fails(tiny_checkpoint, tmp_path, monkeypatch, capsys, fmt):
    runner = "_run_pt2" if fmt == "pt2" else "_run_onnx"
    real = getattr(export_module, runner)
    monkeypatch.setattr(export_module, runner, lambda *args: real(*args) + 1e-3)
    out = tmp_path / f"bad.{fmt}"
    assert main(["export", str(tiny_checkpoint), "--format", fmt, "--to", "anime", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not written" in err and abs(printed_diff(err) - 1e-3) <= TOLERANCE and "EXCEEDED" in err
    assert list(tmp_path.iterdir()) == []


def test_export_needs_the_source_when_ambiguous(tmp_path):
    three = Translator(TwinGAN(ModelConfig(domains=("human", "anime", "cat"), resolution=8, max_channels=4)))
    with pytest.raises(ConfigError, match="say which one"):
        export_direction(three, "pt2", "cat", None, tmp_path / "m.pt2")
    result = export_direction(three, "pt2", "cat", "anime", tmp_path / "m.pt2")
    assert result.max_abs_diff <= TOLERANCE and read_export_metadata(tmp_path / "m.pt2")["src"] == "anime"


def conditioned_translator() -> Translator:
    """A style + attribute model with random (non-zero) modulation, its style encoder at 8 px below the model's 16."""
    torch.manual_seed(0)
    cfg = ModelConfig(resolution=16, max_channels=8, fmap_base=32, style_dim=4, style_resolution=8,
                      attributes={"hair": ["black", "blonde", "blue"], "eyes": ["brown", "green"]})
    model = TwinGAN(cfg)
    for name, p in model.named_parameters():
        if "modulation" in name:
            torch.nn.init.normal_(p, std=0.3)
    return Translator(model)


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_conditioned_export_takes_a_reference_and_attributes(tmp_path, fmt):
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
    translator = conditioned_translator()
    model = translator.model
    out = tmp_path / f"cond.{fmt}"
    result = export_direction(translator, fmt, "anime", "human", out)
    assert result.inputs == ("image", "reference", "attributes") and result.max_abs_diff <= TOLERANCE
    meta = read_export_metadata(out)
    assert meta["inputs"] == ["image", "reference", "attributes"]
    assert meta["attribute_groups"] == {"hair": ["black", "blonde", "blue"], "eyes": ["brown", "green"]}
    assert "(N, 3, 8, 8)" in meta["reference"] and "(N, 5)" in meta["attributes"]

    x, full_refs = images(3, 3), images(3, 4)
    labels = torch.tensor([[2, -1], [-1, 1], [0, 0]])
    with torch.no_grad():  # reference computed the Translator's way: the style encoder resizes a full-size reference
        cond = model.condition(3, style=model.style(full_refs, "anime"), labels=labels)
        expected = model.translate(x, "human", "anime", cond).clamp(-1, 1).numpy()
    small_refs = torch.nn.functional.interpolate(full_refs, size=(8, 8), mode="bilinear", align_corners=False,
                                                 antialias=True)
    one_hot = model.attribute_schema.one_hot(labels)
    if fmt == "pt2":
        run = torch.export.load(str(out)).module()
        with torch.no_grad():
            got = run(x, small_refs, one_hot).numpy()
            other = run(x, small_refs.flip(0), one_hot).numpy()
    else:
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy(), "reference": small_refs.numpy(), "attributes": one_hot.numpy()}
        (got,) = session.run(None, feed)
        (other,) = session.run(None, {**feed, "reference": small_refs.flip(0).numpy()})
    assert np.abs(got - expected).max() <= TOLERANCE
    assert np.abs(other - got).max() > 1e-3  # the reference matters


def test_plain_export_of_a_conditioned_checkpoint(tmp_path):
    translator = conditioned_translator()
    out = tmp_path / "plain.pt2"
    result = export_direction(translator, "pt2", "anime", "human", out, conditioned=False)
    assert result.inputs == ("image",) and read_export_metadata(out)["inputs"] == ["image"]
    assert "reference" not in read_export_metadata(out)
    x = images(2, 5)
    with torch.no_grad():
        expected = translator.model.translate(x, "human", "anime").clamp(-1, 1).numpy()
        got = torch.export.load(str(out)).module()(x).numpy()
    assert np.abs(got - expected).max() <= TOLERANCE
