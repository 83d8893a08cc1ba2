"""Differentiable augmentation of the discriminators' inputs: each operation against a reference, the policy,
and real training runs with it (exact resume, the policy reaching every discriminator call)."""
import numpy as np
import pytest
import torch

from twingan.errors import ConfigError
from twingan.losses import TranslationLosses, build_objective
from twingan.losses.d_augment import CUTOUT, TRANSLATION, DiffAugment, color, cutout, parse_policy, translation
from twingan.models import Discriminators, ModelConfig, TwinGAN


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_translation_is_a_zero_filled_shift_by_at_most_an_eighth():
    x = torch.randn(16, 3, 16, 16, dtype=torch.float64)
    y = translation(x, seeded())
    limit = int(16 * TRANSLATION + 0.5)
    for i in range(16):
        # find the shift that explains the output, then check every pixel against numpy
        matches = []
        for dy in range(-limit, limit + 1):
            for dx in range(-limit, limit + 1):
                ref = np.zeros((3, 16, 16))
                src = x[i].numpy()
                ys, xs = slice(max(dy, 0), 16 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0))
                ref[:, ys, xs] = src[:, slice(max(-dy, 0), 16 + min(-dy, 0)), slice(max(-dx, 0), 16 + min(-dx, 0))]
                if np.array_equal(ref, y[i].numpy()):
                    matches.append((dy, dx))
        assert len(matches) == 1, i


def test_cutout_zeroes_one_square_of_half_the_side_clipped_at_the_edges():
    x = torch.ones(64, 1, 16, 16)
    y = cutout(x, seeded())
    side = int(16 * CUTOUT + 0.5)
    for img in y[:, 0]:
        rows, cols = np.nonzero((img == 0).numpy())
        assert len(rows) > 0
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == h * w  # one rectangle
        assert h <= side and w <= side
        assert (h == side or rows.min() == 0 or rows.max() == 15) and (w == side or cols.min() == 0 or cols.max() == 15)
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.08)


def test_color_matches_its_formula_in_float64():
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    g = seeded(3)
    b, s, c = (torch.rand(4, 1, 1, 1, generator=g, dtype=torch.float64) for _ in range(3))
    ref = x + (b - 0.5)
    ref = (ref - ref.mean(1, keepdim=True)) * (2 * s) + ref.mean(1, keepdim=True)
    ref = (ref - ref.mean((1, 2, 3), keepdim=True)) * (c + 0.5) + ref.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(color(x, seeded(3)), ref)


def test_augmentation_is_differentiable_and_seeded():
    aug = DiffAugment(["color", "translation", "cutout"])
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    y = aug(x, seeded(1))
    assert torch.equal(y, aug(x, seeded(1))) and not torch.equal(y, aug(x, seeded(2)))
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    x.grad = None
    DiffAugment(["translation", "cutout"])(x, seeded(1)).square().sum().backward()
    assert (x.grad == 0).any() and (x.grad != 0).any()  # cut-out and shifted-away pixels get no gradient


def test_policy_parsing():
    assert parse_policy([]) == () and parse_policy(None) == ()
    assert parse_policy(["translation", "cutout"]) == ("translation", "cutout")
    assert not DiffAugment([])
    for bad in (["colour"], ["cutout", "cutout"], "cutout", [3]):
        with pytest.raises(ValueError, match="loss.d_augment"):
            parse_policy(bad)


def test_every_discriminator_call_of_both_sides_sees_augmented_images():
    """A discriminator that records its inputs: with the policy on, no judged batch (reals, fakes, the penalty's
    perturbed reals) reaches it unaugmented; without it, the reals reach it as they are."""
    cfg = ModelConfig(domains=("human", "anime"), resolution=8, max_channels=8, fmap_base=32)
    torch.manual_seed(0)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    reals = [torch.rand(4, 3, 8, 8) * 2 - 1 for _ in range(2)]
    seen = []
    for net in discs.nets:
        net.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    objective = build_objective("dragan")
    for policy, expect_augmented in (([], False), (["cutout"], True)):
        seen.clear()
        losses = TranslationLosses(objective, d_augment=DiffAugment(policy))
        _, _, rendered = losses.generator_step(model, discs, reals, seeded())
        losses.discriminator_loss(model, discs, reals, seeded(), rendered=rendered)
        holes = [bool(((batch == 0).all(dim=1)).flatten(1).any(dim=1).all()) for batch in seen]
        assert seen and all(holes) == expect_augmented
        assert any(torch.equal(batch, real) for batch in seen for real in reals) != expect_augmented


def test_bad_policy_is_refused_before_any_work(synthetic_root, tmp_path):
    from helpers import tiny_run_overrides
    from twingan.training import compose_config

    with pytest.raises(ConfigError, match=r"loss.d_augment=\['colour'\]: expected distinct operations"):
        compose_config(tiny_run_overrides(synthetic_root, tmp_path / "run", "loss.d_augment=[colour]"))


def test_training_with_augmented_discriminators_resumes_exactly(synthetic_root, tmp_path):
    from helpers import tiny_run_overrides
    from twingan.checkpoint import load_tensors
    from twingan.training import train

    policy = "loss.d_augment=[color,translation,cutout]"
    reference = train(tiny_run_overrides(synthetic_root, tmp_path / "a", policy))
    train(tiny_run_overrides(synthetic_root, tmp_path / "b", policy, "train.max_images=16"))
    resumed = train(tiny_run_overrides(synthetic_root, tmp_path / "b", policy, "resume=auto"))
    plain = train(tiny_run_overrides(synthetic_root, tmp_path / "c"))
    a, b, c = load_tensors(reference), load_tensors(resumed), load_tensors(plain)
    for key in a:
        if key.startswith(("model.", "ema.", "disc.", "optim.")):
            assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("disc."))
