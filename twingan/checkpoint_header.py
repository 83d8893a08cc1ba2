"""What a checkpoint's JSON header may hold: the schema every header is checked against when it is read.

:func:`twingan.checkpoint.read_meta` checks each header with :func:`twingan.utils.schema.parse` against
:class:`CheckpointHeader`, so whatever reads a field afterwards (resume, release, eval, the demo, the web page)
gets the type written here or the file was refused with one line. Fields are optional: a release holds fewer
than a training checkpoint, and older versions wrote fewer. Keys not listed are ignored. The architecture,
``model_config``, is checked on its own by :func:`twingan.checkpoint.stored_model_config`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Union

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _at_least(name: str, value: Optional[Union[int, float]], low: Union[int, float]) -> None:
    if value is not None and not value >= low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


@dataclass(frozen=True)
class Progress:
    """Where training stood: the resolution being trained, the fade-in alpha, images and steps done."""

    resolution: Optional[int] = None
    alpha: Optional[float] = None
    images_seen: Optional[int] = None
    step: Optional[int] = None
    total_images: Optional[int] = None

    def __post_init__(self) -> None:
        if self.resolution is not None and (self.resolution < 4 or self.resolution & (self.resolution - 1)):
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (the fade-in) must be within 0..1, got {self.alpha!r}")
        for name in ("images_seen", "step", "total_images"):
            _at_least(name, getattr(self, name), 0)


@dataclass(frozen=True)
class RandomStates:
    """NumPy's and Python's global random states, as :func:`random.getstate` and NumPy give them, in lists."""

    numpy: tuple[str, list[int], int, int, float]
    python: tuple[int, list[int], Optional[float]]


@dataclass(frozen=True)
class Source:
    """The training checkpoint a release was copied from."""

    sha256: str
    kind: Optional[str] = None
    twingan_version: Optional[str] = None

    def __post_init__(self) -> None:
        if not SHA256_HEX.match(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")


@dataclass(frozen=True)
class DomainSummary:
    kind: Optional[str] = None
    split: Optional[str] = None
    synthetic_style: Optional[str] = None


@dataclass(frozen=True)
class TrainingSummary:
    """A release's path-free account of its training (:func:`twingan.inference.release.training_summary`)."""

    experiment: Union[str, int, None] = None
    seed: Optional[int] = None
    images_seen: Optional[int] = None
    resolution: Optional[int] = None
    domains: Optional[dict[str, DomainSummary]] = None
    synthetic: Optional[dict[str, Any]] = None
    style_domains: Optional[dict[str, str]] = None
    synthetic_only: Optional[bool] = None


@dataclass(frozen=True)
class CheckpointHeader:
    format: str
    format_version: int
    kind: Optional[str] = None
    twingan_version: Optional[str] = None
    model_config: Optional[dict[str, Any]] = None
    config: Optional[dict[str, Any]] = None
    domain_profiles: Optional[dict[str, Optional[str]]] = None
    progress: Optional[Progress] = None
    data: Optional[dict[str, Any]] = None
    optimizers: Optional[dict[str, list[dict[str, Any]]]] = None
    rng: Optional[RandomStates] = None
    world_size: Optional[int] = None
    rollbacks: Optional[int] = None
    lr_factor: Optional[float] = None
    scalers: Optional[list[dict[str, Any]]] = None
    training: Optional[TrainingSummary] = None
    source: Optional[Source] = None
    scores: Optional[dict[str, dict[str, Optional[float]]]] = None
    tensor_sha256: Optional[str] = None

    def __post_init__(self) -> None:
        _at_least("world_size", self.world_size, 1)
        _at_least("rollbacks", self.rollbacks, 0)
        if self.lr_factor is not None and not self.lr_factor > 0:
            raise ValueError(f"lr_factor must be > 0, got {self.lr_factor!r}")
        if self.tensor_sha256 is not None and not SHA256_HEX.match(self.tensor_sha256):
            raise ValueError(f"tensor_sha256 must be 64 lowercase hex digits, got {self.tensor_sha256!r}")
