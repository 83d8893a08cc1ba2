"""twingan: unpaired face-domain translation with TwinGAN, and cross-domain face search."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import torch

    from twingan.inference import Translator

__version__ = "0.2.0"


def load(
    path: Union[str, "os.PathLike[str]"], device: Union[str, "torch.device"] = "auto", weights: str = "ema"
) -> "Translator":
    """Load a checkpoint for inference: ``twingan.load("ckpt.safetensors").translate(img, to="anime")``.

    ``device`` 'auto' picks CUDA when available; EMA weights by default
    ('model' for the raw generator). Heavy imports happen here, so that
    ``import twingan`` stays light.
    """
    from twingan.inference import Translator

    return Translator.load(path, device=device, weights=weights)
