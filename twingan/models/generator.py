"""The generator: PGGAN-style 4x4 -> image, with UNet skips from the source image's encoding."""
from __future__ import annotations

import torch
from torch import nn

from twingan.models.blocks import DoubleConv, ProgressiveMixin, ToRGB
from twingan.models.config import ModelConfig
from twingan.models.layers import upsample2x


class GeneratorBlock(nn.Module):
    """At resolution r: upsample, concatenate the encoder's skip (when the block has one:
    ``skip_channels`` > 0), two 3x3 units -> ch(r)."""

    def __init__(self, cfg: ModelConfig, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.skip_channels = skip_channels
        self.convs = DoubleConv(cfg, in_channels + skip_channels, out_channels, out_channels, conditioned=True)

    def forward(
        self, h: torch.Tensor, skip: torch.Tensor | None, domain: int, cond: torch.Tensor | None = None,
        stat_set: int = 0,
    ) -> torch.Tensor:
        up = upsample2x(h)
        if self.skip_channels == 0:
            return self.convs(up, domain, cond, stat_set)
        if skip is None:
            skip = up.new_zeros(up.shape[0], self.skip_channels, up.shape[2], up.shape[3])
        return self.convs(torch.cat([up, skip], dim=1), domain, cond, stat_set)


class Generator(ProgressiveMixin, nn.Module):
    """(4x4 latent, skips) -> image in [-1, 1] (linear output, clamped only when turned into pixels).

    ``skips=None`` draws from the latent alone (zero skip features): the path used for
    generation from noise, which keeps its own running statistics in every norm layer. ``cond`` (N, cfg.cond_dim) modulates every normalisation
    layer (style code and/or attribute vector); None leaves the translator unconditioned.

    During fade-in at resolution R the output is
    alpha * to_rgb_R(h_R) + (1 - alpha) * upsample(to_rgb_{R/2}(h_{R/2})).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_resolution = cfg.resolution
        c4 = cfg.channels(4)
        self.blocks = nn.ModuleDict()
        self.to_rgb = nn.ModuleDict()
        self.cond_dim = cfg.cond_dim
        self.blocks["4"] = DoubleConv(cfg, c4, c4, c4, conditioned=True)
        self.to_rgb["4"] = ToRGB(cfg, c4)
        for res in cfg.resolutions[1:]:
            prev = cfg.channels(res // 2)
            skip = cfg.channels(res // 2) if cfg.has_skip(res) else 0
            self.blocks[str(res)] = GeneratorBlock(cfg, prev, skip, cfg.channels(res))
            self.to_rgb[str(res)] = ToRGB(cfg, cfg.channels(res))
        self.set_progress(cfg.resolution, 1.0)

    def forward(
        self,
        latent: torch.Tensor,
        skips: dict[int, torch.Tensor] | None,
        domain: int,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if latent.dim() != 4 or latent.shape[-2:] != (4, 4):
            raise ValueError(f"expected a (N, C, 4, 4) latent, got {tuple(latent.shape)}")
        if skips is not None:
            missing = [r for r in range(8, self.resolution + 1)
                       if r & (r - 1) == 0 and self.cfg.has_skip(r) and r not in skips]
            if missing:
                raise ValueError(f"skips missing for resolutions {missing} (current resolution {self.resolution})")
        if cond is not None:
            if self.cond_dim == 0:
                raise ValueError("this generator takes no condition (model.style_dim = 0 and no model.attributes)")
            if cond.shape != (latent.shape[0], self.cond_dim):
                raise ValueError(f"expected a condition of shape ({latent.shape[0]}, {self.cond_dim}), "
                                 f"got {tuple(cond.shape)}")
        stat_set = 1 if skips is None and self.cfg.noise_dim > 0 else 0
        h = self.blocks["4"](latent, domain, cond, stat_set)
        prev = h
        res = 4
        while res < self.resolution:
            res *= 2
            prev = h
            h = self.blocks[str(res)](h, None if skips is None else skips.get(res), domain, cond, stat_set)
        image = self.to_rgb[str(res)](h)
        if res > 4 and self.alpha < 1.0:
            old = upsample2x(self.to_rgb[str(res // 2)](prev))
            image = torch.lerp(old, image, self.alpha)
        return image
