"""Generation from noise, style codes and attributes: the model parts and their losses."""
import pytest
import torch
import torch.nn.functional as F

from twingan.losses import LossWeights, TranslationLosses, build_objective, draw_inputs
from twingan.losses.conditioning import (
    attribute_loss,
    classification_targets,
    generation_condition,
    recoloured,
    translation_condition,
)
from twingan.models import AttributeSchema, Discriminators, ModelConfig, TwinGAN
from twingan.models.domain_norm import DomainBatchNorm2d, DomainNorm2d

SCHEMA = {"hair": ["black", "blonde", "blue"], "eyes": ["brown", "green"]}


def tiny_cfg(**extra) -> ModelConfig:
    return ModelConfig(resolution=16, max_channels=8, fmap_base=32, **extra)


def test_attribute_schema_labels_and_one_hot():
    schema = AttributeSchema(SCHEMA)
    assert schema.dim == 5 and schema.names == ("hair", "eyes")
    assert schema.parse(["hair=blue"]) == [2, -1]
    assert schema.parse(["eyes=green, hair=black"]) == [0, 1]
    vectors = schema.one_hot(torch.tensor([[2, -1], [0, 1], [-1, -1]]))
    expected = torch.tensor([[0, 0, 1, 0, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(vectors, expected)
    for bad, words in [("hair", "NAME=VALUE"), ("hat=red", "unknown attribute"), ("hair=purple", "not one of")]:
        with pytest.raises(ValueError, match=words):
            schema.parse([bad])
    with pytest.raises(ValueError, match="given twice"):
        schema.parse(["hair=blue", "hair=black"])
    with pytest.raises(ValueError, match="distinct"):
        AttributeSchema({"hair": ["a", "a"]})


def test_modulated_domain_norm_matches_the_formula_in_float64():
    torch.manual_seed(0)
    norm = DomainBatchNorm2d(4, 2).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    dgamma, dbeta = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    out = norm(x, 1, (dgamma, dbeta))
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    x_hat = (x - mean) / torch.sqrt(var + norm.eps)
    gamma = norm.weight[1][None, :, None, None] + dgamma[:, :, None, None]
    beta = norm.bias[1][None, :, None, None] + dbeta[:, :, None, None]
    torch.testing.assert_close(out, x_hat * gamma + beta)
    norm.eval()
    out = norm(x, 0, (dgamma, dbeta))
    x_hat = (x - norm.running_mean[0][None, :, None, None]) / torch.sqrt(norm.running_var[0][None, :, None, None] + norm.eps)
    gamma = norm.weight[0][None, :, None, None] + dgamma[:, :, None, None]
    torch.testing.assert_close(out, x_hat * gamma + norm.bias[0][None, :, None, None] + dbeta[:, :, None, None])


def test_a_zero_condition_is_the_plain_translator():
    torch.manual_seed(0)
    model = TwinGAN(tiny_cfg(style_dim=4, attributes=SCHEMA)).eval()
    for module in model.modules():
        if hasattr(module, "linear") and module.__class__.__name__ == "NormModulation":
            torch.nn.init.normal_(module.linear.weight)
    x = torch.randn(2, 3, 16, 16)
    plain = model.translate(x, 0, 1)
    torch.testing.assert_close(model.translate(x, 0, 1, model.condition(2)), plain, rtol=0, atol=0)
    labelled = model.condition(2, labels=torch.tensor([[2, -1], [0, 1]]))
    assert (model.translate(x, 0, 1, labelled) - plain).abs().max() > 1e-3


def test_plain_models_refuse_conditions_with_clear_errors():
    model = TwinGAN(tiny_cfg())
    assert model.condition(2) is None
    with pytest.raises(ValueError, match="no style or attributes"):
        model.condition(2, style=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="noise_dim"):
        model.generate(torch.zeros(2, 8), 0)
    with pytest.raises(ValueError, match="style_dim"):
        model.style(torch.zeros(1, 3, 16, 16), 0)
    with pytest.raises(ValueError, match="takes no condition"):
        model.decode(*model.encode(torch.zeros(2, 3, 16, 16), 0), 1, torch.zeros(2, 3))


@pytest.mark.parametrize("resolution", [4, 8, 16])
def test_generation_shapes_and_determinism(resolution):
    torch.manual_seed(0)
    model = TwinGAN(tiny_cfg(noise_dim=8)).eval()
    model.set_progress(resolution)
    with torch.no_grad():  # domains differ only once trained: give each its own affine parameters
        for norm in model.modules():
            if isinstance(norm, (DomainBatchNorm2d, DomainNorm2d)):
                norm.weight.uniform_(0.5, 1.5)
    z = model.noise(5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, model.noise(5, torch.Generator().manual_seed(3)), rtol=0, atol=0)
    for domain in ("human", "anime"):
        images = model.generate(z, domain)
        assert images.shape == (5, 3, resolution, resolution) and torch.isfinite(images).all()
        # Eval mode: an image does not depend on the rest of its batch.
        torch.testing.assert_close(model.generate(z[2:3], domain), images[2:3], rtol=1e-4, atol=1e-4)
    assert (model.generate(z, "human") - model.generate(z, "anime")).abs().max() > 1e-3
    latent = model.mapping(z)
    torch.testing.assert_close(latent.pow(2).mean(dim=1), torch.ones(5, 4, 4), rtol=1e-4, atol=1e-4)


def test_style_codes_are_per_image_and_per_domain():
    torch.manual_seed(0)
    model = TwinGAN(tiny_cfg(style_dim=6)).eval()
    refs = torch.rand(4, 3, 16, 16) * 2 - 1
    codes = model.style(refs, "anime")
    assert codes.shape == (4, 6)
    torch.testing.assert_close(model.style(refs[1:2], "anime"), codes[1:2], rtol=1e-5, atol=1e-6)
    assert (model.style(refs, "human") - codes).abs().max() > 1e-4
    small = F.interpolate(refs, size=(8, 8), mode="area")
    assert model.style(small, "anime").shape == (4, 6)  # any size is resized to style_resolution


def test_attribute_loss_and_classification_targets_against_a_manual_reference():
    schema = AttributeSchema(SCHEMA)
    logits = torch.randn(3, 5)
    labels = torch.tensor([[2, -1], [0, 1], [-1, -1]])
    expected = (F.cross_entropy(logits[:2, :3], torch.tensor([2, 0])) + F.cross_entropy(logits[1:2, 3:], torch.tensor([1]))) / 2
    torch.testing.assert_close(attribute_loss(schema, logits, labels), expected)
    assert attribute_loss(schema, logits, torch.full((3, 2), -1)) is None
    assert attribute_loss(schema, logits, None) is None

    model = TwinGAN(tiny_cfg(attributes=SCHEMA))
    reals = [torch.zeros(3, 3, 4, 4), torch.zeros(3, 3, 4, 4)]
    source = torch.tensor([[0, 0], [1, 1], [2, -1]])
    target = torch.tensor([[1, 1], [2, 0], [0, 1]])
    inputs = draw_inputs(model, reals, [source, target], torch.Generator().manual_seed(0))
    rolled = target.roll(1, 0)
    chosen = inputs.targets[1]
    assert torch.equal((chosen >= 0), (chosen == rolled)) and ((chosen == -1) | (chosen == rolled)).all()
    wanted = classification_targets(inputs, 0, 1)
    assert torch.equal(wanted, torch.where(chosen >= 0, chosen, source))
    assert not torch.equal(chosen[1], chosen[0])  # so that pairing the rows changes something
    paired = torch.stack([chosen[0], chosen[0], chosen[2]])  # faces drawn from noise: rows 2k and 2k+1 share 2k's
    assert torch.equal(classification_targets(inputs, None, 1), paired)
    assert torch.equal(generation_condition(model, inputs, 1), model.condition(3, labels=paired))


def test_reference_rows_take_the_references_labels_and_plain_rows_the_sources():
    model = TwinGAN(tiny_cfg(style_dim=4, attributes=SCHEMA))
    reals = [torch.rand(4, 3, 16, 16) * 2 - 1 for _ in range(2)]
    source = torch.tensor([[0, 0], [1, 1], [2, 0], [0, -1]])
    target = torch.tensor([[1, 1], [2, 0], [0, 1], [1, 0]])
    inputs = draw_inputs(model, reals, [source, target], torch.Generator().manual_seed(3), plain_probability=0.5)
    rows = inputs.styled[1]
    assert 0 < int(rows.sum()) < 4  # this seed draws both kinds of row
    chosen = inputs.targets[1]
    fallback = torch.where(rows.unsqueeze(1), target.roll(1, 0), source)
    assert torch.equal(classification_targets(inputs, 0, 1), torch.where(chosen >= 0, chosen, fallback))
    unlabelled = draw_inputs(model, reals, [source, None], torch.Generator().manual_seed(3), plain_probability=0.5)
    assert unlabelled.targets[1] is None and classification_targets(unlabelled, 0, 1) is None

    cond, style = translation_condition(model, inputs, 1)
    expected = model.style(reals[1].roll(1, 0), 1) * rows.unsqueeze(1)
    torch.testing.assert_close(style, expected)
    assert torch.equal(style[~rows], torch.zeros_like(style[~rows]))
    torch.testing.assert_close(cond[:, :4], expected)


def test_recolouring_by_a_third_turn_permutes_the_channels():
    """A hue rotation of exactly 120 degrees maps R -> G -> B for every colour (the HSV hexcone's symmetry)."""
    model = TwinGAN(tiny_cfg(style_dim=4))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    inputs = draw_inputs(model, [x, x], None, torch.Generator().manual_seed(0))
    inputs.recolour[0] = torch.tensor([[2 * torch.pi / 3, 1.0], [-2 * torch.pi / 3, 1.0], [0.0, 0.0]])
    out = recoloured(inputs, 0)
    torch.testing.assert_close(out[0], x[0].roll(1, 0), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], x[1].roll(-1, 0), atol=1e-4, rtol=0)
    value = x[2].max(dim=0).values  # saturation 0 in HSV: every channel becomes the value, max(R, G, B)
    torch.testing.assert_close(out[2], value.expand(3, -1, -1), atol=1e-4, rtol=0)
    assert TwinGAN(tiny_cfg()).style_encoder is None
    with pytest.raises(ValueError, match="no style encoder"):
        recoloured(draw_inputs(TwinGAN(tiny_cfg()), [x, x]), 0)


def test_recolour_loss_is_the_restoration_error_from_the_own_style():
    torch.manual_seed(0)
    cfg = tiny_cfg(style_dim=4)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    reals = [torch.rand(2, 3, 16, 16) * 2 - 1 for _ in range(2)]
    inputs = draw_inputs(model, reals, None, torch.Generator().manual_seed(1))
    _, logs = TranslationLosses(build_objective("hinge"), LossWeights(recolour=2.0)).generator_loss(model, discs, inputs)
    expected = []  # training mode, as the loss: batch statistics, so the numbers repeat
    for d, x in enumerate(reals):
        restored = model.decode(*model.encode(recoloured(inputs, d), d), d, model.condition(2, style=model.style(x, d)))
        expected.append(F.l1_loss(restored, x))
    torch.testing.assert_close(logs["g_recolour"], torch.stack(expected).mean().detach())
    _, off = TranslationLosses(build_objective("hinge"), LossWeights()).generator_loss(model, discs, inputs)
    assert "g_recolour" not in off


def test_every_mode_trains_its_own_parts():
    """One loss evaluation with generation, style and attributes on: each new part receives gradient."""
    torch.manual_seed(0)
    cfg = ModelConfig(resolution=8, max_channels=8, fmap_base=32, noise_dim=8, style_dim=4, attributes=SCHEMA)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    model.set_progress(8, 0.5)  # fading in: every generator layer is in use
    discs.set_progress(8, 0.5)
    losses = TranslationLosses(build_objective("dragan"), LossWeights())
    gen = torch.Generator().manual_seed(1)
    reals = [torch.rand(4, 3, 8, 8) * 2 - 1 for _ in range(2)]
    labels = [torch.tensor([[0, 1], [1, -1], [2, 0], [-1, -1]]), None]
    inputs = draw_inputs(model, reals, labels, gen)
    d_loss, d_logs = losses.discriminator_loss(model, discs, inputs, gen)
    assert "d_attr" in d_logs and torch.isfinite(d_loss)
    d_loss.backward()
    assert discs.nets[0].fc.weight.grad[1:].abs().sum() > 0  # the attribute head learns from labelled reals
    model.zero_grad()
    for p in model.generator.parameters():  # let the modulation pass gradient to the style encoder
        if p.dim() == 2 and p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)
    g_loss, g_logs = losses.generator_loss(model, discs, inputs)
    for key in ("g_gen", "g_style", "g_diversity", "g_attr", "g_adv", "g_cycle", "g_recon"):
        assert key in g_logs, key
    g_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mapping.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.style_encoder.heads.parameters())
    modulations = [m.linear.weight for m in model.generator.modules() if m.__class__.__name__ == "NormModulation"]
    assert modulations and all(w.grad is not None and w.grad.abs().sum() > 0 for w in modulations)


