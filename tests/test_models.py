"""The TwinGAN networks: shapes, progressive growing, domain separation, building blocks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from twingan.models import Discriminators, DomainBatchNorm2d, DomainNorm2d, ModelConfig, TwinGAN, channels_at
from twingan.models.layers import MinibatchStdDev, PixelNorm, ScaledConv2d, downsample2x, upsample2x

DOMAINS = ("human", "anime", "cat")


def tiny_config(resolution=256, **kw):
    return ModelConfig(domains=DOMAINS, resolution=resolution, max_channels=16, fmap_base=64, **kw)


def randomize_norms(module, seed=0):
    """Give every domain its own gamma/beta (as training would), so domains really differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (DomainBatchNorm2d, DomainNorm2d)):
                m.weight.copy_(1.0 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))


def test_channel_rule_matches_the_original():
    assert [channels_at(r) for r in (4, 8, 16, 32, 64, 128, 256)] == [256, 256, 256, 128, 64, 32, 16]
    assert [channels_at(r, max_channels=64) for r in (4, 32, 64, 128, 256)] == [64, 64, 64, 32, 16]


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64, 128, 256])
def test_shapes_at_every_resolution_for_every_domain(resolution):
    cfg = tiny_config()
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    model.set_progress(resolution, 0.5)
    discs.set_progress(resolution, 0.5)
    x = torch.randn(2, 3, resolution, resolution)
    for src in range(len(DOMAINS)):
        latent, skips = model.encode(x, src)
        assert latent.shape == (2, cfg.channels(4), 4, 4)
        assert sorted(skips) == [r for r in cfg.resolutions if 4 < r <= resolution]
        for r, s in skips.items():
            assert s.shape == (2, cfg.channels(r // 2), r, r)
        for dst in DOMAINS:
            assert model.decode(latent, skips, dst).shape == x.shape
        assert discs(x, src).shape == (2, 1)
        full, pooled = model.embed(x, src, "full"), model.embed(x, src, "pooled")
        assert full.shape == (2, cfg.channels(4) * 16) and pooled.shape == (2, cfg.channels(4))
        torch.testing.assert_close(full.norm(dim=1), torch.ones(2))


def test_wrong_input_size_is_a_clear_error():
    model = TwinGAN(tiny_config(32))
    model.set_progress(16)
    with pytest.raises(ValueError, match=r"\(N, 3, 16, 16\)"):
        model.encode(torch.randn(1, 3, 32, 32), "human")
    with pytest.raises(ValueError, match="unknown domain"):
        model.encode(torch.randn(1, 3, 16, 16), "dog")


@pytest.mark.parametrize("resolution", [8, 32, 64])
def test_fade_in_at_alpha_zero_equals_the_upsampled_previous_resolution(resolution):
    torch.manual_seed(1)
    cfg = tiny_config(64)
    model, discs = TwinGAN(cfg).double(), Discriminators(cfg).double()
    randomize_norms(model)
    x = torch.randn(4, 3, resolution, resolution, dtype=torch.float64)
    model.set_progress(resolution // 2, 1.0)
    discs.set_progress(resolution // 2, 1.0)
    previous = model.translate(downsample2x(x), "human", "anime")
    previous_logits = discs(downsample2x(x), 1)
    model.set_progress(resolution, 0.0)
    discs.set_progress(resolution, 0.0)
    torch.testing.assert_close(model.translate(x, "human", "anime"), upsample2x(previous), rtol=0, atol=1e-12)
    torch.testing.assert_close(discs(x, 1), previous_logits, rtol=0, atol=1e-12)


def test_at_alpha_one_the_old_path_has_no_effect():
    torch.manual_seed(2)
    cfg = tiny_config(32)
    model, discs = TwinGAN(cfg), Discriminators(cfg)
    x = torch.randn(4, 3, 32, 32)
    model.set_progress(32, 1.0)
    discs.set_progress(32, 1.0)
    before, before_d = model.translate(x, 0, 1), discs(x, 0)
    with torch.no_grad():
        model.encoder.from_rgb["16"].conv.weight.mul_(3.0)
        model.generator.to_rgb["16"].conv.weight.mul_(-2.0)
        discs.nets[0].from_rgb["16"].weight.mul_(3.0)
    torch.testing.assert_close(model.translate(x, 0, 1), before)
    torch.testing.assert_close(discs(x, 0), before_d)
    model.set_progress(32, 0.5)
    discs.set_progress(32, 0.5)
    assert not torch.allclose(model.translate(x, 0, 1), before)
    assert not torch.allclose(discs(x, 0), before_d)


def test_fade_in_is_a_linear_blend_of_the_two_paths():
    torch.manual_seed(3)
    model = TwinGAN(tiny_config(16)).eval()
    randomize_norms(model)
    x = torch.randn(2, 3, 16, 16)
    outs = {}
    for a in (0.0, 0.25, 1.0):
        model.set_progress(16, a)
        outs[a] = model.generator(*model.encoder(x, 0), 1)
    # The encoder is blended too, so only the endpoints are pure; at alpha the generator output
    # is a lerp of the two to_rgb paths computed on the blended encoding.
    model.set_progress(16, 0.25)
    latent, skips = model.encode(x, 0)
    model.generator.set_progress(16, 1.0)
    new = model.generator(latent, skips, 1)
    model.generator.set_progress(8, 1.0)
    old = upsample2x(model.generator(latent, {8: skips[8]}, 1))
    torch.testing.assert_close(outs[0.25], 0.25 * new + 0.75 * old, rtol=1e-5, atol=1e-5)


def _norm_layers(model):
    return [m for m in model.modules() if isinstance(m, (DomainBatchNorm2d, DomainNorm2d))]


@pytest.mark.parametrize("norm", ["affine", "layer", "batch"])
def test_domain_separation_of_gradients_and_running_statistics(norm):
    torch.manual_seed(4)
    model = TwinGAN(tiny_config(16, norm=norm))
    model.set_progress(16)
    layers = _norm_layers(model)
    assert {type(m) for m in layers} == {DomainBatchNorm2d if norm == "batch" else DomainNorm2d}
    stats_before = [(m.running_mean.clone(), m.running_var.clone()) if norm == "batch" else None for m in layers]
    x = torch.randn(4, 3, 16, 16)
    loss = model.reconstruct(x, "anime").pow(2).mean()
    loss.backward()
    a, others = 1, [0, 2]
    used = 0
    for m, stats in zip(layers, stats_before):
        if stats is not None:
            mean0, var0 = stats
            assert torch.equal(m.running_mean[others], mean0[others]) and torch.equal(m.running_var[others], var0[others])
        if m.weight.grad is None:  # a layer of another resolution, not on this forward path
            assert stats is None or torch.equal(m.running_mean, stats[0])
            continue
        used += 1
        assert m.weight.grad[others].abs().max() == 0 and m.bias.grad[others].abs().max() == 0
        assert stats is None or not torch.equal(m.running_mean[a], stats[0][a])
        assert m.weight.grad[a].abs().sum() > 0
    assert used == 1 + 2 * 3 + 2 * 3  # from_rgb 16, three encoder and three generator blocks (RGB output: no norm)


@pytest.mark.parametrize("norm", ["affine", "layer"])
def test_per_image_norms_do_not_depend_on_the_rest_of_the_batch(norm):
    torch.manual_seed(8)
    model = TwinGAN(tiny_config(16, norm=norm)).double().train()
    randomize_norms(model)
    model.set_progress(16)
    x = torch.randn(5, 3, 16, 16, dtype=torch.float64)
    together = model.translate(x, "human", "cat")
    alone = torch.cat([model.translate(x[i:i + 1], "human", "cat") for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)
    model.eval()
    torch.testing.assert_close(model.translate(x, "human", "cat"), together)


def test_domain_norm_kinds_match_their_formulas_in_float64():
    torch.manual_seed(9)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64) * 2 + 1
    for kind in ("affine", "layer"):
        norm = DomainNorm2d(4, 2, kind).double()
        with torch.no_grad():
            norm.weight.copy_(torch.randn(2, 4))
            norm.bias.copy_(torch.randn(2, 4))
        if kind == "layer":
            flat = x.reshape(3, -1)
            x_hat = ((flat - flat.mean(1, keepdim=True)) / torch.sqrt(flat.var(1, unbiased=False, keepdim=True)
                                                                     + norm.eps)).reshape(x.shape)
        else:
            x_hat = x
        expected = x_hat * norm.weight[1][None, :, None, None] + norm.bias[1][None, :, None, None]
        torch.testing.assert_close(norm(x, 1), expected)
        dgamma, dbeta = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
        modulated = x_hat * (norm.weight[1] + dgamma)[:, :, None, None] + (norm.bias[1] + dbeta)[:, :, None, None]
        torch.testing.assert_close(norm(x, 1, (dgamma, dbeta)), modulated)
    with pytest.raises(ValueError, match="'affine' or 'layer'"):
        DomainNorm2d(4, 2, "instance")


def test_norm_settings_are_checked():
    with pytest.raises(ValueError, match="model.norm must be one of affine, layer, batch"):
        tiny_config(16, norm="instance")
    with pytest.raises(ValueError, match="batch_renorm applies to batch normalisation only"):
        tiny_config(16, batch_renorm=True)
    with pytest.raises(ValueError, match="sync_bn applies to batch normalisation only"):
        tiny_config(16, norm="layer", sync_bn=True)


def test_switching_the_domain_changes_the_output():
    torch.manual_seed(5)
    model = TwinGAN(tiny_config(16)).eval()
    randomize_norms(model)
    model.set_progress(16)
    x = torch.randn(2, 3, 16, 16)
    outs = [model.translate(x, "human", d) for d in DOMAINS]
    assert (outs[0] - outs[1]).abs().mean() > 1e-2 and (outs[1] - outs[2]).abs().mean() > 1e-2
    assert (model.embed(x, 0) - model.embed(x, 1)).abs().max() > 1e-3


def test_domain_batch_norm_matches_torch_batch_norm_per_domain():
    torch.manual_seed(6)
    norm = DomainBatchNorm2d(5, 3)
    reference = torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        norm.weight[2].copy_(torch.randn(5))
        norm.bias[2].copy_(torch.randn(5))
        reference.weight.copy_(norm.weight[2])
        reference.bias.copy_(norm.bias[2])
    x = torch.randn(6, 5, 3, 3) * 2 + 1
    fast = norm(x, 2)
    manual = DomainBatchNorm2d(5, 3)
    manual.load_state_dict(norm.state_dict())
    with torch.no_grad():
        manual.running_mean.zero_()
        manual.running_var.fill_(1.0)
    slow = manual._manual_train_forward(x, 2, manual.weight[2], manual.bias[2])
    expected = reference(x)
    torch.testing.assert_close(fast, expected)
    torch.testing.assert_close(slow, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.running_mean[2], reference.running_mean)
    torch.testing.assert_close(norm.running_var[2], reference.running_var)
    torch.testing.assert_close(manual.running_var[2], reference.running_var)
    norm.eval(), reference.eval()
    torch.testing.assert_close(norm(x, 2), reference(x))


def test_batch_renorm_corrects_towards_running_statistics():
    torch.manual_seed(7)
    norm = DomainBatchNorm2d(4, 2, renorm=True, momentum=0.0, rmax=100.0, dmax=100.0)
    with torch.no_grad():
        norm.running_mean[0].fill_(0.5)
        norm.running_var[0].fill_(4.0)
    x = torch.randn(8, 4, 4, 4) * 3 + 2
    out = norm(x, 0)
    # With r, d unclipped, renorm's output is exactly the inference-time normalisation by running stats.
    expected = (x - 0.5) / torch.sqrt(torch.tensor(4.0 + norm.eps))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_minibatch_stddev_against_numpy():
    x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    out = MinibatchStdDev(group_size=4)(x)
    xs = x.numpy().reshape(4, 2, 3, 2, 2)
    std = np.sqrt(xs.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))
    expected = np.tile(std, 4)
    np.testing.assert_allclose(out[:, 3, 0, 0].numpy(), expected)
    assert MinibatchStdDev(4)(torch.randn(3, 2, 4, 4)).shape == (3, 3, 4, 4)


def test_pixel_norm_and_equalized_conv():
    x = torch.randn(2, 6, 3, 3)
    y = PixelNorm()(x)
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(2, 3, 3), rtol=1e-4, atol=1e-4)
    conv = ScaledConv2d(6, 4, 3, padding=1, equalized=True)
    expected = F.conv2d(x, conv.weight * np.sqrt(2.0 / 54), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    assert abs(conv.weight.std().item() - 1.0) < 0.2


def test_equalized_lr_builds_and_runs():
    cfg = tiny_config(16, equalized_lr=True, norm="batch", batch_renorm=True)
    model = TwinGAN(cfg)
    model.set_progress(16)
    out = model.translate(torch.randn(2, 3, 16, 16), 0, 1)
    assert torch.isfinite(out).all()


def test_summary_command_prints_the_parameter_table(capsys):
    from twingan.cli.main import main

    assert main(["summary", "--resolution", "256", "--max-channels", "256"]) == 0
    out = capsys.readouterr().out
    cfg = ModelConfig(resolution=256, max_channels=256)
    model, disc = TwinGAN(cfg), Discriminators(cfg).nets[0]
    expected = sum(p.numel() for p in model.parameters()) + 2 * sum(p.numel() for p in disc.parameters())
    assert f"all, with 2 discriminators{expected:>14,}".replace(" ", "") in out.replace(" ", "")
    assert "encoder.blocks.256.conv0.conv.weight" in out and "16x16x3x3" in out
    assert "4:256, 8:256, 16:256, 32:128, 64:64, 128:32, 256:16" in out
    assert main(["summary", "--resolution", "100"]) == 1


def test_checkpoints_that_record_the_retired_extra_key_still_load(tmp_path):
    """ModelConfig.extra was never read and is gone; older checkpoints store it, always empty."""
    from twingan.checkpoint import load_translator, read_meta, save_checkpoint, stored_model_config
    from twingan.errors import CheckpointError

    cfg = ModelConfig(domains=("a", "b"), resolution=8, max_channels=8, fmap_base=32)
    assert "extra" not in cfg.to_dict() and not hasattr(cfg, "extra")
    model = TwinGAN(cfg)
    tensors = {f"ema.{name}": value for name, value in model.state_dict().items()}
    old = save_checkpoint(tmp_path / "old.safetensors", tensors, {"model_config": {**cfg.to_dict(), "extra": {}}})
    assert read_meta(old)["model_config"]["extra"] == {}
    assert stored_model_config(read_meta(old), old) == cfg  # what resuming a training checkpoint compares
    loaded, _ = load_translator(old)
    assert loaded.cfg == cfg
    odd = save_checkpoint(tmp_path / "odd.safetensors", tensors, {"model_config": {**cfg.to_dict(), "extra": {"x": 1}}})
    with pytest.raises(CheckpointError, match=r"invalid model_config in the checkpoint \(unknown model config keys: \['extra'\]"):
        load_translator(odd)


def test_skips_stop_at_skip_max_resolution():
    """With skip_max_resolution=16 the 32 and 64 px blocks take no skip: changing those skips changes nothing,
    changing the 16 px skip does; the blocks above 16 px are built without skip channels."""
    torch.manual_seed(0)
    model = TwinGAN(tiny_config(64, skip_max_resolution=16)).eval()
    randomize_norms(model)
    latent, skips = model.encode(torch.randn(2, 3, 64, 64), 0)
    out = model.decode(latent, skips, 1)
    for res in (32, 64):
        changed = {**skips, res: torch.randn_like(skips[res])}
        assert torch.equal(model.decode(latent, changed, 1), out)
        assert model.generator.blocks[str(res)].skip_channels == 0
    changed = {**skips, 16: torch.randn_like(skips[16])}
    assert not torch.allclose(model.decode(latent, changed, 1), out)
    without_high = {r: s for r, s in skips.items() if r <= 16}
    assert torch.equal(model.decode(latent, without_high, 1), out)
    with pytest.raises(ValueError, match=r"skips missing for resolutions \[16\]"):
        model.decode(latent, {8: skips[8]}, 1)


def test_skip_max_resolution_4_is_a_plain_encoder_decoder():
    model = TwinGAN(tiny_config(32, skip_max_resolution=4)).eval()
    latent, skips = model.encode(torch.randn(2, 3, 32, 32), 0)
    assert torch.equal(model.decode(latent, skips, 1), model.decode(latent, {}, 1))
    assert all(model.generator.blocks[str(r)].skip_channels == 0 for r in (8, 16, 32))


@pytest.mark.parametrize("bad", [3, 12, 0, -8])
def test_skip_max_resolution_is_checked(bad):
    with pytest.raises(ValueError, match="model.skip_max_resolution must be a power of two >= 4"):
        tiny_config(32, skip_max_resolution=bad)


def test_model_configs_without_skip_max_resolution_keep_every_skip():
    """Checkpoints written before the setting existed have no such key: they load with skips everywhere."""
    data = tiny_config(32).to_dict()
    del data["skip_max_resolution"]
    cfg = ModelConfig.from_dict(data)
    assert cfg.skip_max_resolution is None and all(cfg.has_skip(r) for r in (8, 16, 32))
    assert not cfg.has_skip(4)
