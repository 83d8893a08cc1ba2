"""The loss values of one fixed-seed step with every mode on, pinned to what the objective computed before
it was recomposed into terms (three domains, style encoder, attributes, generation with mode seeking,
recolouring, reconstructions judged from 8 px, every GAN penalty).

One value changed on purpose: the diversity term. The old objective computed it for the first guided
translation of the step only (into the first domain, from the second), so with human/anime the translations
into anime never had it. It is now the mean over every guided translation; the pinned value is that first
translation's, and the total differs from the pinned one by the term's weight times the change.

Faces drawn from noise now take their attribute targets with rows paired (2k+1 = 2k) so that mode seeking
compares two noises under one condition. The pinned step switches the pairing off (the targets as drawn, what
the objective used when the values were pinned), so every other value stays pinned;
``test_paired_generation_changes_only_what_generation_feeds`` checks the paired step against a reference.

A penalty of the reals alone (DRAGAN's, R1's) is now computed once per domain and shared by the domain's fake
batches, instead of once per (domain, fake batch) pair: the same strength for a quarter of the double backwards
here. R1's is deterministic, so its values stay pinned; DRAGAN's points are drawn, so its ``gp`` (and
``d_total``) is now the mean over the domains of one draw each, checked against a reference in
``test_a_penalty_of_the_reals_is_computed_once_per_domain``; the old values were gp 0.4717904, d_total 2.38321.
"""
import pytest
import torch
import torch.nn.functional as F

from twingan.losses import LossWeights, TranslationLosses, build_objective, draw_inputs
from twingan.losses.gan import GANObjective, unit_gradient_penalty
from twingan.losses.conditioning import StepInputs, references, styled_rows, translation_condition
from twingan.losses.terms import mode_seeking
from twingan.models import Discriminators, ModelConfig, TwinGAN

SCHEMA = {"hair": ["black", "blonde", "blue"], "eyes": ["brown", "green"]}
WEIGHTS = LossWeights(recon_adversarial_from=8, mode_seeking=0.5, recolour=2.0)

_SHARED = {
    "g_recon": 0.5521104, "g_semantic": 0.1133922, "g_contrast": 2.564172, "g_cycle": 0.5230221,
    "g_mode_seeking": 7.256054, "g_style": 0.216174, "g_attr": 0.8960991,
    "g_recolour": 0.5493039, "d_real": 0.1635308, "d_fake": 0.08689808, "d_attr": 0.9103528,
}
_SOFTPLUS = {"g_adv": 0.6586956, "g_adv_recon": 0.6459349, "g_gen": 0.6419151, "g_total": 21.10632}
FIRST_PAIR_DIVERSITY = -0.01193268  # what the old objective logged as g_diversity
_LINEAR = {"g_adv": -0.07135826, "g_adv_recon": -0.09806907, "g_gen": -0.1068068, "g_total": 18.88354}
PINNED = {
    "dragan": {**_SHARED, **_SOFTPLUS, "gp": 0.4818865, "d_total": 2.385734},
    "wgan-gp": {**_SHARED, **_LINEAR, "gp": 0.4706912, "d_total": 5.540675},
    "ns-r1": {**_SHARED, **_SOFTPLUS, "gp": 0.1230808, "d_total": 2.880666},
    "hinge": {**_SHARED, **_LINEAR, "d_total": 2.83372},
}


def every_mode_step(objective: str):
    """The model, its discriminators, the step's inputs and the losses, all from fixed seeds."""
    torch.manual_seed(0)
    cfg = ModelConfig(domains=("a", "b", "c"), resolution=8, max_channels=8, fmap_base=32,
                      noise_dim=4, style_dim=4, attributes=SCHEMA)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    g = torch.Generator().manual_seed(1)
    for p in model.generator.parameters():  # the style modulation starts at zero: give the codes an effect
        if p.dim() == 2 and p.abs().sum() == 0:
            p.data.normal_(0, 0.1, generator=g)
    reals = [torch.rand(4, 3, 8, 8, generator=g) * 2 - 1 for _ in range(3)]
    labels = [torch.tensor([[0, 1], [1, 0], [2, 1], [1, 1]]), torch.tensor([[2, -1], [-1, 0], [0, 1], [-1, -1]]), None]
    inputs = draw_inputs(model, reals, labels, g)
    return model, discs, inputs, TranslationLosses(build_objective(objective), WEIGHTS)


def diversity_of_each_pair(model: TwinGAN, inputs) -> list[torch.Tensor]:
    """-L1 between the translations o -> d for two references of d, every guided pair (d, o) in order."""
    values = []
    with torch.no_grad():
        for d in range(inputs.num_domains):
            cond, _ = translation_condition(model, inputs, d)
            rows = styled_rows(inputs, d)
            other_style = model.style(references(inputs, d, shift=2), d)
            other_cond = model.condition(len(rows), other_style, inputs.targets[d])
            for o in range(inputs.num_domains):
                if o != d and rows.any():
                    latent, skips = model.encode(inputs.reals[o], o)
                    fake, other = model.decode(latent, skips, d, cond), model.decode(latent, skips, d, other_cond)
                    values.append(-F.l1_loss(fake[rows], other[rows]))
    return values


