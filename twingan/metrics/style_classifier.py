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

import torch

from twingan.data.image_io import IMAGE_EXTENSIONS
from twingan.errors import DatasetError
from twingan.metrics.small_cnn import SmallCNN, fit_small_cnn, load_pictures, soften

STYLES = ("photo", "anime")
ANIME = 1
"""Class index of the anime style (photo is 0)."""


@dataclass
class StyleClassifier:
    """A fitted photo-vs-anime classifier for images (N, 3, R, R) in [-1, 1] at ``resolution``."""

    net: SmallCNN
    resolution: int
    train_images: int
    test_accuracy: float | None = None

    @torch.no_grad()
    def anime_probability(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            raise ValueError(
                f"the style classifier was fitted at {self.resolution} px; got images of {tuple(images.shape[-2:])}"
            )
        return torch.sigmoid(self.net.logits(images, batch_size).squeeze(1))

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
    return load_pictures(files, resolution)


def fit_style_classifier(
    root: str | Path, resolution: int, *, steps: int = 800, batch_size: int = 64, limit: int = 2000, seed: int = 0
) -> StyleClassifier:
    """Fit on up to ``limit`` training reals per style of the synthetic dataset at ``root`` (flips, colour
    jitter, slight blur and noise).

    Deterministic for a given dataset, resolution and seed; uses its own generator, so
    the caller's random streams (a training run's) are not advanced.
    """
    root = Path(root)
    photos = _training_reals(root, "photo", resolution, limit)
    animes = _training_reals(root, "anime", resolution, limit)
    images = torch.cat([photos, animes])
    labels = torch.cat([torch.zeros(len(photos)), torch.ones(len(animes))])
    net = fit_small_cnn(images, labels, 1, style_augment, steps=steps, batch_size=batch_size, seed=seed)
    return StyleClassifier(net, resolution, len(images))


def style_augment(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Colour jitter, then a slight blur and noise: what both style judges are fitted under."""
    return soften(_colour_jitter(x, rng), rng)


SATURATION_JITTER = (0.5, 2.0)
BRIGHTNESS_JITTER = 0.15
_LUMA = torch.tensor([0.299, 0.587, 0.114])


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


@functools.lru_cache(maxsize=4)
def _cached(root: str, resolution: int, stamp: float) -> StyleClassifier:
    return fit_style_classifier(root, resolution)


def style_classifier_for(root: str | Path, resolution: int) -> StyleClassifier:
    """:func:`fit_style_classifier` with default settings, fitted once per dataset and resolution in a process."""
    root = Path(root).resolve()
    manifest = root / "synthetic.json"
    stamp = manifest.stat().st_mtime if manifest.exists() else 0.0
    return _cached(str(root), int(resolution), stamp)
