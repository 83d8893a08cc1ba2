"""Inference statistics measured on real images: the embedding's latent statistics and exact batch-norm statistics."""
import pytest
import torch
import torch.nn.functional as F

from twingan.models import ModelConfig, TwinGAN
from twingan.training.calibration import STD_FLOOR, calibrate, calibration_indices


def tiny(norm="affine", **extra):
    cfg = ModelConfig(domains=("human", "anime"), resolution=8, max_channels=8, fmap_base=32, norm=norm, **extra)
    torch.manual_seed(0)
    return TwinGAN(cfg)


def images(seed, n=12, res=8):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_calibration_indices_spread_over_the_dataset():
    assert calibration_indices(5, 8) == [0, 1, 2, 3, 4]
    picked = calibration_indices(1000, 5)
    assert picked[0] == 0 and picked[-1] == 999 and len(set(picked)) == 5


def test_latent_statistics_and_standardised_embeddings_against_float64():
    model = tiny().double().eval()
    data = [images(1).double(), images(2).double() * 0.5 + 0.3]
    calibrate([model], data)
    for d, x in enumerate(data):
        with torch.no_grad():
            latents = model.encode(x, d)[0]
        mean = latents.mean(dim=0)
        std = latents.std(dim=0, unbiased=False)
        std = std.clamp_min(STD_FLOOR * std.mean())
        torch.testing.assert_close(model.latent_mean[d], mean)
        torch.testing.assert_close(model.latent_std[d], std)
        expected = F.normalize(((latents - mean) / std).flatten(1), dim=1)
        torch.testing.assert_close(model.embed(x, d), expected.float())
    with pytest.raises(ValueError, match="positive standard deviation"):
        model.set_latent_statistics(0, model.latent_mean[0], torch.zeros_like(model.latent_std[0]))


def test_calibration_keeps_modes_and_random_state():
    model = tiny("batch")
    model.train()
    model.generator.eval()
    state = torch.get_rng_state()
    calibrate([model], [images(3), images(4)])
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training and model.encoder.training and not model.generator.training


def test_batch_statistics_are_recomputed_from_the_inference_passes():
    """Encoder slot d from reals of d; generator slot d from translations into d (float64, by hand)."""
    model = tiny("batch").double()
    data = [images(5).double(), images(6).double() * 0.4 - 0.2]
    with torch.no_grad():  # running statistics left by training would be anything
        for m in model.modules():
            if hasattr(m, "running_mean"):
                m.running_mean.uniform_(-3, 3)
    calibrate([model], data)
    model.eval()
    first = model.encoder.from_rgb["8"]
    for d, x in enumerate(data):
        conv = first.conv(x)
        torch.testing.assert_close(first.norm.running_mean[d], conv.mean(dim=(0, 2, 3)))
        torch.testing.assert_close(first.norm.running_var[d], conv.var(dim=(0, 2, 3), unbiased=True))
    head = model.generator.blocks["4"].conv0
    for d in range(2):
        latent, _ = model.encode(data[1 - d], 1 - d)  # the encoder now in eval mode, on its calibrated statistics
        conv = head.conv(latent)
        torch.testing.assert_close(head.norm.running_mean[d], conv.mean(dim=(0, 2, 3)))


def test_batch_statistics_average_every_chunk_equally(monkeypatch):
    import twingan.training.calibration as calibration

    monkeypatch.setattr(calibration, "CALIBRATION_BATCH", 4)
    model = tiny("batch").double()
    data = [images(7).double(), images(8).double()]
    calibrate([model], data)
    first = model.encoder.from_rgb["8"]
    chunk_means = [first.conv(chunk).mean(dim=(0, 2, 3)) for chunk in data[0].split(4)]
    torch.testing.assert_close(first.norm.running_mean[0], torch.stack(chunk_means).mean(dim=0))
