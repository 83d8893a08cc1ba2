"""GAN objectives and penalties against references computed another way (analytic gradients, float64)."""
import math

import pytest
import torch
import torch.nn.functional as F

from twingan.losses import LossWeights, TranslationLosses, build_objective, draw_inputs
from twingan.losses.gan import Dragan, NonSaturatingR1, WganGp, squared_gradient_penalty, unit_gradient_penalty
from twingan.losses.terms import latent_contrast, mode_seeking
from twingan.models import Discriminators, ModelConfig, TwinGAN


class TanhCritic(torch.nn.Module):
    """D(x) = v . tanh(W x + b); its input gradient is W^T (v * (1 - tanh^2(W x + b)))."""

    def __init__(self, dim, hidden=5, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(hidden, dim, generator=g, dtype=torch.float64) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(hidden, generator=g, dtype=torch.float64) * 0.1)
        self.v = torch.nn.Parameter(torch.randn(hidden, generator=g, dtype=torch.float64))

    def forward(self, x):
        return torch.tanh(x.flatten(1) @ self.W.T + self.b) @ self.v

    def analytic_grad_norms(self, x):
        with torch.no_grad():
            h = torch.tanh(x.flatten(1) @ self.W.T + self.b)
            grads = (self.v * (1 - h**2)) @ self.W
            return grads.norm(dim=1)


def _images(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 2, 2, generator=g, dtype=torch.float64)


