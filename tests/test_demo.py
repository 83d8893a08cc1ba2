"""`twingan demo` end to end at a tiny size: data, training, scores and the HTML report."""
import json

from twingan.cli.main import main
from twingan.metrics.paired import PixelBaseline, load_paired_test_set, paired_scores
from twingan.metrics.retrieval import embedding_recall, twin_recall_at_k

import numpy as np
from PIL import Image


def test_twin_recall_at_k_against_brute_force_ranking():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    got = twin_recall_at_k(q, g, ks=(1, 3))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    ranks = [list(np.argsort(-(qn[i] @ gn.T))).index(i) for i in range(30)]
    assert got[1] == np.mean([r < 1 for r in ranks]) and got[3] == np.mean([r < 3 for r in ranks])
    assert twin_recall_at_k(g, g, ks=(1,))[1] == 1.0


def test_pixel_baseline_scores_on_the_paired_set(synthetic_root):
    test_set = load_paired_test_set(synthetic_root, 16)
    scores = paired_scores(PixelBaseline(), test_set, {"photo": "human", "anime": "anime"})
    expected_l1 = float((test_set.images["photo"] - test_set.images["anime"]).abs().mean() / 2)
    assert abs(scores["photo2anime/l1"] - expected_l1) < 1e-6
    recall = embedding_recall(PixelBaseline(), test_set, {"photo": "human", "anime": "anime"})
    assert recall["photo2anime/recall@10"] == recall["anime2photo/pooled_recall@10"] == 1.0  # only 4 test faces


def test_demo_writes_a_report_with_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    overrides = [
        "data.synthetic.n_train=16", "data.synthetic.n_test=12", "data.synthetic.size=16",
        "model.resolution=16", "model.max_channels=8", "model.fmap_base=32",
        "train.schedule.batch_size={4: 4, 8: 4, 16: 4}", "train.schedule.fade_images=8",
        "train.schedule.stable_images=8", "train.schedule.final_stable_images=8",
        "logging.progress_bar=false", "logging.tensorboard=false",
    ]
    assert main(["demo", "--out", str(out), *overrides]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "photo2anime/recall@1" in printed and "photo2anime/style" in printed
    assert "Against copying the input, the trained model is better on" in printed
    page = (out / "report.html").read_text()
    assert "Against copying the input" in page and "photo/recon_l1" in page
    for name in ("photo_to_anime.png", "anime_to_photo.png", "neighbours.png"):
        assert (out / "report" / name).stat().st_size > 0 and name in page
    with Image.open(out / "report" / "photo_to_anime.png") as grid:  # 8 faces of 16 px, each shown at 96 px
        assert grid.width >= 8 * 96 and grid.height >= 3 * 96
    samples = sorted((out / "run" / "samples").glob("*.png"))
    with Image.open(samples[-1]) as grid:
        assert grid.width >= 4 * 96
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == {"trained", "untrained", "pixels"}
    assert all(0.0 <= v <= 1.0 for system in scores.values() for v in system.values())
    assert main(["demo", "--out", str(out), *overrides]) == 0  # a rerun reuses the finished run
