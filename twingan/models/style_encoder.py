"""The style encoder: a reference image -> a style code that modulates the generator's normalisation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from twingan.models.config import ModelConfig


class StyleEncoder(nn.Module):
    """Image (any resolution) -> (N, style_dim) code, with one output head per domain.

    The image is resized to ``style_resolution`` so the encoder works at every
    stage of progressive growing, passed through unnormalised convolutions with
    pooling, and averaged over space: the code describes colours and textures
    (hair, eyes, shading) but not where things are, so the pose of a translation
    keeps coming from the source. No batch statistics: each reference is encoded
    on its own.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.resolution = cfg.style_resolution
        width = max(8, min(cfg.max_channels, 128))
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(cfg.leaky_slope)]
        for _ in range(int(math.log2(self.resolution)) - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(cfg.leaky_slope), nn.AvgPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.heads = nn.ModuleList([nn.Linear(width, cfg.style_dim) for _ in cfg.domains])
        for module in self.modules():  # He init without biases: codes start as distinct as the references are
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, a=cfg.leaky_slope)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected reference images of shape (N, 3, H, W), got {tuple(x.shape)}")
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.resolution)
        h = self.features(x).mean(dim=(2, 3))
        return self.heads[domain](h)
