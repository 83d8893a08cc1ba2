"""An independent photo-vs-anime judge for the ``style`` score of translations.

The score asks: does a translation look like the target style to a classifier
that the translator never saw? The model's own discriminators are not
independent (the generator was trained to fool them), so :func:`fit_style_classifier`
fits a small CNN of its own on the synthetic training reals of both styles, at
the resolution being scored, from a fixed seed and without touching any global
random state. Copying the input scores about 0 (a photo stays a photo), so a
near-identity "translation" cannot pass.

The classifier's accuracy on the paired test reals is kept with it
(:attr:`StyleClassifier.test_accuracy`): a score from a judge that cannot tell
the real styles apart would mean nothing, and eval reports it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import nn

from twingan.data.datasets import resize_square
from twingan.data.image_io import IMAGE_EXTENSIONS, load_image, uint8_to_tensor
from twingan.errors import DatasetError

STYLES = ("photo", "anime")
ANIME = 1
"""Class index of the anime style (photo is 0)."""


class _StyleNet(nn.Module):
    """Three conv stages with pooling, global average, one logit (positive = anime)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


@dataclass
class StyleClassifier:
    """A fitted photo-vs-anime classifier for images (N, 3, R, R) in [-1, 1] at ``resolution``."""

    net: _StyleNet
    resolution: int
    train_images: int
    test_accuracy: float | None = None

    @torch.no_grad()
    def anime_probability(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            raise ValueError(
                f"the style classifier was fitted at {self.resolution} px; got images of {tuple(images.shape[-2:])}"
            )
        probs = [torch.sigmoid(self.net(chunk.float().cpu())) for chunk in images.split(batch_size)]
        return torch.cat(probs)

    def share_in_style(self, images: torch.Tensor, style: str) -> float:
        """Fraction of ``images`` classified as ``style`` ('photo' or 'anime')."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        is_anime = self.anime_probability(images) > 0.5
        wanted = is_anime if style == "anime" else ~is_anime
        return float(wanted.float().mean())


def _training_reals(root: Path, style: str, resolution: int, limit: int) -> torch.Tensor:
    folder = root / "train" / style
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:limit]
    if len(files) < 2:
        raise DatasetError(f"{folder}: the style classifier needs training images of the {style!r} style; found "
                           f"{len(files)} (regenerate the synthetic dataset with `twingan prep synthetic`)")
    arrays = np.stack([resize_square(load_image(f), resolution) for f in files])
    return uint8_to_tensor(torch.from_numpy(arrays).permute(0, 3, 1, 2))


def fit_style_classifier(
    root: str | Path, resolution: int, *, steps: int = 800, batch_size: int = 64, limit: int = 2000, seed: int = 0
) -> StyleClassifier:
    """Fit on up to ``limit`` training reals per style of the synthetic dataset at ``root`` (flip augmentation).

    Deterministic for a given dataset, resolution and seed; uses its own generator, so
    the caller's random streams (a training run's) are not advanced.
    """
    root = Path(root)
    photos = _training_reals(root, "photo", resolution, limit)
    animes = _training_reals(root, "anime", resolution, limit)
    images = torch.cat([photos, animes])
    labels = torch.cat([torch.zeros(len(photos)), torch.ones(len(animes))])
    rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _StyleNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    with torch.enable_grad():
        _fit(net, opt, images, labels, steps, batch_size, rng)
    return StyleClassifier(net.eval().requires_grad_(False), resolution, len(images))


def _fit(net: _StyleNet, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, steps: int,
         batch_size: int, rng: torch.Generator) -> None:
    for _ in range(steps):
        idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=rng)
        x = images[idx]
        flip = torch.rand(len(idx), generator=rng) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = _colour_jitter(x, rng)
        x = _soften(x, rng)
        loss = F.binary_cross_entropy_with_logits(net(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


SATURATION_JITTER = (0.5, 2.0)
BRIGHTNESS_JITTER = 0.15


def _colour_jitter(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random saturation (x0.5 .. x2, log-uniform) and brightness per image, for both styles alike: the
    judge must tell the styles apart by their drawing (eyes, outlines, shading, proportions), not by how
    colourful a picture is, or a photo with boosted colours would pass as anime."""
    n = x.shape[0]
    low, high = math.log(SATURATION_JITTER[0]), math.log(SATURATION_JITTER[1])
    factor = torch.exp(low + (high - low) * torch.rand(n, generator=rng))[:, None, None, None]
    shift = (2 * torch.rand(n, generator=rng) - 1)[:, None, None, None] * 2 * BRIGHTNESS_JITTER
    grey = (x * _LUMA[None, :, None, None]).sum(dim=1, keepdim=True)
    return (grey + factor * (x - grey) + shift).clamp(-1, 1)


_LUMA = torch.tensor([0.299, 0.587, 0.114])
BLUR_SIGMA_MAX = 0.6
NOISE_MAX = 0.05


def _soften(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """A slight random blur and pixel noise for both styles alike, so sharpness and grain alone (which any
    rendering at a small size can lose or gain) do not decide the style."""
    n = x.shape[0]
    sigma = BLUR_SIGMA_MAX * torch.rand(n, generator=rng)
    blurred = gaussian_blur2d(x, (5, 5), torch.stack([sigma, sigma], dim=1).clamp_min(1e-3))
    noise = NOISE_MAX * torch.rand(n, generator=rng)[:, None, None, None] * torch.randn(x.shape, generator=rng)
    return (blurred + noise).clamp(-1, 1)


@functools.lru_cache(maxsize=4)
def _cached(root: str, resolution: int, stamp: float) -> StyleClassifier:
    return fit_style_classifier(root, resolution)


def style_classifier_for(root: str | Path, resolution: int) -> StyleClassifier:
    """:func:`fit_style_classifier` with default settings, fitted once per dataset and resolution in a process."""
    root = Path(root).resolve()
    manifest = root / "synthetic.json"
    stamp = manifest.stat().st_mtime if manifest.exists() else 0.0
    return _cached(str(root), int(resolution), stamp)
