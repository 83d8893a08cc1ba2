"""Per-domain PGGAN discriminators: no normalisation, minibatch-stddev feature at 4x4."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twingan.models.blocks import ProgressiveMixin
from twingan.models.config import ModelConfig
from twingan.models.layers import MinibatchStdDev, ScaledConv2d, ScaledLinear, downsample2x


class Discriminator(ProgressiveMixin, nn.Module):
    """Image -> one logit. from_rgb per resolution, two 3x3 convs + 2x2 pooling per
    resolution, then at 4x4: minibatch stddev, 3x3 conv, 4x4 valid conv, linear.

    Fade-in mirrors the encoder: at resolution R the input to the R/2 stage is
    alpha * pool(block_R(from_rgb_R(x))) + (1 - alpha) * from_rgb_{R/2}(pool(x)).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.max_resolution = cfg.resolution
        self.slope = cfg.leaky_slope
        eq = cfg.equalized_lr
        self.from_rgb = nn.ModuleDict()
        self.blocks = nn.ModuleDict()
        for res in cfg.resolutions[1:]:
            c, c_next = cfg.d_channels(res), cfg.d_channels(res // 2)
            self.from_rgb[str(res)] = ScaledConv2d(3, c, 1, equalized=eq)
            self.blocks[str(res)] = nn.ModuleList(
                [ScaledConv2d(c, c, 3, padding=1, equalized=eq), ScaledConv2d(c, c_next, 3, padding=1, equalized=eq)]
            )
        c4 = cfg.d_channels(4)
        self.from_rgb["4"] = ScaledConv2d(3, c4, 1, equalized=eq)
        self.mbstd = MinibatchStdDev(cfg.mbstd_group)
        self.conv4 = ScaledConv2d(c4 + 1, c4, 3, padding=1, equalized=eq)
        self.conv4_valid = ScaledConv2d(c4, c4, 4, padding=0, equalized=eq)
        self.attribute_dim = cfg.attribute_schema.dim
        self.fc = ScaledLinear(c4, 1 + self.attribute_dim, equalized=eq)
        self.set_progress(cfg.resolution, 1.0)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.slope)

    def forward(
        self, x: torch.Tensor, with_attributes: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The real/fake logit (N, 1); with ``with_attributes`` also the attribute logits (N, attribute dim).

        When the model has attributes (``model.attributes``) the last layer carries an
        auxiliary classifier (AC-GAN / StarGAN): one logit block per attribute group.
        """
        self._check_input(x)
        res = self.resolution
        h = self._act(self.from_rgb[str(res)](x))
        while res > 4:
            conv0, conv1 = self.blocks[str(res)]
            h = downsample2x(self._act(conv1(self._act(conv0(h)))))
            if res == self.resolution and self.alpha < 1.0:
                old = self._act(self.from_rgb[str(res // 2)](downsample2x(x)))
                h = torch.lerp(old, h, self.alpha)
            res //= 2
        h = self._act(self.conv4(self.mbstd(h)))
        h = self._act(self.conv4_valid(h))
        out = self.fc(h.flatten(1))
        if with_attributes:
            return out[:, :1], out[:, 1:]
        return out[:, :1]


class Discriminators(nn.Module):
    """One discriminator per domain, addressed by domain index."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.nets = nn.ModuleList([Discriminator(cfg) for _ in cfg.domains])

    def set_progress(self, resolution: int, alpha: float = 1.0) -> None:
        for net in self.nets:
            net.set_progress(resolution, alpha)

    def forward(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        return self.nets[domain](x)

    def with_attributes(self, x: torch.Tensor, domain: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(real/fake logit, attribute logits) of domain ``domain``'s discriminator."""
        return self.nets[domain](x, with_attributes=True)
