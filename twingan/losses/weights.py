"""The weights of the translation objective's terms."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms; the defaults are conf/loss/default.yaml's. A term of weight 0 is not computed."""

    reconstruction: float = 10.0
    adversarial: float = 1.0
    adversarial_reconstruction: float = 1.0
    semantic: float = 0.1
    semantic_contrast: float = 1.0
    cycle: float = 10.0
    recon_adversarial_from: int = 64
    generation: float = 1.0
    mode_seeking: float = 0.0
    style_reconstruction: float = 1.0
    style_diversity: float = 0.5
    attribute: float = 1.0
    recolour: float = 0.0
