"""Differentiable augmentation of everything a discriminator judges (DiffAugment, Zhao et al. 2020).

With a few thousand real faces and a short run, a discriminator learns the training
images themselves and its gradients stop telling the generator what the domain looks
like. Augmenting reals and fakes alike, with operations the generator's gradient can
flow through, keeps the discriminator judging the domain rather than the pictures.
The augmentation never reaches the generator's own inputs or its reconstruction targets.

Operations (a policy lists any of them, applied in its order):
- ``color``: brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5);
- ``translation``: a shift by up to ``TRANSLATION`` of the side in x and y, zero padded;
- ``cutout``: a square of ``CUTOUT`` of the side, at a random place, set to zero.
Each image draws its own parameters from the given ``torch.Generator`` (on the batch's
device), so a seeded run augments identically after an exact resume.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from twingan.models import Discriminators

TRANSLATION = 0.125
CUTOUT = 0.5
OPERATIONS = ("color", "translation", "cutout")

Op = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _uniform(n: int, x: torch.Tensor, generator: torch.Generator | None, low: float, high: float) -> torch.Tensor:
    u = torch.rand(n, 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)
    return low + (high - low) * u


def color(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Brightness, saturation and contrast jitter on [-1, 1] images (DiffAugment's ranges)."""
    n = x.shape[0]
    x = x + _uniform(n, x, generator, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(n, x, generator, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(n, x, generator, 0.5, 1.5) + mean


def translation(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Shift each image by up to TRANSLATION of its side (whole pixels), filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * TRANSLATION + 0.5)), max(1, int(w * TRANSLATION + 0.5))
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), generator=generator, device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    shifted = x.flatten(2).gather(2, index).view_as(x)
    return shifted * inside.to(x.dtype)


def cutout(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Zero a square of CUTOUT of the side centred at a random pixel of each image (clipped at the edges)."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * CUTOUT + 0.5)), max(1, int(w * CUTOUT + 0.5))
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=generator, device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=generator, device=x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


_OPS: dict[str, Op] = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: Sequence[str] | None) -> tuple[str, ...]:
    """``["color", "translation", "cutout"]`` -> the operations in order; None or empty -> ()."""
    if isinstance(policy, str) or not all(isinstance(name, str) for name in policy or ()):
        raise ValueError(f"loss.d_augment={policy!r}: expected a list, e.g. [color,translation,cutout] or []")
    names = tuple(policy or ())
    unknown = [name for name in names if name not in _OPS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(
            f"loss.d_augment={list(names)}: expected distinct operations from {', '.join(OPERATIONS)}, "
            "e.g. [color,translation,cutout] (or [] for none)"
        )
    return names


class DiffAugment:
    """The policy's operations applied in order; differentiable in the images."""

    def __init__(self, policy: Sequence[str] | None) -> None:
        self.operations = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.operations)

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.operations) or 'none'})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for name in self.operations:
            x = _OPS[name](x, generator)
        return x


class AugmentedDiscriminators:
    """The discriminators, judging every image through ``augment`` (drawn from ``generator``).

    Offers what the objective calls on :class:`~twingan.models.Discriminators`: the
    logits of ``(images, domain)`` and :meth:`with_attributes`.
    """

    def __init__(
        self, discriminators: Discriminators, augment: DiffAugment, generator: torch.Generator | None = None
    ) -> None:
        self.discriminators = discriminators
        self.augment = augment
        self.generator = generator

    def __call__(self, images: torch.Tensor, domain: int) -> torch.Tensor:
        return self.discriminators(self.augment(images, self.generator), domain)

    def with_attributes(self, images: torch.Tensor, domain: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.discriminators.with_attributes(self.augment(images, self.generator), domain)
