"""The encoder: a PGGAN discriminator turned into a domain-normalised image -> 4x4 latent map."""
from __future__ import annotations

import torch
from torch import nn

from twingan.models.blocks import ConvNormAct, DoubleConv, ProgressiveMixin
from twingan.models.config import ModelConfig
from twingan.models.layers import downsample2x


class Encoder(ProgressiveMixin, nn.Module):
    """Image -> (4x4 latent, skip features per resolution above 4).

    Every resolution has a from_rgb 1x1 unit and a block of two 3x3 units
    (ch(r) -> ch(r) -> ch(r/2), the PGGAN discriminator layout); a block above 4x4 is
    followed by 2x2 average pooling. The skip at resolution r is block r's output
    before pooling (channels ch(r/2)). During fade-in at resolution R the input to
    block R/2 is alpha * pool(block_R(from_rgb_R(x))) + (1 - alpha) * from_rgb_{R/2}(pool(x)).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_resolution = cfg.resolution
        self.from_rgb = nn.ModuleDict()
        self.blocks = nn.ModuleDict()
        for res in cfg.resolutions:
            out_ch = cfg.channels(res // 2) if res > 4 else cfg.channels(4)
            self.from_rgb[str(res)] = ConvNormAct(cfg, 3, cfg.channels(res), 1)
            self.blocks[str(res)] = DoubleConv(cfg, cfg.channels(res), cfg.channels(res), out_ch)
        self.latent_channels = cfg.channels(4)
        self.set_progress(cfg.resolution, 1.0)

    def forward(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        self._check_input(x)
        res = self.resolution
        skips: dict[int, torch.Tensor] = {}
        h = self.from_rgb[str(res)](x, domain)
        while res > 4:
            h = self.blocks[str(res)](h, domain)
            skips[res] = h
            h = downsample2x(h)
            if res == self.resolution and self.alpha < 1.0:
                old = self.from_rgb[str(res // 2)](downsample2x(x), domain)
                h = torch.lerp(old, h, self.alpha)
            res //= 2
        latent = self.blocks["4"](h, domain)
        return latent, skips
