"""TwinGAN: one shared encoder and one shared generator, domains chosen by their normalisation."""
from __future__ import annotations

from typing import Literal, Union, get_args

import torch
import torch.nn.functional as F
from torch import nn

from twingan.models.attributes import AttributeSchema
from twingan.models.config import ModelConfig
from twingan.models.encoder import Encoder
from twingan.models.generator import Generator
from twingan.models.mapping import MappingNetwork
from twingan.models.style_encoder import StyleEncoder

Domain = Union[int, str]
EmbeddingKind = Literal["full", "pooled"]
EMBEDDING_KINDS: tuple[str, ...] = get_args(EmbeddingKind)
"""What :meth:`TwinGAN.embed` computes: ``full``, the flattened 4x4 latent; ``pooled``, its spatial mean."""


def condition_vector(style: torch.Tensor | None, attributes: torch.Tensor | None) -> torch.Tensor | None:
    """The generator's condition layout, in one place: [style code (N, style_dim) | attribute one-hots (N, A)],
    each part present when the model has it; None when it has neither."""
    parts = [part for part in (style, attributes) if part is not None]
    return torch.cat(parts, dim=1) if parts else None


class TwinGAN(nn.Module):
    """The translator side of TwinGAN (encoder + generator); discriminators live apart.

    Domains may be given by index or by name (``cfg.domains``). Images are
    float tensors (N, 3, R, R) in [-1, 1] at the current resolution R.

    Optional parts, each off unless configured: a mapping network (``noise_dim``)
    so the generator draws new faces from noise; a style encoder (``style_dim``)
    whose code, with an attribute vector (``attributes``), forms the condition that
    modulates the generator's normalisation (see :meth:`condition`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.generator = Generator(cfg)
        self.mapping = MappingNetwork(cfg) if cfg.noise_dim > 0 else None
        self.style_encoder = StyleEncoder(cfg) if cfg.style_dim > 0 else None
        self.attribute_schema = AttributeSchema(cfg.attributes)
        latent_shape = (cfg.num_domains, self.encoder.latent_channels, 4, 4)
        self.register_buffer("latent_mean", torch.zeros(latent_shape))
        self.register_buffer("latent_std", torch.ones(latent_shape))
        if self.attribute_schema:
            self.register_buffer("attribute_prior", self._uniform_prior().repeat(cfg.num_domains, 1))

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

    def decode(
        self,
        latent: torch.Tensor,
        skips: dict[int, torch.Tensor] | None,
        domain: Domain,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(latent, skips) -> image rendered with ``domain``'s normalisation (``cond``: see :meth:`condition`)."""
        return self.generator(latent, skips, self.domain_index(domain), cond)

    def translate(self, x: torch.Tensor, src: Domain, dst: Domain, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Encode in ``src``, decode in ``dst`` (skips come from the source image)."""
        latent, skips = self.encode(x, src)
        return self.decode(latent, skips, dst, cond)

    # ---- generation and conditioning -------------------------------------------------------

    def noise(self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """(n, noise_dim) standard Gaussian noise for :meth:`generate` (seeded by ``generator``)."""
        self._require(self.mapping, "generation", "model.noise_dim > 0")
        device = device if device is not None else next(self.parameters()).device
        return torch.randn(n, self.cfg.noise_dim, generator=generator, device=device)

    def generate(self, z: torch.Tensor, domain: Domain, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Noise (N, noise_dim) -> new faces drawn with ``domain``'s normalisation (no source image, no skips)."""
        self._require(self.mapping, "generation", "model.noise_dim > 0")
        return self.decode(self.mapping(z), None, domain, cond)

    def style(self, reference: torch.Tensor, domain: Domain) -> torch.Tensor:
        """Reference images of ``domain`` -> (N, style_dim) style codes."""
        self._require(self.style_encoder, "reference-guided translation", "model.style_dim > 0")
        return self.style_encoder(reference, self.domain_index(domain))

    def condition(
        self, n: int, style: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor | None:
        """The generator's condition for ``n`` images: [style code | attribute one-hots].

        ``style``: (N, style_dim) from :meth:`style` or None (zeros: no reference).
        ``labels``: (N, groups) value indices from :attr:`attribute_schema`, -1 for
        "keep" (zeros). Returns None when the model takes no condition at all.
        """
        if self.cfg.cond_dim == 0:
            if style is not None or labels is not None:
                raise ValueError("this model takes no style or attributes (model.style_dim = 0, no model.attributes)")
            return None
        device = device if device is not None else next(self.parameters()).device
        style_part = attribute_part = None
        if self.cfg.style_dim > 0:
            style_part = style if style is not None else torch.zeros(n, self.cfg.style_dim, device=device)
        elif style is not None:
            raise ValueError("this model has no style encoder (model.style_dim = 0): it cannot take a reference")
        if self.attribute_schema:
            attribute_part = (self.attribute_schema.one_hot(labels.to(device)) if labels is not None
                              else torch.zeros(n, self.attribute_schema.dim, device=device))
        elif labels is not None:
            raise ValueError("this model was trained without attributes (model.attributes is empty)")
        cond = condition_vector(style_part, attribute_part)
        if cond.shape[0] != n:
            raise ValueError(f"condition for {n} images has {cond.shape[0]} rows")
        return cond

    def _uniform_prior(self) -> torch.Tensor:
        """(attribute dim,) every value of a group equally likely."""
        return torch.cat([torch.full((len(v),), 1.0 / len(v)) for v in self.attribute_schema.groups.values()])

    def set_attribute_prior(self, domain: Domain, labels: torch.Tensor) -> None:
        """Store how often each attribute value occurs among ``domain``'s training labels ((N, groups), -1 unknown).

        Faces drawn from noise take their unnamed attributes from this prior (see :meth:`sample_labels`),
        so that they show the attributes as often as the training faces do. A group without a known label
        keeps an even prior.
        """
        self._require_attributes()
        d = self.domain_index(domain)
        schema = self.attribute_schema
        if labels.dim() != 2 or labels.shape[1] != len(schema):
            raise ValueError(f"expected labels of shape (N, {len(schema)}), got {tuple(labels.shape)}")
        blocks = []
        for g, (name, values) in enumerate(schema.groups.items()):
            column = labels[:, g].long().cpu()
            if column.max() >= len(values):
                raise ValueError(f"attribute {name!r} has {len(values)} values, got label {int(column.max())}")
            counts = torch.bincount(column[column >= 0], minlength=len(values)).double()
            blocks.append(counts / counts.sum() if counts.sum() > 0 else torch.full((len(values),), 1.0 / len(values)))
        self.attribute_prior[d].copy_(torch.cat(blocks).float())

    def sample_labels(self, n: int, domain: Domain, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, groups) CPU labels, each group drawn from ``domain``'s attribute prior, row after row (row i
        depends on the generator's state only, not on ``n``)."""
        self._require_attributes()
        prior = self.attribute_prior[self.domain_index(domain)].detach().double().cpu()
        blocks = [block[0] for block in self.attribute_schema.split_logits(prior[None])]
        rows = [torch.cat([torch.multinomial(b, 1, generator=generator) for b in blocks]) for _ in range(n)]
        return torch.stack(rows) if rows else torch.zeros(0, len(blocks), dtype=torch.long)

    def _require_attributes(self) -> None:
        if not self.attribute_schema:
            raise ValueError("this model was trained without attributes (model.attributes is empty)")

    @staticmethod
    def _require(part: nn.Module | None, what: str, setting: str) -> None:
        if part is None:
            raise ValueError(f"this model was built without {what}; it needs {setting}")

    def reconstruct(self, x: torch.Tensor, domain: Domain) -> torch.Tensor:
        return self.translate(x, domain, domain)

    def set_latent_statistics(self, domain: Domain, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the mean and standard deviation (each (C, 4, 4)) of ``domain``'s latents over its real images.

        :meth:`embed` standardises a latent with its own domain's statistics, so that what the
        domains share is compared, not each domain's average latent (which would dominate the cosine).
        """
        d = self.domain_index(domain)
        if mean.shape != self.latent_mean.shape[1:] or std.shape != self.latent_std.shape[1:]:
            raise ValueError(f"latent statistics must have shape {tuple(self.latent_mean.shape[1:])}, got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("latent statistics must be finite with a positive standard deviation")
        self.latent_mean[d].copy_(mean)
        self.latent_std[d].copy_(std)

    def embed(self, x: torch.Tensor, domain: Domain, kind: EmbeddingKind = "full") -> torch.Tensor:
        """L2-normalised embedding of the 4x4 latent (for cosine search), standardised with the domain's
        latent statistics (see :meth:`set_latent_statistics`).

        ``full``: the flattened standardised latent (C*16 values); ``pooled``: its spatial mean (C values).
        """
        d = self.domain_index(domain)
        latent, _ = self.encode(x, d)
        latent = (latent - self.latent_mean[d]) / self.latent_std[d]
        if kind == "full":
            vec = latent.flatten(1)
        elif kind == "pooled":
            vec = latent.mean(dim=(2, 3))
        else:
            raise ValueError(f"embedding kind must be one of {', '.join(EMBEDDING_KINDS)}, got {kind!r}")
        return F.normalize(vec.float(), dim=1)

    def forward(self, x: torch.Tensor, src: Domain, dst: Domain) -> torch.Tensor:
        return self.translate(x, src, dst)
