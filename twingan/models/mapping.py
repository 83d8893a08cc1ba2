"""Noise -> 4x4 latent: lets the shared generator draw new faces without a source image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twingan.models.config import ModelConfig
from twingan.models.layers import PixelNorm


class MappingNetwork(nn.Module):
    """An MLP from a ``noise_dim`` Gaussian vector to a (C, 4, 4) latent.

    The output is pixel-normalised like the encoder's latent (unit RMS over
    channels at every position), so generated and encoded latents live on the
    same sphere and the generator sees the same input statistics for both.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.noise_dim = cfg.noise_dim
        self.latent_channels = cfg.channels(4)
        hidden = max(cfg.mapping_hidden, 1)
        layers: list[nn.Module] = []
        width = cfg.noise_dim
        for _ in range(max(cfg.mapping_layers - 1, 0)):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(cfg.leaky_slope)]
            width = hidden
        layers.append(nn.Linear(width, self.latent_channels * 16))
        self.net = nn.Sequential(*layers)
        self.pixel_norm = PixelNorm()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"expected noise of shape (N, {self.noise_dim}), got {tuple(z.shape)}")
        z = F.normalize(z, dim=1) * self.noise_dim**0.5
        latent = self.net(z).view(z.shape[0], self.latent_channels, 4, 4)
        return self.pixel_norm(latent)
