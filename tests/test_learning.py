"""TwinGAN learns: a real training run of the demo's recipe at 16 px must translate better than copying the input.

Every other test would pass with a model that outputs noise; this one would not. It trains the
demo experiment (its defaults, only shorter and at 16 px, on one thread) on synthetic faces and
scores the checkpoint on the paired test set: the reconstruction must be close, each translation
closer to the true rendering in the other style than the input itself is, drawn in the target
style according to the independent judge, with the hair colour kept and the twin found by search.
"""
import pytest

from twingan.data.synthetic import generate_dataset
from twingan.metrics.evaluate import PIXELS, TRAINED, evaluate_checkpoint
from twingan.training import train

DIRECTIONS = ("photo2anime", "anime2photo")


@pytest.mark.slow
def test_the_demo_recipe_learns_to_translate_at_16px(tmp_path):
    root = tmp_path / "synthetic"
    generate_dataset(root, n_train=1000, n_test=100, size=32, seed=0, progress=False)
    checkpoint = train([
        "experiment=demo", f"data.synthetic.root={root}", "data.synthetic.n_train=1000", "data.synthetic.n_test=100",
        "data.synthetic.size=32", f"run_dir={tmp_path / 'run'}", "model.resolution=16",
        "train.schedule.fade_images=500", "train.schedule.stable_images=500", "train.schedule.final_stable_images=3000",
        "train.cpu_threads=1", "logging.samples.every_images=0", "logging.progress_bar=false",
        "logging.tensorboard=false",
    ])
    result = evaluate_checkpoint(checkpoint, baselines=True, device="cpu")
    trained, copy = result["scores"][TRAINED], result["scores"][PIXELS]
    report = {k: (round(trained[k], 3), round(copy[k], 3)) for k in trained if "pooled" not in k}
    for style in ("photo", "anime"):
        assert trained[f"{style}/recon_l1"] <= 0.045, report
    for direction in DIRECTIONS:
        assert trained[f"{direction}/l1"] <= 0.85 * copy[f"{direction}/l1"], report
        assert trained[f"{direction}/style"] >= 0.7 > copy[f"{direction}/style"], report
        assert trained[f"{direction}/hair_acc"] >= 0.85, report
        assert trained[f"{direction}/recall@1"] >= 0.6, report
