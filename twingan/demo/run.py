"""`twingan demo`: generate the synthetic faces, train the demo model, score it, write the report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from twingan.checkpoint import load_translator
from twingan.demo.report import neighbour_rows, save_rows, write_report
from twingan.metrics.evaluate import copy_verdict, evaluate_checkpoint, format_table, style_domains_from_config
from twingan.metrics.paired import load_paired_test_set
from twingan.training import compose_config
from twingan.training.trainer import Trainer, prepare_data
from twingan.utils.atomic import atomic_write_text


def run_demo(out: Path, overrides: Sequence[str] = ()) -> tuple[Path, dict[str, dict[str, float]]]:
    """Train (or finish training) the demo model under ``out`` and write ``out/report.html``."""
    out = Path(out)
    run_dir = out / "run"
    base = ["experiment=demo", f"data.synthetic.root={out / 'data'}", f"run_dir={run_dir}"]
    if list((run_dir / "checkpoints").glob("ckpt-*.safetensors")):
        base.append("resume=auto")
    cfg = compose_config([*base, *overrides])
    prepare_data(cfg)
    checkpoint = Trainer(cfg).run()

    model, meta = load_translator(checkpoint)
    resolution = model.resolution
    test_set = load_paired_test_set(cfg.data.synthetic.root, resolution)
    scores = evaluate_checkpoint(model, config=meta["config"], baselines=True)["scores"]
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=2))

    figures = out / "report"
    n = min(8, len(test_set.params))
    photos, animes = test_set.images["photo"][:n], test_set.images["anime"][:n]
    photo, anime = (style_domains_from_config(meta["config"])[style] for style in ("photo", "anime"))
    with torch.no_grad():
        to_anime = model.translate(photos, photo, anime)
        to_photo = model.translate(animes, anime, photo)
        q_emb = model.embed(test_set.images["photo"], photo).numpy()
        g_emb = model.embed(test_set.images["anime"], anime).numpy()
    save_rows([photos, to_anime, animes], figures / "photo_to_anime.png")
    save_rows([animes, to_photo, photos], figures / "anime_to_photo.png")
    rows, found = neighbour_rows(photos[:6], test_set.images["anime"], q_emb[:6], g_emb, k=5)
    save_rows(rows, figures / "neighbours.png")
    images = {
        "Photo -> anime (rows: source photo, translation, true anime rendering)": "report/photo_to_anime.png",
        "Anime -> photo (rows: source anime, translation, true photo rendering)": "report/anime_to_photo.png",
        "Cross-domain search (each row: a photo, then its 5 nearest anime faces)": "report/neighbours.png",
    }
    info = {
        "checkpoint": str(checkpoint),
        "resolution": f"{resolution} px",
        "images seen in training": str(meta["progress"]["images_seen"]),
        "test faces": str(len(test_set.params)),
    }
    return write_report(out, scores, images, found, info), scores


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """The score table, then the plain comparison with copying the input."""
    return format_table(scores, digits=3) + "\n" + copy_verdict(scores)
