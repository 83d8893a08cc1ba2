"""Batch augmentation (kornia) and the progressive-growing blend of real images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from twingan.data.augment import Augment, progressive_blend


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramps(batch: int, size: int) -> torch.Tensor:
    """Channel 0 = x coordinate, channel 1 = y coordinate, both mapped from 0..size-1 to [-1, 1]."""
    line = torch.arange(size, dtype=torch.float32) / (size - 1) * 2 - 1
    x = line.view(1, 1, 1, size).expand(batch, 1, size, size)
    y = line.view(1, 1, size, 1).expand(batch, 1, size, size)
    return torch.cat([x, y, torch.zeros_like(x)], dim=1)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("size_in, size_out", [(32, 32), (64, 32), (16, 32)])
def test_output_shape_dtype_and_range(dtype: torch.dtype, size_in: int, size_out: int) -> None:
    if dtype == torch.uint8:
        images = torch.randint(0, 256, (5, 3, size_in, size_in), dtype=torch.uint8, generator=seeded(0))
    else:
        images = torch.rand(5, 3, size_in, size_in, generator=seeded(0)) * 2 - 1
    out = Augment(size_out, brightness=0.2, saturation=0.3)(images, seeded(1))
    assert out.shape == (5, 3, size_out, size_out) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out.std() > 0.05  # still a picture, not a constant


def test_no_op_settings_return_the_input_in_minus_one_one() -> None:
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=seeded(0))
    out = Augment(16, crop_min=1.0, flip=False, brightness=0.0, saturation=0.0)(images, seeded(0))
    assert torch.allclose(out, images.float() / 127.5 - 1.0, atol=1e-6)


def test_same_seed_same_result_and_global_rng_is_seedable() -> None:
    images = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8, generator=seeded(0))
    augment = Augment(24, brightness=0.1, saturation=0.2)
    assert torch.equal(augment(images, seeded(7)), augment(images, seeded(7)))
    assert not torch.equal(augment(images, seeded(7)), augment(images, seeded(8)))
    torch.manual_seed(3)
    first = augment(images)
    torch.manual_seed(3)
    assert torch.equal(first, augment(images))


def test_flips_are_mirrors_chosen_by_the_seed() -> None:
    images = torch.rand(32, 3, 8, 8, generator=seeded(0)) * 2 - 1
    augment = Augment(8, crop_min=1.0, flip=True, brightness=0.0, saturation=0.0)
    out = augment(images, seeded(5))
    flips = augment.sample(32, seeded(5)).flip
    assert 4 <= int(flips.sum()) <= 28
    for image, result, flipped in zip(images, out, flips):
        expected = image.flip(-1) if flipped else image
        assert torch.allclose(result, expected, atol=1e-5)


def test_a_mirrored_crop_is_the_mirror_of_the_same_crop() -> None:
    images = torch.rand(16, 3, 16, 16, generator=seeded(0)) * 2 - 1
    augment = Augment(16, crop_min=0.8, flip=True, brightness=0.0, saturation=0.0)
    params = augment.sample(16, seeded(3))
    assert params.flip.any() and not params.flip.all()
    mirrored = augment.apply(images, params)
    params.flip = torch.zeros_like(params.flip)
    plain = augment.apply(images, params)
    for flipped, m, p in zip(augment.sample(16, seeded(3)).flip, mirrored, plain):
        assert torch.allclose(m, p.flip(-1) if flipped else p, atol=1e-5)


def test_crops_stay_inside_the_image_with_side_fraction_in_bounds() -> None:
    size, crop_min = 64, 0.8
    out = Augment(size, crop_min=crop_min, flip=False, brightness=0.0, saturation=0.0)(ramps(200, size), seeded(2))
    coords = (out[:, :2] + 1) / 2 * (size - 1)  # back to source pixel-centre coordinates
    # Output pixel j samples the crop [x0, x0 + s] at centre x0 + (j + 1/2) s / R - 1/2; columns 1 and
    # R - 2 always fall between source pixel centres, so the ramp gives them exactly.
    second_x, before_last_x = coords[:, 0, 0, 1], coords[:, 0, 0, -2]
    second_y, before_last_y = coords[:, 1, 1, 0], coords[:, 1, -2, 0]
    side_x = (before_last_x - second_x) * size / (size - 3)
    side_y = (before_last_y - second_y) * size / (size - 3)
    assert torch.allclose(side_x, side_y, atol=1e-3)  # square crops
    fraction = side_x / size
    assert fraction.min() >= crop_min - 1e-4 and fraction.max() <= 1 + 1e-4
    assert fraction.min() < crop_min + 0.02 and fraction.max() > 0.98  # the whole range is used
    for second, side in ((second_x, side_x), (second_y, side_y)):
        start = second - 1.5 * side / size + 0.5
        assert start.min() >= -1e-3 and (start + side).max() <= size + 1e-3
    # Crops touching the border read the border pixel there, never black padding.
    assert coords[:, :2].max() > size - 1.01 and coords[:, :2].min() > -0.01


def test_brightness_and_saturation_jitter() -> None:
    grey = torch.full((16, 3, 8, 8), 0.0)
    augment = Augment(8, crop_min=1.0, flip=False, brightness=0.2, saturation=0.5)
    params = augment.sample(16, seeded(4))
    out = augment.apply(grey, params)
    # Grey has no saturation to change; brightness adds b on the [0, 1] scale, i.e. 2b on [-1, 1].
    assert torch.allclose(out[:, :, 0, 0], (2 * params.brightness).float().view(-1, 1).expand(16, 3), atol=1e-5)
    assert params.brightness.abs().max() <= 0.2 and params.saturation.min() >= 0.5 and params.saturation.max() <= 1.5
    colour = torch.tensor([0.6, -0.2, -0.6]).view(1, 3, 1, 1).expand(16, 3, 8, 8)
    saturated = Augment(8, crop_min=1.0, flip=False, brightness=0.0, saturation=0.5).apply(colour, params)
    # Saturation scales each pixel's distance from its grey (luma) value: the channel spread 1.2 becomes 1.2 s.
    spread = saturated[:, :, 0, 0].max(1).values - saturated[:, :, 0, 0].min(1).values
    assert torch.allclose(spread, 1.2 * params.saturation.float(), atol=1e-4)
    luma = torch.tensor([0.299, 0.587, 0.114])
    assert torch.allclose((saturated[:, :, 0, 0] + 1) / 2 @ luma, ((colour[0, :, 0, 0] + 1) / 2 @ luma).expand(16), atol=1e-4)


def numpy_blend(x: np.ndarray, alpha: float) -> np.ndarray:
    n, c, h, w = x.shape
    low = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
    up = low.repeat(2, axis=2).repeat(2, axis=3)
    return alpha * x + (1 - alpha) * up


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.75])
def test_progressive_blend_matches_a_float64_reference(alpha: float) -> None:
    x = torch.rand(2, 3, 8, 8, generator=seeded(0), dtype=torch.float64) * 2 - 1
    assert np.allclose(progressive_blend(x, alpha).numpy(), numpy_blend(x.numpy(), alpha), atol=1e-12)


def test_progressive_blend_alpha_one_is_identity_and_per_image_alpha() -> None:
    x = torch.rand(3, 3, 8, 8, generator=seeded(1)) * 2 - 1
    assert torch.equal(progressive_blend(x, 1.0), x)
    alphas = torch.tensor([0.0, 0.5, 1.0])
    blended = progressive_blend(x, alphas)
    for i, alpha in enumerate(alphas.tolist()):
        assert np.allclose(blended[i].numpy(), numpy_blend(x[i:i + 1].double().numpy(), alpha)[0], atol=1e-6)
    with pytest.raises(ValueError):
        progressive_blend(x, 1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batches_give_the_cpu_result() -> None:
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=seeded(0))
    augment = Augment(32, brightness=0.1, saturation=0.2)
    cpu = augment(images, seeded(9))
    gpu = augment(images.cuda(), seeded(9))
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)
