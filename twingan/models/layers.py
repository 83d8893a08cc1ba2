"""Building blocks: convolutions with optional equalized learning rate, PixelNorm, minibatch stddev."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ScaledConv2d(nn.Module):
    """A convolution with He initialisation, optionally with PGGAN's equalized learning rate.

    With ``equalized=False`` the weight is initialised N(0, gain^2 / fan_in) and used as is.
    With ``equalized=True`` the weight is N(0, 1) and scaled by gain / sqrt(fan_in) at every
    forward, so Adam's per-parameter step sizes are equal across layers. Both start
    from the same function distribution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        equalized: bool = False,
        gain: float = math.sqrt(2.0),
        bias: bool = True,
    ) -> None:
        super().__init__()
        fan_in = in_channels * kernel_size * kernel_size
        he_std = gain / math.sqrt(fan_in)
        self.padding = padding
        self.equalized = equalized
        self.scale = he_std if equalized else 1.0
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) * (1.0 if equalized else he_std))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.scale if self.equalized else self.weight
        return F.conv2d(x, weight, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, padding={self.padding}, equalized={self.equalized}"


class ScaledLinear(nn.Module):
    """Linear layer with the same initialisation / equalized-LR option as :class:`ScaledConv2d`."""

    def __init__(self, in_features: int, out_features: int, equalized: bool = False, gain: float = 1.0) -> None:
        super().__init__()
        he_std = gain / math.sqrt(in_features)
        self.equalized = equalized
        self.scale = he_std if equalized else 1.0
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (1.0 if equalized else he_std))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.scale if self.equalized else self.weight
        return F.linear(x, weight, self.bias)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit average square (PGGAN)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Append one feature map: the average standard deviation over groups of samples (PGGAN).

    The group size is the largest divisor of the batch not above ``group_size``,
    so any batch size works (a batch of 1 gets a zero feature).
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        y = x.reshape(g, n // g, c, h, w)
        y = y - y.mean(dim=0, keepdim=True)
        y = torch.sqrt(y.pow(2).mean(dim=0) + self.eps)
        y = y.mean(dim=(1, 2, 3)).reshape(n // g, 1, 1, 1)
        y = y.repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling (the one used for skips, fade-in and real-image blending)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling (the one used by the encoder, discriminators and real-image blending)."""
    return F.avg_pool2d(x, kernel_size=2)