def test_one_domain_with_generation_only():
    cfg = ModelConfig(domains=("anime",), resolution=8, max_channels=8, fmap_base=32, noise_dim=4)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    losses = TranslationLosses(build_objective("hinge"), LossWeights(reconstruction=0.0))
    reals = [torch.rand(2, 3, 8, 8)]
    assert losses.has_discriminator_terms(model, 1)
    loss, logs = losses.generator_loss(model, discs, draw_inputs(model, reals, None, torch.Generator()))
    assert set(logs) == {"g_gen", "g_total"}  # reconstruction weight 0: not even computed
    torch.testing.assert_close(logs["g_total"], logs["g_gen"])
    plain = TwinGAN(ModelConfig(domains=("anime",), resolution=8, max_channels=8, fmap_base=32))
    assert not losses.has_discriminator_terms(plain, 1)


def test_generate_anime_experiment_trains_one_domain_from_noise(synthetic_root, tmp_path):
    """experiment=generate_anime: one domain, no translation, only the generation loss; the checkpoint draws faces."""
    import json

    from helpers import tiny_run_overrides
    from twingan.checkpoint import load_translator
    from twingan.training import train

    overrides = tiny_run_overrides(synthetic_root, tmp_path / "run", "model.noise_dim=8", "model.mapping_hidden=16")
    overrides[0] = "experiment=generate_anime"
    checkpoint = train(overrides)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "g_gen" in r]
    # reconstruction weight 0 in this experiment: the generation loss, the mode-seeking term (weight 5) and the
    # hair/eye classification of the generated faces (weight 1; absent on a step whose targets name nothing) only
    assert losses and all(
        r["g_total"] == pytest.approx(r["g_gen"] + 5.0 * r["g_mode_seeking"] + r.get("g_attr", 0.0)) for r in losses
    )
    assert any("g_attr" in r for r in losses)
    assert all("g_adv" not in r for r in records)
    model, meta = load_translator(checkpoint)
    assert model.domains == ("anime",) and meta["model_config"]["noise_dim"] == 8
    assert model.attribute_schema.names == ("hair", "eyes")
    with torch.no_grad():
        faces = model.generate(model.noise(3, torch.Generator().manual_seed(0)), "anime")
    assert faces.shape == (3, 3, 16, 16) and faces.std() > 0.05


