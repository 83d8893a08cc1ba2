"""twingan: unpaired face-domain translation with TwinGAN, and cross-domain face search."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import torch

    from twingan.inference import Translator

from twingan.version import __version__


def load(
    path: Union[str, "os.PathLike[str]"],
    device: Union[str, "torch.device"] = "auto",
    weights: str = "ema",
    sha256: Union[str, None] = None,
    max_download_bytes: Union[int, None] = None,
) -> "Translator":
    """Load a checkpoint or release file for inference:
    ``twingan.load("model.safetensors").translate_photo("selfie.jpg", to="anime").avatar``.

    ``path`` may also be a URL (downloaded once into torch.hub's cache and
    checked against ``sha256``, or the hash in a ``name-<sha256 prefix>.safetensors``
    file name), at most ``max_download_bytes`` of it (default 2 GiB; connecting
    and reading time out). ``device`` 'auto' picks CUDA when available; EMA weights by
    default ('model' for the raw generator of a training checkpoint). Heavy
    imports happen here, so that ``import twingan`` stays light.
    """
    from twingan.inference import Translator

    return Translator.load(path, device=device, weights=weights, sha256=sha256,
                           max_download_bytes=max_download_bytes)