def unpaired(self: StepInputs, domain: int):
    """Generation targets as drawn, not paired: the objective when the values were pinned."""
    return self.targets[domain] if self.targets is not None else None


@pytest.mark.parametrize("objective", sorted(PINNED))
def test_a_step_with_every_mode_on_computes_the_pinned_losses(objective, monkeypatch):
    monkeypatch.setattr(StepInputs, "generation_targets", unpaired)
    model, discs, inputs, losses = every_mode_step(objective)
    g_total, g_logs, rendered = losses.generator_step(model, discs, inputs)
    assert [len(r) for r in rendered] == [4, 4, 4]  # two translations, the reconstruction, a generated batch
    d_total, d_logs = losses.discriminator_loss(model, discs, inputs, torch.Generator().manual_seed(7), rendered=rendered)
    logs = {key: float(value) for key, value in {**g_logs, **d_logs}.items()}
    assert set(logs) == set(PINNED[objective]) | {"g_diversity"}
    pairs = diversity_of_each_pair(model, inputs)
    assert len(pairs) == 6 and float(pairs[0]) == pytest.approx(FIRST_PAIR_DIVERSITY, rel=2e-5)
    assert logs["g_diversity"] == pytest.approx(float(torch.stack(pairs).mean()), rel=2e-5)
    diversity_change = WEIGHTS.style_diversity * (logs["g_diversity"] - FIRST_PAIR_DIVERSITY)
    for key, pinned in PINNED[objective].items():
        expected = pinned + diversity_change if key == "g_total" else pinned
        assert logs[key] == pytest.approx(expected, rel=2e-5, abs=1e-6), key
    assert g_total.item() == pytest.approx(logs["g_total"]) and d_total.item() == pytest.approx(logs["d_total"])


def test_paired_generation_changes_only_what_generation_feeds(monkeypatch):
    """With the rows paired, the mode-seeking term is MSGAN's ratio on faces drawn under the paired targets
    (computed here from the model's parts); the terms that never see a generated face keep their pinned values."""
    model, discs, inputs, losses = every_mode_step("dragan")
    _, logs, _ = losses.generator_step(model, discs, inputs)
    assert not torch.equal(inputs.targets[0][0], inputs.targets[0][1])  # so that pairing changes something
    expected = []
    with torch.no_grad():
        for d in range(inputs.num_domains):
            target = inputs.targets[d]
            paired = None if target is None else target[[0, 0, 2, 2]]
            faces = model.generate(inputs.noise[d], d, model.condition(4, labels=paired))
            expected.append(mode_seeking(faces, inputs.noise[d]))
    assert float(logs["g_mode_seeking"]) == pytest.approx(float(torch.stack(expected).mean()), rel=2e-5)
    assert float(logs["g_mode_seeking"]) != pytest.approx(PINNED["dragan"]["g_mode_seeking"], rel=1e-3)
    for key in ("g_recon", "g_semantic", "g_contrast", "g_cycle", "g_style", "g_recolour", "g_adv", "g_adv_recon"):
        assert float(logs[key]) == pytest.approx(PINNED["dragan"][key], rel=2e-5, abs=1e-6), key


@pytest.mark.parametrize("objective, calls", [("dragan", 3), ("ns-r1", 3), ("wgan-gp", 12)])
def test_a_penalty_of_the_reals_is_computed_once_per_domain(objective, calls, monkeypatch):
    """DRAGAN's and R1's penalties depend on the reals alone: one per domain (three here), shared by the domain's
    four fake batches; WGAN-GP's interpolates between real and fake, so each of the twelve pairs has its own.
    DRAGAN's logged penalty is the mean over the domains of one draw each, in domain order."""
    monkeypatch.setattr(StepInputs, "generation_targets", unpaired)
    model, discs, inputs, losses = every_mode_step(objective)
    _, _, rendered = losses.generator_step(model, discs, inputs)
    counted = []
    original = type(losses.objective).penalty

    def counting(self, *args, **kwargs):
        counted.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(losses.objective), "penalty", counting)
    _, logs = losses.discriminator_loss(model, discs, inputs, torch.Generator().manual_seed(7), rendered=rendered)
    assert len(counted) == calls
    if objective == "dragan":
        generator, values = torch.Generator().manual_seed(7), []
        for d, real in enumerate(inputs.reals):
            points = losses.objective.penalty_points(real, generator)
            values.append(unit_gradient_penalty(lambda x, d=d: discs(x, d), points))
        assert float(logs["gp"]) == pytest.approx(float(torch.stack(values).mean()), rel=1e-5)
    assert GANObjective.penalty_of_reals is False  # an objective that does not say so pays per pair