def test_resume_is_exact_with_every_mode_on(synthetic_root, tmp_path):
    """Noise, references and attribute targets are drawn from the saved generator: a stopped and resumed run
    reaches the same weights as an uninterrupted one."""
    from helpers import tiny_run_overrides
    from twingan.checkpoint import load_tensors
    from twingan.data.synthetic import HAIR_COLOUR_NAMES
    from twingan.training import train

    modes = ["model.noise_dim=8", "model.mapping_hidden=16", "model.style_dim=4",
             "model.attributes={hair:[" + ",".join(HAIR_COLOUR_NAMES) + "]}"]
    reference = train(tiny_run_overrides(synthetic_root, tmp_path / "a", *modes))
    train(tiny_run_overrides(synthetic_root, tmp_path / "b", *modes, "train.max_images=16"))
    resumed = train(tiny_run_overrides(synthetic_root, tmp_path / "b", *modes, "resume=auto"))
    assert reference.name == resumed.name
    a, b = load_tensors(reference), load_tensors(resumed)
    assert a.keys() == b.keys() and any(k.startswith("model.mapping.") for k in a)
    for key in a:
        if key.startswith(("model.", "ema.", "disc.", "optim.")):
            assert torch.equal(a[key], b[key]), key


def test_generation_keeps_its_own_running_statistics():
    """With batch norm, faces from noise (no skips) and translations update different statistics sets of the
    generator's norms."""
    torch.manual_seed(0)
    model = TwinGAN(tiny_cfg(noise_dim=8, norm="batch")).train()
    model.set_progress(8)
    norm = model.generator.blocks["4"].conv0.norm
    assert norm.running_mean.shape[0] == 4  # 2 domains x (translation, generation)
    before = norm.running_mean.clone()
    model.generate(model.noise(4, torch.Generator().manual_seed(0)), "anime")
    changed = (norm.running_mean != before).any(dim=1)
    assert changed.tolist() == [False, False, False, True]  # generation set of domain 1 only
    before = norm.running_mean.clone()
    model.translate(torch.randn(4, 3, 8, 8), "human", "anime")
    assert (norm.running_mean != before).any(dim=1).tolist() == [False, True, False, False]
    assert model.encoder.blocks["4"].conv0.norm.running_mean.shape[0] == 2  # the encoder has one set
    assert TwinGAN(tiny_cfg(norm="batch")).generator.blocks["4"].conv0.norm.running_mean.shape[0] == 2


