"""Exponential moving average of the translator (encoder + generator), used for samples and exports."""
from __future__ import annotations

import copy

import torch

from twingan.models import TwinGAN


class EmaTranslator:
    """EMA weights with a half-life counted in images, ramped up early in training (as StyleGAN2-ADA).

    decay per step = 0.5 ** (batch_images / half_life), half_life = min(half_life_images,
    images_seen * rampup). Buffers (running statistics) are copied, not averaged.
    """

    def __init__(self, model: TwinGAN, half_life_images: float, rampup: float | None) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.half_life_images = float(half_life_images)
        self.rampup = rampup

    def decay(self, images_seen: int, batch_images: int) -> float:
        half_life = self.half_life_images
        if self.rampup is not None:
            half_life = min(half_life, images_seen * self.rampup)
        if half_life <= 0:
            return 0.0
        return 0.5 ** (batch_images / half_life)

    @torch.no_grad()
    def update(self, model: TwinGAN, images_seen: int, batch_images: int) -> None:
        beta = self.decay(images_seen, batch_images)
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.copy_(p.detach().lerp(ema_p, beta))
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)
        self.model.set_progress(model.resolution, model.alpha)
