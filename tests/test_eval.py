"""`twingan eval`, evaluate_checkpoint and the evaluation during training, on tiny real checkpoints."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from twingan.checkpoint import load_tensors, load_translator
from twingan.cli.main import main
from twingan.data.image_io import load_image, resize_square
from twingan.data.synthetic import generate_dataset
from twingan.errors import ConfigError
from twingan.inference import Translator
from twingan.metrics import InceptionFeatures
from twingan.metrics.evaluate import (
    compare_with_copy,
    copy_verdict,
    evaluate_checkpoint,
    format_table,
    style_domains_from_config,
)
from twingan.metrics.fid import fid_from_features
from twingan.metrics.inception import FIDInception3
from twingan.metrics.paired import PixelBaseline, load_paired_test_set, paired_scores, style_judge
from twingan.metrics.retrieval import embedding_recall
from twingan.metrics.style_classifier import fit_style_classifier
from twingan.training import train

from helpers import run_and_kill_after_first_checkpoint, tiny_run_overrides

STYLES = {"photo": "human", "anime": "anime"}


def read_log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the CLI and the paired scores

def test_eval_cli_prints_a_table_and_writes_json(tiny_checkpoint, synthetic_root, tmp_path, capsys):
    out = tmp_path / "reports" / "eval.json"
    assert main(["eval", str(tiny_checkpoint), "--baselines", "--json", str(out), "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]
    assert result["systems"] == ["trained", "untrained", "pixels"]
    assert result["synthetic"] == {"root": str(synthetic_root), "test_faces": 4, "style_domains": STYLES}
    assert (result["resolution"], result["images_seen"], result["fid"]) == (16, 40, None)

    model, _ = load_translator(tiny_checkpoint)
    test_set = load_paired_test_set(synthetic_root, 16)
    for name, system in (("trained", model), ("pixels", PixelBaseline())):
        expected = {**paired_scores(system, test_set, STYLES), **embedding_recall(system, test_set, STYLES)}
        assert result["scores"][name] == expected
    assert result["scores"]["untrained"]["photo2anime/l1"] != result["scores"]["trained"]["photo2anime/l1"]

    lines = printed.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "trained", "untrained", "pixels"]
    for metric in ("photo2anime/l1", "anime2photo/hair_acc", "photo2anime/recall@1", "anime2photo/recall@10"):
        row = next(line for line in lines if line.startswith(metric + " "))
        assert row.split()[1:] == [f"{result['scores'][s][metric]:.4f}" for s in result["systems"]]


def test_format_table_marks_missing_values():
    table = format_table({"trained": {"a": 0.5, "b/fid": 123.25}, "pixels": {"a": 1.0}}, digits=2)
    assert table.splitlines() == [
        "metric  trained  pixels",
        "a          0.50    1.00",
        "b/fid    123.25       -",
    ]


def test_style_domains_follow_the_training_config():
    config = {"data": {"domains": {"toon": {"root": "/d/syn/train/anime"}, "selfie": {"root": "/d/syn/train/photo/"}}}}
    assert style_domains_from_config(config) == {"photo": "selfie", "anime": "toon"}
    celeba = {"data": {"domains": {"human": {"root": "/d/celeba"}, "anime": {"root": "/d/syn/train/anime"}}}}
    with pytest.raises(ConfigError, match=r"'photo' style: no domain reads .*/d/celeba.*--style-domain photo=DOMAIN"):
        style_domains_from_config(celeba)
    twice = {"data": {"domains": {"a": {"root": "x/train/photo"}, "b": {"root": "y/train/photo"}}}}
    with pytest.raises(ConfigError, match=r"domains \['a', 'b'\] all read"):
        style_domains_from_config(twice)


def test_style_domains_can_be_named_when_the_config_cannot_tell(tiny_checkpoint, synthetic_root):
    model, meta = load_translator(tiny_checkpoint)
    config = {"seed": 0, "data": {"domains": {"human": {"root": "/elsewhere/celeba"}, "anime": {"root": "/a"}}}}
    with pytest.raises(ConfigError, match="--style-domain"):
        evaluate_checkpoint(model, synthetic_root, config=config)
    swap = {"photo": "anime", "anime": "human"}
    swapped = evaluate_checkpoint(model, synthetic_root, config=config, style_domains=swap)
    test_set = load_paired_test_set(synthetic_root, 16)
    assert swapped["scores"]["trained"] == {**paired_scores(model, test_set, swap),
                                            **embedding_recall(model, test_set, swap)}
    with pytest.raises(ConfigError, match="not one of this model's domains"):
        evaluate_checkpoint(model, synthetic_root, config=config, style_domains={"photo": "cat", "anime": "human"})
    assert not model.training


def test_nothing_to_evaluate_is_an_error(tiny_checkpoint, capsys):
    assert main(["eval", str(tiny_checkpoint), "--no-synthetic", "--device", "cpu"]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err


class TwinOracle(PixelBaseline):
    """Translates a test face into its true rendering in the other style (looked up by its pixels)."""

    def __init__(self, test_set):
        self.test_set = test_set

    def translate(self, x, src, dst):
        style = {"human": "photo", "anime": "anime"}
        images = self.test_set.images
        index = [int(((images[style[src]] - row).abs().flatten(1).sum(1)).argmin()) for row in x]
        return images[style[dst]][index]


def test_style_score_tells_a_translation_from_a_copy(judged_root):
    """The independent judge: copying the input scores near 0, the true renderings near its accuracy."""
    test_set = load_paired_test_set(judged_root, 16)
    judge = style_judge(test_set)
    assert judge.test_accuracy >= 0.9 and judge.train_images == 400
    copy = paired_scores(PixelBaseline(), test_set, STYLES)
    oracle = paired_scores(TwinOracle(test_set), test_set, STYLES)
    for direction in ("photo2anime", "anime2photo"):
        assert copy[f"{direction}/style"] <= 0.2, copy
        assert oracle[f"{direction}/style"] >= 0.85 and oracle[f"{direction}/l1"] == 0.0, oracle
    assert copy["photo/recon_l1"] == copy["anime/recon_l1"] == 0.0
    rng = torch.random.get_rng_state()
    assert fit_style_classifier(judged_root, 16, steps=20).resolution == 16
    assert torch.equal(torch.random.get_rng_state(), rng)  # fitting draws from its own generator


def test_copy_verdict_names_every_score_the_model_loses():
    scores = {
        "trained": {"photo2anime/l1": 0.10, "photo2anime/style": 0.9, "photo2anime/recall@1": 0.5,
                    "photo/recon_l1": 0.02, "photo2anime/fid": 40.0},
        "pixels": {"photo2anime/l1": 0.12, "photo2anime/style": 0.0, "photo2anime/recall@1": 0.6,
                   "photo/recon_l1": 0.0, "photo2anime/fid": 30.0},
    }
    rows = {r.metric: r.beats for r in compare_with_copy(scores)}
    assert rows == {"photo2anime/l1": True, "photo2anime/style": True, "photo2anime/recall@1": False,
                    "photo2anime/fid": False}
    verdict = copy_verdict(scores)
    assert verdict.startswith("Against copying the input, the trained model is better on 2 of 4 scores")
    assert "does NOT beat copying the input on: photo2anime/recall@1 (0.500 vs 0.600), photo2anime/fid" in verdict
    scores["trained"].update({"photo2anime/recall@1": 0.7, "photo2anime/fid": 20.0})
    assert copy_verdict(scores) == "Against copying the input, the trained model is better on 4 of 4 scores."
    assert copy_verdict({"trained": scores["trained"]}) == ""
    tie = {"trained": {"a/recall@1": 1.0}, "pixels": {"a/recall@1": 1.0}}
    assert "does NOT" in copy_verdict(tie)


# ---------------------------------------------------------------- FID / KID of translations

def _random_inception_file(path: Path) -> FIDInception3:
    """The real FID Inception architecture with Kaiming-scaled random weights (as in test_fid.py)."""
    torch.manual_seed(0)
    net = FIDInception3()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(net.net.state_dict(), path)
    return net.eval()


def _copy_images(source: Path, dest: Path, count: int) -> list[Path]:
    dest.mkdir(parents=True)
    files = sorted(source.glob("*.png"))[:count]
    for f in files:
        shutil.copy(f, dest / f.name)
    return [dest / f.name for f in files]


def test_fid_of_translations_matches_features_computed_directly(tiny_checkpoint, synthetic_root, tmp_path, capsys):
    net = _random_inception_file(tmp_path / "inception.pth")
    humans = _copy_images(synthetic_root / "train" / "photo", tmp_path / "human", 3)
    animes = _copy_images(synthetic_root / "train" / "anime", tmp_path / "anime", 3)
    (tmp_path / "human" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "eval.json"
    argv = ["eval", str(tiny_checkpoint), "--no-synthetic", "--baselines", "--real", f"human={tmp_path / 'human'}",
            "--target", f"anime={tmp_path / 'anime'}", "--inception", str(tmp_path / "inception.pth"),
            "--device", "cpu", "--json", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    info = result["fid"]["human2anime"]
    assert (info["n_source"], info["n_target"], info["resolution"]) == (3, 3, 16)
    assert [name for name, _ in info["skipped_source"]] == ["broken.png"] and info["skipped_target"] == []
    assert result["synthetic"] is None

    extractor = InceptionFeatures(net)
    translator = Translator.load(tiny_checkpoint, device="cpu")
    fakes = translator.translate([load_image(p) for p in humans], to="anime", src="human")
    reals = np.stack([resize_square(load_image(p), 16) for p in animes]).transpose(0, 3, 1, 2)
    sources = np.stack([resize_square(load_image(p), 16) for p in humans]).transpose(0, 3, 1, 2)
    real_features = extractor(reals)
    expected = {
        "trained": fid_from_features(extractor(fakes), real_features),
        "pixels": fid_from_features(extractor(sources), real_features),
    }
    for system, fid in expected.items():
        assert result["scores"][system]["human2anime/fid"] == pytest.approx(fid, rel=1e-6)
    assert result["scores"]["untrained"]["human2anime/fid"] != pytest.approx(expected["trained"], rel=1e-3)
    row = next(line for line in printed.splitlines() if line.startswith("human2anime/fid "))
    assert row.split()[1] == f"{result['scores']['trained']['human2anime/fid']:.4f}"
    assert "human2anime/kid_x100" in printed and "U-GAT-IT" in printed


def test_fid_without_inception_weights_fails_before_any_work(tiny_checkpoint, synthetic_root, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.delenv("TWINGAN_INCEPTION", raising=False)
    monkeypatch.setattr("twingan.metrics.inception.bundled_inception_path", lambda: None)
    folder = synthetic_root / "train"
    argv = ["eval", str(tiny_checkpoint), "--real", f"human={folder / 'photo'}",
            "--target", f"anime={folder / 'anime'}"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "pytorch-fid" in captured.err and "--inception" in captured.err and "TWINGAN_INCEPTION" in captured.err
    assert "twingan[fid]" in captured.err
    assert "photo2anime" not in captured.out
    assert main(["eval", str(tiny_checkpoint), "--real", f"human={folder / 'photo'}"]) == 1
    assert "--target DST=DIR" in capsys.readouterr().err


# ---------------------------------------------------------------- evaluation during training

def test_training_evaluates_at_the_interval_and_resume_stays_exact(synthetic_root, tmp_path):
    extra = ("logging.eval.every_images=16", "logging.eval.baselines=true")
    reference = tmp_path / "reference"
    train(tiny_run_overrides(synthetic_root, reference, *extra))
    interrupted = tmp_path / "interrupted"
    assert run_and_kill_after_first_checkpoint(tiny_run_overrides(synthetic_root, interrupted, *extra), interrupted) != 0
    assert main(["train", *tiny_run_overrides(synthetic_root, interrupted, *extra), "resume=auto"]) == 0

    final = "ckpt-000000000040.safetensors"
    a = load_tensors(reference / "checkpoints" / final)
    b = load_tensors(interrupted / "checkpoints" / final)
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith(("model.", "ema.", "disc.", "optim.")):
            assert torch.equal(a[key], b[key]), key
    ref_log, res_log = read_log(reference), read_log(interrupted)
    assert [r["g_total"] for r in res_log if "g_total" in r] == [r["g_total"] for r in ref_log if "g_total" in r]

    evals = [r for r in ref_log if "eval/photo2anime/l1" in r]
    assert [r["images"] for r in evals] == [16, 32]
    assert [r for r in res_log if "eval/photo2anime/l1" in r] == evals
    at_16 = evaluate_checkpoint(reference / "checkpoints" / "ckpt-000000000016.safetensors", baselines=True,
                                device="cpu")
    for system, scores in at_16["scores"].items():
        prefix = "eval/" if system == "trained" else f"eval/{system}/"
        assert {k: evals[0][prefix + k] for k in scores} == scores


def test_training_evaluation_needs_the_synthetic_set(synthetic_root, tmp_path):
    overrides = tiny_run_overrides(synthetic_root, tmp_path / "run", "logging.eval.every_images=16")
    overrides = [o for o in overrides if not o.startswith("data.synthetic.")] + [
        "data.synthetic=null",
        f"data.domains.human.root={synthetic_root / 'train' / 'photo'}",
        f"data.domains.anime.root={synthetic_root / 'train' / 'anime'}",
    ]
    with pytest.raises(ConfigError, match="logging.eval.every_images needs the synthetic paired test set"):
        train(overrides)


# ---------------------------------------------------------------- the metric registry

def test_metrics_are_chosen_by_name_from_the_registry(tiny_checkpoint, synthetic_root, capsys):
    from twingan.metrics.registry import METRICS, metric_names

    assert metric_names() == ["translation", "retrieval", "conditioned", "generation", "fid", "reconstruction",
                              "style", "round_trip", "search", "gender"]
    model, _ = load_translator(tiny_checkpoint)
    test_set = load_paired_test_set(synthetic_root, 16)
    only = evaluate_checkpoint(tiny_checkpoint, device="cpu", metrics=["retrieval"])
    assert only["scores"]["trained"] == embedding_recall(model, test_set, STYLES)
    both = evaluate_checkpoint(tiny_checkpoint, device="cpu", metrics=["retrieval", "translation"])
    assert list(both["scores"]["trained"]) == [*paired_scores(model, test_set, STYLES), *only["scores"]["trained"]]
    with pytest.raises(ConfigError, match="'generation' does not apply to this evaluation: it needs .*noise"):
        evaluate_checkpoint(tiny_checkpoint, device="cpu", metrics=["generation"])

    capsys.readouterr()
    assert main(["eval", str(tiny_checkpoint), "--metrics", "retrieval,recal", "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert ("unknown metric 'recal'; valid metrics: translation, retrieval, conditioned, generation, fid, "
            "reconstruction, style, round_trip, search, gender") in error
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "among: " + ", ".join(METRICS) + " (default" in help_text
