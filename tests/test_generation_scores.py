"""Scores of faces drawn from noise: the measures against brute force, the judges on real faces, a real run."""
import numpy as np
import pytest
import torch

from twingan.data.synthetic import EYE_COLOUR_NAMES, HAIR_COLOUR_NAMES
from twingan.metrics.evaluate import evaluate_checkpoint
from twingan.metrics.generation_scores import (
    SEEDS,
    distinct_share,
    distinct_threshold,
    eye_colours_of,
    eye_judge,
    hair_colours_of,
    pairwise_l1,
    total_variation,
    training_faces,
)
from twingan.metrics.paired import load_paired_test_set


def test_total_variation_and_pairwise_distances_against_brute_force():
    a, b = np.array([0, 0, 1, 2]), np.array([1, 1, 1, 3, 3, 3])
    # p = (.5, .25, .25, 0), q = (0, .5, 0, .5): |diff| sums to .5 + .25 + .25 + .5
    assert total_variation(a, b, 4) == pytest.approx(0.75)
    assert total_variation(a, a, 4) == 0.0
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    d = pairwise_l1(x)
    for i in range(5):
        for j in range(5):
            assert d[i, j].item() == pytest.approx(float((x[i].double() - x[j].double()).abs().mean()) / 2, rel=1e-9)


def test_distinct_share_counts_faces_farther_than_the_threshold_from_those_before():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 4, 4, generator=g), torch.rand(3, 4, 4, generator=g)
    near_a = a + 1e-4
    images = torch.stack([a, near_a, b, a])
    assert distinct_share(images, threshold=0.01) == 0.5  # a, b; near_a and the repeat of a do not count
    assert distinct_share(images, threshold=0.0) == 0.75  # only the exact repeat is the same face
    assert distinct_share(a.expand(8, 3, 4, 4), threshold=0.0) == 1 / 8  # a collapsed generator


def test_judges_and_threshold_on_real_faces(judged_root):
    """Real faces score as a perfect generator would: their hair distribution is the training set's, they are
    all distinct by the threshold (set by real faces), and the eye judge reads the test faces' eyes."""
    faces = training_faces(judged_root, "anime", 16)
    assert len(faces.images) == 200 and set(faces.eye_colours) <= set(range(len(EYE_COLOUR_NAMES)))
    threshold = distinct_threshold(faces.images)
    assert threshold > 0
    assert distinct_share(faces.images, threshold) == 1.0
    jitter = torch.randn(64, *faces.images.shape[1:], generator=torch.Generator().manual_seed(0)) * 0.02
    four_faces = faces.images[:4].repeat(16, 1, 1, 1) + jitter  # a generator collapsed to four faces, jittered
    assert distinct_share(four_faces, threshold) == 4 / 64
    test_set = load_paired_test_set(judged_root, 16)
    hair = hair_colours_of(test_set.images["anime"], "anime")
    assert (hair == np.array([p.hair_colour_index for p in test_set.params])).mean() >= 0.95
    train_hair = hair_colours_of(faces.images, "anime")
    assert total_variation(train_hair[:100], train_hair[100:], len(HAIR_COLOUR_NAMES)) <= 0.25  # sampling noise only


@pytest.mark.slow
def test_eye_judge_reads_eye_colours_at_32px(tmp_path):
    """At 32 px an anime iris is a few pixels: the judge (fitted on 600 training pictures) must read it on faces
    it never saw. (At 16 px an eye is a pixel or two and no judge can.)"""
    from twingan.data.synthetic import generate_dataset

    generate_dataset(tmp_path, n_train=600, n_test=60, size=32, seed=5, progress=False)
    rng = torch.random.get_rng_state()
    judge = eye_judge(str(tmp_path.resolve()), "anime", 32)
    assert torch.equal(torch.random.get_rng_state(), rng)  # fitted on its own generator
    test_set = load_paired_test_set(tmp_path, 32)
    truth = np.array([EYE_COLOUR_NAMES.index(p.eye_colour) for p in test_set.params])
    assert (eye_colours_of(judge, test_set.images["anime"]) == truth).mean() >= 0.85


def test_eval_scores_generation_of_a_trained_checkpoint(tmp_path, judged_root):
    """A real (tiny) generation run: eval adds the generation rows for each style the model draws."""
    from helpers import tiny_run_overrides
    from twingan.training import train

    overrides = tiny_run_overrides(judged_root, tmp_path / "run", "model.noise_dim=8", "train.max_images=16")
    overrides = [o for o in overrides if not o.startswith("data.synthetic.") or o.startswith("data.synthetic.root")]
    checkpoint = train([*overrides, "data.synthetic.n_train=200", "data.synthetic.n_test=40", "data.synthetic.size=16",
                        "data.synthetic.seed=3"])
    result = evaluate_checkpoint(checkpoint, baselines=True, device="cpu")
    for system in ("trained", "untrained"):
        scores = result["scores"][system]
        for style in ("photo", "anime"):
            for key in ("gen_hair_tv", "gen_eye_tv", "gen_distinct", "gen_realism"):
                assert 0.0 <= scores[f"{style}/{key}"] <= 1.0, (system, style, key)
            assert scores[f"{style}/gen_distinct"] * SEEDS == round(scores[f"{style}/gen_distinct"] * SEEDS)
            assert scores[f"{style}/gen_walk_jump"] >= 1.0 and scores[f"{style}/gen_walk_max_step"] > 0
        assert "photo2anime/l1" in scores
    assert not any("gen_" in k for k in result["scores"]["pixels"])


def test_one_condition_distinctness_sees_a_generator_that_ignores_its_noise(tmp_path, judged_root):
    """With attributes drawn from the prior, faces differ by their colours alone; asking 64 seeds for one
    condition shows a generator whose noise does nothing as what it is: one face."""
    from helpers import tiny_run_overrides
    from twingan.checkpoint import load_translator
    from twingan.metrics.generation_scores import ONE_CONDITION_SEEDS, generation_scores
    from twingan.training import train

    attributes = "model.attributes={hair:[" + ",".join(HAIR_COLOUR_NAMES) + "],eyes:[" + ",".join(EYE_COLOUR_NAMES) + "]}"
    overrides = tiny_run_overrides(judged_root, tmp_path / "run", "model.noise_dim=8", attributes, "train.max_images=16")
    overrides = [o for o in overrides if not o.startswith("data.synthetic.") or o.startswith("data.synthetic.root")]
    model, _ = load_translator(train([*overrides, "data.synthetic.n_train=200", "data.synthetic.n_test=40",
                                      "data.synthetic.size=16", "data.synthetic.seed=3"]))
    scores = generation_scores(model, judged_root, "anime", "anime")
    assert {"gen_distinct_one_condition", "gen_attr_hair_acc"} <= set(scores)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".modulation." in name:  # conditions that visibly change the faces
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        last = model.mapping.net[-1]
        last.weight.zero_()  # the latent no longer depends on the noise
        last.bias.copy_(torch.randn(last.bias.shape, generator=gen))
    collapsed = generation_scores(model, judged_root, "anime", "anime")
    assert collapsed["gen_distinct_one_condition"] == 1 / ONE_CONDITION_SEEDS
    assert collapsed["gen_distinct"] > 4 / SEEDS  # the drawn colours alone make several "distinct" faces
