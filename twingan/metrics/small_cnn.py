"""A small CNN judge fitted on a dataset's training pictures: the shared part of the independent classifiers.

The style judge (photo or anime?) and the attribute judge (which eye colour?) are
the same three-stage network fitted the same way: a fixed seed, their own random
generator (a training run's streams are never advanced), flips and a task's own
augmentation, Adam. They score what a model draws without ever having been shown
anything the model made.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import nn

from twingan.data.image_io import load_image, resize_square, uint8_to_tensor

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

BLUR_SIGMA_MAX = 0.6
NOISE_MAX = 0.05


class SmallCNN(nn.Module):
    """Three conv stages with pooling, then ``outputs`` logits from the features' global average or, with
    ``resolution`` given, from the whole (R/4 x R/4) feature map: where something is matters (an eye colour
    must not be read off green hair)."""

    def __init__(self, outputs: int, width: int = 16, resolution: int | None = None) -> None:
        super().__init__()
        self.spatial = resolution is not None
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(4 * width * ((resolution // 4) ** 2 if resolution else 1), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h.flatten(1) if self.spatial else h.mean(dim=(2, 3)))

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Logits of (N, 3, R, R) images in [-1, 1], in batches, on the CPU."""
        return torch.cat([self(chunk.float().cpu()) for chunk in images.split(batch_size)])


def load_pictures(files: Sequence[Path], resolution: int) -> torch.Tensor:
    """Pictures squared and resized like training data: (N, 3, R, R) in [-1, 1]."""
    arrays = np.stack([resize_square(load_image(f), resolution) for f in files])
    return uint8_to_tensor(torch.from_numpy(arrays).permute(0, 3, 1, 2))


def soften(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """A slight random blur and pixel noise per image, so that sharpness and grain alone (which any rendering at a
    small size can lose or gain) do not decide."""
    n = x.shape[0]
    sigma = BLUR_SIGMA_MAX * torch.rand(n, generator=rng)
    blurred = gaussian_blur2d(x, (5, 5), torch.stack([sigma, sigma], dim=1).clamp_min(1e-3))
    noise = NOISE_MAX * torch.rand(n, generator=rng)[:, None, None, None] * torch.randn(x.shape, generator=rng)
    return (blurred + noise).clamp(-1, 1)


def fit_small_cnn(
    images: torch.Tensor,
    targets: torch.Tensor,
    outputs: int,
    augment: Augmentation,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    spatial: bool = False,
) -> SmallCNN:
    """Fit a :class:`SmallCNN` on ``images`` (N, 3, R, R) and ``targets``: floats in {0, 1} with one output
    (binary cross-entropy), class indices otherwise (cross-entropy); ``spatial``: logits from the whole feature
    map (see :class:`SmallCNN`). Each step: a batch drawn with replacement, mirrored half of the time, then
    ``augment``-ed. Returned in eval mode without gradients."""
    rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(outputs, resolution=images.shape[-1] if spatial else None)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=rng)
            x = images[idx]
            flip = torch.rand(len(idx), generator=rng) < 0.5
            x = augment(torch.where(flip[:, None, None, None], x.flip(-1), x), rng)
            logits = net(x)
            if outputs == 1:
                loss = F.binary_cross_entropy_with_logits(logits.squeeze(1), targets[idx])
            else:
                loss = F.cross_entropy(logits, targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval().requires_grad_(False)
