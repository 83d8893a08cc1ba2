"""Augmentation of real-image batches with kornia, on whatever device the batch is on.

Random parameters are drawn on the CPU (from a ``torch.Generator`` when one
is given, else from the global torch RNG) and then moved to the batch's
device, so a given seed gives the same augmentation on CPU and GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.enhance import adjust_brightness, adjust_saturation_with_gray_subtraction
from kornia.geometry.transform import resize, warp_affine

from twingan.models.layers import downsample2x, upsample2x


@dataclass
class AugmentParams:
    """One batch's random draws: crop corner and side (fractions of the image side), flips, jitter factors."""

    crop_x: torch.Tensor
    crop_y: torch.Tensor
    crop_side: torch.Tensor
    flip: torch.Tensor
    brightness: torch.Tensor
    saturation: torch.Tensor


class Augment:
    """Random square crop + resize, horizontal flip, brightness and saturation jitter.

    Takes a square batch (N, 3, H, W), uint8 in [0, 255] or float in [-1, 1],
    and returns float32 in [-1, 1] of shape (N, 3, R, R), R = ``resolution``.
    Batches of another size are first resized to R (antialiased when
    shrinking). Per image: a square crop whose side is a fraction of the image
    side drawn uniformly from [crop_min, 1], at a uniformly drawn position
    inside the image, resized back to R (bilinear); a mirror with probability
    1/2 when ``flip``; brightness + b with b uniform in [-brightness,
    brightness]; saturation x s with s uniform in [1 - saturation, 1 +
    saturation], i.e. gray + s (pixel - gray) with gray the luma (both on
    [0, 1] pixel values, clamped).
    """

    def __init__(self, resolution: int, crop_min: float = 0.8, flip: bool = True,
                 brightness: float = 0.05, saturation: float = 0.05) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        if not 0.0 < crop_min <= 1.0:
            raise ValueError(f"crop_min must be in (0, 1], got {crop_min}")
        if brightness < 0 or saturation < 0 or saturation > 1:
            raise ValueError(f"brightness must be >= 0 and saturation in [0, 1], got {brightness}, {saturation}")
        self.resolution = int(resolution)
        self.crop_min = float(crop_min)
        self.flip = bool(flip)
        self.brightness = float(brightness)
        self.saturation = float(saturation)

    def __repr__(self) -> str:
        return (f"Augment(resolution={self.resolution}, crop_min={self.crop_min}, flip={self.flip}, "
                f"brightness={self.brightness}, saturation={self.saturation})")

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> AugmentParams:
        """Draw the random parameters of a batch on the CPU."""
        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(batch_size, generator=generator, dtype=torch.float64)

        side = uniform(self.crop_min, 1.0)
        return AugmentParams(
            crop_x=uniform(0.0, 1.0) * (1.0 - side),
            crop_y=uniform(0.0, 1.0) * (1.0 - side),
            crop_side=side,
            flip=(torch.rand(batch_size, generator=generator) < 0.5) if self.flip else torch.zeros(batch_size, dtype=torch.bool),
            brightness=uniform(-self.brightness, self.brightness),
            saturation=uniform(1.0 - self.saturation, 1.0 + self.saturation),
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(images, self.sample(images.shape[0], generator))

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment ``images`` with the given draws (see the class docstring)."""
        x = to_unit_range(images)
        size = self.resolution
        if x.shape[-1] != size:
            x = resize(x, (size, size), interpolation="bilinear", antialias=x.shape[-1] > size)
        device = x.device
        if self.crop_min < 1.0 or self.flip:
            matrices = self._crop_matrices(params, size).to(device=device, dtype=x.dtype)
            x = warp_affine(x, matrices, (size, size), mode="bilinear", padding_mode="border", align_corners=True)
        if self.brightness > 0:
            x = adjust_brightness(x, params.brightness.to(device=device, dtype=x.dtype))
        if self.saturation > 0:
            x = adjust_saturation_with_gray_subtraction(x, params.saturation.to(device=device, dtype=x.dtype))
        return x.mul(2.0).sub(1.0)

    @staticmethod
    def _crop_matrices(params: AugmentParams, size: int) -> torch.Tensor:
        """(N, 2, 3) affine maps from source pixel centres to output pixel centres: crop, resize, mirror.

        The crop covers [x0, x0 + s] in pixel-edge coordinates (s = side x R).
        Output pixel j samples the source at x0 + (j + 1/2) s / R in edge
        coordinates, i.e. at the centre coordinate c + j s / R with
        c = x0 + s / (2R) - 1/2; the map source -> output is its inverse. A crop
        touching the border may sample up to 0.1 px beyond the last pixel
        centre; that reads the border pixel (padding_mode="border"), not black.
        A mirrored image then maps output x to R - 1 - x.
        """
        scale = params.crop_side  # s / R
        first_x = params.crop_x * size + scale / 2 - 0.5
        first_y = params.crop_y * size + scale / 2 - 0.5
        mirror = params.flip.to(torch.float64) * 2.0 - 1.0  # +1 mirrored, -1 not
        matrices = torch.zeros(len(scale), 2, 3, dtype=torch.float64)
        matrices[:, 0, 0] = -mirror / scale
        matrices[:, 0, 2] = mirror * (first_x / scale) + (mirror > 0) * (size - 1.0)
        matrices[:, 1, 1] = 1.0 / scale
        matrices[:, 1, 2] = -first_y / scale
        return matrices


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] (N, 3, H, W) -> float32 [0, 1]; checks the batch shape."""
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected a square RGB batch (N, 3, H, H), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div(255.0)
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    return images.float().add(1.0).mul(0.5)


def progressive_blend(images: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Real-image fade-in: alpha * x + (1 - alpha) * up(down(x)).

    ``down`` is 2x2 average pooling and ``up`` nearest-neighbour 2x
    upsampling: the very functions (:mod:`twingan.models.layers`) the encoder
    and generator use to blend their old and new resolutions during fade-in,
    so real and generated images are softened identically. ``alpha`` is a
    number in [0, 1] or a tensor of one value per image; 1 returns ``images``.
    """
    if images.dim() != 4 or images.shape[-1] % 2 or images.shape[-2] % 2:
        raise ValueError(f"expected a batch (N, C, H, W) with even H and W, got shape {tuple(images.shape)}")
    if not torch.is_tensor(alpha):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if alpha == 1.0:
            return images
    else:
        alpha = alpha.to(device=images.device, dtype=images.dtype).reshape(-1, 1, 1, 1)
    return alpha * images + (1.0 - alpha) * upsample2x(downsample2x(images))
