"""The conv -> domain norm -> LeakyReLU unit shared by the encoder and generator, and the RGB output layer.

Measured (BENCHMARKS.md): a domain-normalised RGB output layer and a PixelNorm after every
activation each cost about 2x in reconstruction error; neither is part of TwinGAN's principle
(shared kernels, per-domain normalisation parameters in the hidden layers), so neither is here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twingan.models.config import ModelConfig
from twingan.models.domain_norm import DomainBatchNorm2d, DomainNorm2d
from twingan.models.layers import ScaledConv2d


def domain_norm(cfg: ModelConfig, channels: int, conditioned: bool = False) -> DomainBatchNorm2d | DomainNorm2d:
    """The generator's (``conditioned``) batch norms keep a second statistics set for generation from noise."""
    if cfg.norm != "batch":
        return DomainNorm2d(channels, cfg.num_domains, cfg.norm)
    return DomainBatchNorm2d(
        channels,
        cfg.num_domains,
        momentum=cfg.bn_momentum,
        renorm=cfg.batch_renorm,
        rmax=cfg.renorm_rmax,
        dmax=cfg.renorm_dmax,
        sync=cfg.sync_bn,
        stat_sets=2 if conditioned and cfg.noise_dim > 0 else 1,
    )


class NormModulation(nn.Module):
    """cond (N, cond_dim) -> (dgamma, dbeta) for a domain norm: gamma_d + f(cond), beta_d + g(cond).

    Linear without bias and zero-initialised: a zero condition (no style, no
    attribute named) leaves the plain translator untouched, before and after training.
    """

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * channels, bias=False)
        nn.init.zeros_(self.linear.weight)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dgamma, dbeta = self.linear(cond).chunk(2, dim=1)
        return dgamma, dbeta


def _modulation(cfg: ModelConfig, channels: int, conditioned: bool) -> NormModulation | None:
    return NormModulation(cfg.cond_dim, channels) if conditioned and cfg.cond_dim > 0 else None


class ConvNormAct(nn.Module):
    """Conv -> per-domain norm (``model.norm``) -> LeakyReLU (TwinGAN's encoder/generator unit).

    ``conditioned`` units (the generator's) accept a condition vector that modulates the norm.
    """

    def __init__(
        self, cfg: ModelConfig, in_channels: int, out_channels: int, kernel_size: int, conditioned: bool = False
    ) -> None:
        super().__init__()
        self.conv = ScaledConv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, equalized=cfg.equalized_lr, bias=False
        )
        self.norm = domain_norm(cfg, out_channels, conditioned)
        self.modulation = _modulation(cfg, out_channels, conditioned)
        self.slope = cfg.leaky_slope

    def forward(
        self, x: torch.Tensor, domain: int, cond: torch.Tensor | None = None, stat_set: int = 0
    ) -> torch.Tensor:
        mod = self.modulation(cond) if cond is not None and self.modulation is not None else None
        x = self.norm(self.conv(x), domain, mod, stat_set)
        return F.leaky_relu(x, self.slope)


class DoubleConv(nn.Module):
    """Two 3x3 units: in -> mid -> out."""

    def __init__(
        self, cfg: ModelConfig, in_channels: int, mid_channels: int, out_channels: int, conditioned: bool = False
    ) -> None:
        super().__init__()
        self.conv0 = ConvNormAct(cfg, in_channels, mid_channels, 3, conditioned)
        self.conv1 = ConvNormAct(cfg, mid_channels, out_channels, 3, conditioned)

    def forward(
        self, x: torch.Tensor, domain: int, cond: torch.Tensor | None = None, stat_set: int = 0
    ) -> torch.Tensor:
        return self.conv1(self.conv0(x, domain, cond, stat_set), domain, cond, stat_set)


class ToRGB(nn.Module):
    """A shared 1x1 conv (with bias) to RGB: a domain's colours come from its hidden layers' norms."""

    def __init__(self, cfg: ModelConfig, in_channels: int) -> None:
        super().__init__()
        self.conv = ScaledConv2d(in_channels, 3, 1, equalized=cfg.equalized_lr, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ProgressiveMixin:
    """Current resolution and fade-in alpha: the growth state of a progressive network."""

    resolution: int
    alpha: float
    max_resolution: int

    def set_progress(self, resolution: int, alpha: float = 1.0) -> None:
        if resolution < 4 or resolution > self.max_resolution or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two in [4, {self.max_resolution}], got {resolution}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.resolution = int(resolution)
        self.alpha = 1.0 if resolution == 4 else float(alpha)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != self.resolution or x.shape[3] != self.resolution:
            raise ValueError(
                f"expected images of shape (N, 3, {self.resolution}, {self.resolution}) at the current "
                f"resolution, got {tuple(x.shape)}"
            )