def test_dragan_penalty_matches_analytic_gradient():
    critic, real = TanhCritic(12), _images(0)
    obj = Dragan(weight=0.25, perturb_scale=0.5)
    points = obj.penalty_points(real, torch.Generator().manual_seed(42))
    u = torch.rand(real.shape, generator=torch.Generator().manual_seed(42), dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(points, real + 0.5 * real.std() * u)
    expected = ((critic.analytic_grad_norms(points) - 1) ** 2).mean()
    torch.testing.assert_close(unit_gradient_penalty(critic, points), expected, rtol=1e-12, atol=1e-12)
    again = obj.penalty(critic, real, _images(9), torch.Generator().manual_seed(42))
    torch.testing.assert_close(again, expected, rtol=1e-12, atol=1e-12)  # the fake plays no part


def test_wgan_gp_penalty_matches_analytic_gradient():
    critic, real, fake = TanhCritic(12, seed=1), _images(1), _images(2)
    obj = WganGp()
    points = obj.penalty_points(real, fake, torch.Generator().manual_seed(3))
    eps = torch.rand((6, 1, 1, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(points, eps * real + (1 - eps) * fake)
    expected = ((critic.analytic_grad_norms(points) - 1) ** 2).mean()
    torch.testing.assert_close(unit_gradient_penalty(critic, points), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(obj.penalty(critic, real, fake, torch.Generator().manual_seed(3)), expected)


def test_r1_penalty_matches_analytic_gradient():
    critic, real = TanhCritic(12, seed=2), _images(3)
    expected = (critic.analytic_grad_norms(real) ** 2).mean()
    torch.testing.assert_close(squared_gradient_penalty(critic, real), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(NonSaturatingR1().penalty(critic, real, _images(4)), expected, rtol=1e-12, atol=1e-12)


def judge_pair(objective, critic, real, fake, generator=None, penalty_scale=1.0):
    """The objective's discriminator loss for one (real, fake) pair, as the translation losses form it."""
    penalty = objective.penalty(critic, real, fake, generator) if penalty_scale else None
    return objective.discriminator_loss(critic(real), critic(fake), penalty, penalty_scale)


@pytest.mark.parametrize("name", ["dragan", "wgan-gp", "ns-r1"])
def test_penalty_gradient_wrt_critic_weights_matches_finite_differences(name):
    """The penalty is trained through (double backward): check d penalty / d W numerically in float64."""
    critic, real, fake = TanhCritic(12, seed=4), _images(4), _images(5)
    obj = build_objective(name)

    def loss():
        return judge_pair(obj, critic, real, fake, torch.Generator().manual_seed(9))[0]

    (grad,) = torch.autograd.grad(loss(), critic.W)
    numeric = torch.zeros_like(critic.W)
    h = 1e-6
    with torch.no_grad():
        for idx in [(0, 0), (1, 3), (4, 11), (2, 7)]:
            critic.W[idx] += h
            up = loss().item()
            critic.W[idx] -= 2 * h
            down = loss().item()
            critic.W[idx] += h
            numeric[idx] = (up - down) / (2 * h)
            assert math.isclose(grad[idx].item(), numeric[idx].item(), rel_tol=1e-5, abs_tol=1e-8)


def test_objective_losses_match_their_formulas():
    critic, real, fake = TanhCritic(12, seed=5), _images(6), _images(7)
    rl, fl = critic(real), critic(fake)
    hinge, _ = build_objective("hinge").discriminator_loss(rl, fl)
    torch.testing.assert_close(hinge, F.relu(1 - rl).mean() + F.relu(1 + fl).mean())
    ns, _ = build_objective("nonsaturating").discriminator_loss(rl, fl)
    torch.testing.assert_close(ns, -torch.log(torch.sigmoid(rl)).mean() - torch.log(1 - torch.sigmoid(fl)).mean())
    torch.testing.assert_close(build_objective("dragan").generator_loss(fl), -torch.log(torch.sigmoid(fl)).mean())
    torch.testing.assert_close(build_objective("wgan-gp").generator_loss(fl), -fl.mean())
    g = torch.Generator().manual_seed(1)
    wgan = WganGp(weight=10.0, drift=0.001)
    total, logs = judge_pair(wgan, critic, real, fake, g)
    gp = unit_gradient_penalty(critic, wgan.penalty_points(real, fake, torch.Generator().manual_seed(1)))
    torch.testing.assert_close(total, fl.mean() - rl.mean() + 10 * gp + 0.001 * (rl**2).mean())


def test_unknown_objective_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        build_objective("lsgan")
    with pytest.raises(ValueError, match="bad parameters"):
        build_objective("hinge", weight=1.0)


@pytest.mark.parametrize("resolution,expect_recon_adv", [(16, False), (64, True)])
def test_translation_losses_cover_every_pair_and_train_both_sides(resolution, expect_recon_adv):
    torch.manual_seed(0)
    cfg = ModelConfig(domains=("a", "b", "c"), resolution=resolution, max_channels=8, fmap_base=32)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    losses = TranslationLosses(build_objective("dragan"), LossWeights())
    reals = [torch.randn(2, 3, resolution, resolution) for _ in range(3)]
    g_total, g_logs = losses.generator_loss(model, discs, reals)
    assert {"g_recon", "g_adv", "g_semantic", "g_cycle"} <= set(g_logs)
    assert ("g_adv_recon" in g_logs) == expect_recon_adv
    g_total.backward()
    assert all(p.grad is not None for p in model.encoder.blocks["4"].parameters())
    d_total, d_logs = losses.discriminator_loss(model, discs, reals, torch.Generator().manual_seed(0))
    assert "gp" in d_logs and torch.isfinite(d_total)
    discs.zero_grad()
    d_total.backward()
    assert all(net.fc.weight.grad.abs().sum() > 0 for net in discs.nets)


def test_reconstruction_loss_is_l1_of_the_round_trip():
    torch.manual_seed(1)
    cfg = ModelConfig(domains=("a", "b"), resolution=8, max_channels=8, fmap_base=32)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    reals = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)]
    weights = LossWeights(reconstruction=1.0, adversarial=0.0, semantic=0.0, semantic_contrast=0.0, cycle=0.0)
    total, logs = TranslationLosses(build_objective("hinge"), weights).generator_loss(model, discs, reals)
    expected = torch.stack([(model.reconstruct(x, d) - x).abs().mean() for d, x in enumerate(reals)]).mean()
    torch.testing.assert_close(logs["g_recon"], expected)
    torch.testing.assert_close(total, expected)


@pytest.mark.parametrize("name", ["dragan", "wgan-gp", "ns-r1"])
def test_lazy_penalty_scale_skips_or_multiplies_the_penalty(name):
    critic, real, fake = TanhCritic(12, seed=6), _images(8), _images(9)
    obj = build_objective(name)
    full, logs = judge_pair(obj, critic, real, fake, torch.Generator().manual_seed(2))
    skipped, skipped_logs = judge_pair(obj, critic, real, fake, torch.Generator().manual_seed(2), penalty_scale=0)
    fourfold, _ = judge_pair(obj, critic, real, fake, torch.Generator().manual_seed(2), penalty_scale=4)
    assert "gp" in logs and "gp" not in skipped_logs
    torch.testing.assert_close(fourfold - skipped, 4 * (full - skipped), rtol=1e-12, atol=1e-12)
    assert (full - skipped).abs() > 1e-6
    generator = torch.Generator().manual_seed(5)
    judge_pair(obj, critic, real, fake, generator, penalty_scale=0)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(5).get_state())  # nothing drawn


def test_latent_contrast_matches_a_per_row_softmax_in_float64():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(5, 4, 4, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, 4, 4, generator=g, dtype=torch.float64)
    tau = 0.1

    def rows(x):
        flat = (x - x.mean(dim=0)).reshape(len(x), -1)
        return [v / math.sqrt(float((v * v).sum())) for v in flat]

    ra, rb = rows(a), rows(b)
    total = 0.0
    for i in range(5):
        sims_ab = [float((ra[i] * rb[j]).sum()) / tau for j in range(5)]
        sims_ba = [float((rb[i] * ra[j]).sum()) / tau for j in range(5)]
        for sims in (sims_ab, sims_ba):
            total += -sims[i] + math.log(sum(math.exp(s) for s in sims))
    expected = total / 10
    assert math.isclose(latent_contrast(a, b, tau).item(), expected, rel_tol=1e-6)
    same = latent_contrast(a, a + 1e-3 * b, tau)
    assert same < latent_contrast(a, b, tau)  # a set that identifies its sources scores lower


def test_generator_step_renders_what_the_discriminator_step_would():
    torch.manual_seed(2)
    cfg = ModelConfig(domains=("a", "b", "c"), resolution=8, max_channels=8, fmap_base=32, noise_dim=4)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    losses = TranslationLosses(build_objective("hinge"), LossWeights(recon_adversarial_from=8))
    reals = [torch.randn(3, 3, 8, 8) for _ in range(3)]
    inputs = draw_inputs(model, reals, None, torch.Generator().manual_seed(0))
    _, _, rendered = losses.generator_step(model, discs, inputs)
    again = losses.render_for_discriminators(model, discs, inputs)
    assert [len(r) for r in rendered] == [len(r) for r in again] == [4, 4, 4]  # 2 translations, recon, generation
    for mine, theirs in zip(rendered, again):
        for x, y in zip(mine, theirs):
            assert not x.requires_grad
            torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    with_rendered, _ = losses.discriminator_loss(model, discs, inputs, rendered=rendered)
    without, _ = losses.discriminator_loss(model, discs, inputs)
    torch.testing.assert_close(with_rendered, without, rtol=0, atol=1e-6)


def test_mode_seeking_is_the_inverse_mean_image_to_noise_distance_ratio_of_pairs():
    g = torch.Generator().manual_seed(4)
    images, noise = torch.randn(7, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64)
    ratios = []
    for i in range(3):  # pairs (0, 1), (2, 3), (4, 5); the odd row out is left alone
        image_gap = sum(abs(float(v)) for v in (images[2 * i] - images[2 * i + 1]).flatten()) / images[0].numel()
        noise_gap = sum(abs(float(v)) for v in noise[2 * i] - noise[2 * i + 1]) / noise.shape[1]
        ratios.append(image_gap / noise_gap)
    assert math.isclose(mode_seeking(images, noise).item(), 1 / (sum(ratios) / 3 + 1e-5), rel_tol=1e-9)
    collapsed = images[:1].expand_as(images)
    assert mode_seeking(collapsed, noise) > 1e4  # one face for every noise costs the most


def test_mode_seeking_term_trains_the_generator_of_faces_from_noise():
    torch.manual_seed(5)
    cfg = ModelConfig(domains=("anime",), resolution=8, max_channels=8, fmap_base=32, noise_dim=4)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    losses = TranslationLosses(build_objective("nonsaturating"), LossWeights(reconstruction=0, mode_seeking=2.0))
    total, logs = losses.generator_loss(model, discs, [torch.randn(4, 3, 8, 8)])
    assert logs["g_mode_seeking"] > 0
    torch.testing.assert_close(logs["g_total"], logs["g_gen"] + 2.0 * logs["g_mode_seeking"])
    total.backward()
    assert model.mapping.net[0].weight.grad.abs().sum() > 0


def test_the_discriminator_step_judges_each_domains_reals_once():
    """Three fake batches per domain and attributes: still one pass of D_d over its reals, shared by both."""
    torch.manual_seed(6)
    cfg = ModelConfig(domains=("a", "b"), resolution=8, max_channels=8, fmap_base=32, noise_dim=4,
                      attributes={"hair": ["black", "blue"]})
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    reals = [torch.rand(4, 3, 8, 8) * 2 - 1 for _ in range(2)]
    inputs = draw_inputs(model, reals, [torch.tensor([[0], [1], [1], [-1]]), None], torch.Generator().manual_seed(0))
    losses = TranslationLosses(build_objective("dragan"), LossWeights(recon_adversarial_from=8))
    rendered = losses.render_for_discriminators(model, discs, inputs)
    assert [len(r) for r in rendered] == [3, 3]
    seen = []
    for net in discs.nets:
        net.register_forward_hook(lambda module, args, kwargs, out: seen.append(args[0]), with_kwargs=True)
    _, logs = losses.discriminator_loss(model, discs, inputs, torch.Generator().manual_seed(1), rendered=rendered)
    assert "d_attr" in logs
    for real in reals:
        assert sum(x is real for x in seen) == 1


def test_the_active_terms_follow_the_weights_and_the_models_parts():
    from twingan.losses import active_terms

    plain = TwinGAN(ModelConfig(domains=("a", "b"), resolution=8, max_channels=8, fmap_base=32))
    names = [t.name for t in active_terms(LossWeights(), plain, 2)]
    assert names == ["recon", "adv", "semantic", "contrast", "cycle"]  # no reconstructions judged below 64 px
    names = [t.name for t in active_terms(LossWeights(recon_adversarial_from=8, cycle=0.0, semantic=0.0), plain, 2)]
    assert names == ["recon", "adv", "adv_recon", "contrast"]
    full = TwinGAN(ModelConfig(domains=("a",), resolution=8, max_channels=8, fmap_base=32, noise_dim=4, style_dim=4,
                               attributes={"hair": ["black", "blue"]}))
    names = [t.name for t in active_terms(LossWeights(mode_seeking=1.0, recolour=1.0), full, 1)]
    assert names == ["recon", "gen", "mode_seeking", "attr", "recolour"]  # one domain: nothing translated
