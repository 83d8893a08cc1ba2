"""Architecture configuration shared by every network, and the channel rule."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from twingan.models.attributes import AttributeSchema
from twingan.models.domain_norm import NORM_KINDS


RETIRED_EMPTY_KEY = "extra"
"""A model config key of older checkpoints, always empty there; gone from ModelConfig."""
UPPER_BOUNDS = {
    "resolution": 4096, "max_channels": 16384, "fmap_base": 2**20, "d_max_channels": 16384, "noise_dim": 4096,
    "mapping_layers": 64, "mapping_hidden": 16384, "style_dim": 4096, "style_resolution": 4096,
}
"""Sane upper bounds (far beyond any TwinGAN, 4x the largest StyleGAN setting): a config read from an untrusted
checkpoint cannot ask for a model of terabytes, or for 100,000 layers, before its tensors are compared."""
MAX_DOMAINS = 256
MAX_ATTRIBUTE_VALUES = 4096


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the networks; stored inside every checkpoint.

    Channels at a resolution follow the PGGAN rule
    ``min(fmap_base / 2**stage, max_channels)`` with stage 0 at 4x4.
    """

    domains: tuple[str, ...] = ("human", "anime")
    resolution: int = 256
    max_channels: int = 256
    fmap_base: int = 1024
    d_max_channels: int | None = None
    equalized_lr: bool = False
    norm: str = "affine"
    batch_renorm: bool = False
    renorm_rmax: float = 3.0
    renorm_dmax: float = 5.0
    bn_momentum: float = 0.1
    sync_bn: bool = False
    leaky_slope: float = 0.2
    mbstd_group: int = 4
    noise_dim: int = 0
    mapping_layers: int = 4
    mapping_hidden: int = 256
    style_dim: int = 0
    style_resolution: int = 32
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    skip_max_resolution: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))
        if len(self.domains) < 1 or len(set(self.domains)) != len(self.domains):
            raise ValueError(f"model.domains must be distinct names, got {list(self.domains)}")
        if self.resolution < 4 or not _is_power_of_two(self.resolution):
            raise ValueError(f"model.resolution must be a power of two >= 4, got {self.resolution}")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"model.norm must be one of {', '.join(NORM_KINDS)}, got {self.norm!r}")
        if self.norm != "batch" and (self.batch_renorm or self.sync_bn):
            setting = "batch_renorm" if self.batch_renorm else "sync_bn"
            raise ValueError(f"model.{setting} applies to batch normalisation only; set model.norm=batch with it")
        if self.max_channels < 1 or self.fmap_base < 1:
            raise ValueError("model.max_channels and model.fmap_base must be positive")
        for name in ("noise_dim", "style_dim"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"model.{name} must be >= 0 (0 turns it off), got {getattr(self, name)}")
        if self.mapping_layers < 1 or self.mapping_hidden < 1:
            raise ValueError("model.mapping_layers and model.mapping_hidden must be >= 1")
        if self.style_resolution < 4 or not _is_power_of_two(self.style_resolution):
            raise ValueError(f"model.style_resolution must be a power of two >= 4, got {self.style_resolution}")
        if self.skip_max_resolution is not None and (
            self.skip_max_resolution < 4 or not _is_power_of_two(self.skip_max_resolution)
        ):
            raise ValueError(
                f"model.skip_max_resolution must be a power of two >= 4 (4 = no skips) or null (skips at every "
                f"resolution), got {self.skip_max_resolution}"
            )
        for name, bound in UPPER_BOUNDS.items():
            value = getattr(self, name)
            if value is not None and value > bound:
                raise ValueError(f"model.{name}={value} is beyond the sane bound of {bound}")
        if len(self.domains) > MAX_DOMAINS:
            raise ValueError(f"model.domains lists {len(self.domains)} domains, beyond the sane bound of {MAX_DOMAINS}")
        attributes = {str(k): tuple(str(v) for v in vs) for k, vs in dict(self.attributes or {}).items()}
        if sum(len(values) for values in attributes.values()) > MAX_ATTRIBUTE_VALUES:
            raise ValueError(f"model.attributes has more than {MAX_ATTRIBUTE_VALUES} values in all")
        object.__setattr__(self, "attributes", attributes)
        AttributeSchema(attributes)

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    @property
    def resolutions(self) -> list[int]:
        """All resolutions from 4 up to the final one."""
        return [4 * 2**i for i in range(int(math.log2(self.resolution)) - 1)]

    @property
    def attribute_schema(self) -> AttributeSchema:
        return AttributeSchema(self.attributes)

    @property
    def cond_dim(self) -> int:
        """Size of the vector that modulates the generator's normalisation: style code + attribute one-hots."""
        return self.style_dim + self.attribute_schema.dim

    def has_skip(self, resolution: int) -> bool:
        """Whether the generator block at ``resolution`` takes the encoder's skip (8 px and up, to
        ``skip_max_resolution``)."""
        return resolution > 4 and (self.skip_max_resolution is None or resolution <= self.skip_max_resolution)

    def channels(self, resolution: int) -> int:
        return channels_at(resolution, self.fmap_base, self.max_channels)

    def d_channels(self, resolution: int) -> int:
        return channels_at(resolution, self.fmap_base, self.d_max_channels or self.max_channels)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["domains"] = list(self.domains)
        out["attributes"] = {k: list(v) for k, v in self.attributes.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """The config :meth:`to_dict` wrote, also by an older version: the retired key ``extra`` (never read)
        is accepted while it is empty, as every checkpoint that has it stores it."""
        data = dict(data)
        if data.get(RETIRED_EMPTY_KEY, {}) == {}:
            data.pop(RETIRED_EMPTY_KEY, None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}; allowed: {sorted(known)}")
        return cls(**data)


def channels_at(resolution: int, fmap_base: int = 1024, max_channels: int = 256) -> int:
    """Feature maps at ``resolution``: min(fmap_base / 2**stage, max_channels), stage 0 = 4x4."""
    if resolution < 4 or not _is_power_of_two(resolution):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    stage = int(math.log2(resolution)) - 2
    return max(1, min(fmap_base // 2**stage, max_channels))


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0
