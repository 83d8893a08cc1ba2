"""TwinGAN: one shared encoder and one shared generator, domains chosen by their normalisation."""
from __future__ import annotations

from typing import Literal, Union

import torch
import torch.nn.functional as F
from torch import nn

from twingan.models.config import ModelConfig
from twingan.models.encoder import Encoder
from twingan.models.generator import Generator

Domain = Union[int, str]
EmbeddingKind = Literal["full", "pooled"]


class TwinGAN(nn.Module):
    """The translator side of TwinGAN (encoder + generator); discriminators live apart.

    Domains may be given by index or by name (``cfg.domains``). Images are
    float tensors (N, 3, R, R) in [-1, 1] at the current resolution R.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.generator = Generator(cfg)

    @property
    def domains(self) -> tuple[str, ...]:
        return self.cfg.domains

    @property
    def resolution(self) -> int:
        return self.encoder.resolution

    @property
    def alpha(self) -> float:
        return self.encoder.alpha

    def set_progress(self, resolution: int, alpha: float = 1.0) -> None:
        """Set the growth state: the current resolution and the fade-in alpha."""
        self.encoder.set_progress(resolution, alpha)
        self.generator.set_progress(resolution, alpha)

    def domain_index(self, domain: Domain) -> int:
        if isinstance(domain, str):
            if domain not in self.cfg.domains:
                raise ValueError(f"unknown domain {domain!r}; this model knows {list(self.cfg.domains)}")
            return self.cfg.domains.index(domain)
        if not 0 <= int(domain) < self.cfg.num_domains:
            raise ValueError(f"domain index {domain} out of range for domains {list(self.cfg.domains)}")
        return int(domain)

    def encode(self, x: torch.Tensor, domain: Domain) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Image -> (4x4 latent, skip features keyed by resolution), with ``domain``'s normalisation."""
        return self.encoder(x, self.domain_index(domain))

    def decode(self, latent: torch.Tensor, skips: dict[int, torch.Tensor], domain: Domain) -> torch.Tensor:
        """(latent, skips) -> image rendered with ``domain``'s normalisation."""
        return self.generator(latent, skips, self.domain_index(domain))

    def translate(self, x: torch.Tensor, src: Domain, dst: Domain) -> torch.Tensor:
        """Encode in ``src``, decode in ``dst`` (skips come from the source image)."""
        latent, skips = self.encode(x, src)
        return self.decode(latent, skips, dst)

    def reconstruct(self, x: torch.Tensor, domain: Domain) -> torch.Tensor:
        return self.translate(x, domain, domain)

    def embed(self, x: torch.Tensor, domain: Domain, kind: EmbeddingKind = "full") -> torch.Tensor:
        """L2-normalised embedding of the 4x4 latent (for cosine search).

        ``full``: the flattened latent (C*16 values); ``pooled``: its spatial mean (C values).
        """
        latent, _ = self.encode(x, domain)
        if kind == "full":
            vec = latent.flatten(1)
        elif kind == "pooled":
            vec = latent.mean(dim=(2, 3))
        else:
            raise ValueError(f"embedding kind must be 'full' or 'pooled', got {kind!r}")
        return F.normalize(vec.float(), dim=1)

    def forward(self, x: torch.Tensor, src: Domain, dst: Domain) -> torch.Tensor:
        return self.translate(x, src, dst)