def test_attribute_prior_counts_known_labels_and_sampling_follows_it():
    model = TwinGAN(tiny_cfg(noise_dim=8, attributes=SCHEMA))
    even = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1 / 2, 1 / 2])
    assert torch.equal(model.attribute_prior, torch.stack([even, even]))  # before training: every value as likely
    labels = torch.tensor([[0, -1], [2, -1], [2, -1], [-1, -1], [2, -1]])
    model.set_attribute_prior("anime", labels)
    torch.testing.assert_close(model.attribute_prior[1], torch.tensor([0.25, 0.0, 0.75, 0.5, 0.5]))  # eyes unknown
    torch.testing.assert_close(model.attribute_prior[0], even)
    drawn = model.sample_labels(4000, "anime", torch.Generator().manual_seed(0))
    assert drawn.shape == (4000, 2) and not (drawn[:, 0] == 1).any()  # never a value the labels never show
    torch.testing.assert_close(torch.bincount(drawn[:, 0], minlength=3) / 4000.0, torch.tensor([0.25, 0.0, 0.75]),
                               atol=0.03, rtol=0)
    torch.testing.assert_close(torch.bincount(drawn[:, 1], minlength=2) / 4000.0, torch.tensor([0.5, 0.5]),
                               atol=0.03, rtol=0)
    few = model.sample_labels(3, "anime", torch.Generator().manual_seed(0))
    assert torch.equal(few, drawn[:3])  # row i does not depend on how many are drawn
    with pytest.raises(ValueError, match="has 3 values"):
        model.set_attribute_prior("anime", torch.tensor([[3, 0]]))
    with pytest.raises(ValueError, match="without attributes"):
        TwinGAN(tiny_cfg(noise_dim=8)).sample_labels(1, "anime")


def test_generate_anime_on_unlabelled_images_says_how_to_go_without_attributes(tmp_path):
    """The experiment conditions on hair/eye labels; a folder without labels.csv gets told its two ways out."""
    from PIL import Image

    from twingan.errors import ConfigError
    from twingan.training import Trainer, compose_config

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / f"{i}.png")
    overrides = ["experiment=generate_anime", "data.synthetic=null", f"data.domains.anime.root={folder}",
                 f"run_dir={tmp_path / 'run'}", "data.domains.anime.profile=none"]
    with pytest.raises(ConfigError, match=r"no dataset has labels.*labels\.csv.*model\.attributes=null"):
        Trainer(compose_config(overrides))
    trainer = Trainer(compose_config([*overrides, "model.attributes=null"]))
    assert not trainer.model.attribute_schema and trainer.labels is None
