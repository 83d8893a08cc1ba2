"""Device names from options: 'auto' picks CUDA when there is one, else the CPU."""
from __future__ import annotations

from typing import Union

import torch

from twingan.errors import ConfigError

DeviceLike = Union[str, torch.device, None]


def resolve_device(name: DeviceLike) -> torch.device:
    """'auto' or None -> the first CUDA device when available, else the CPU; other names as torch reads them.

    A CUDA device on a machine without one, or a name torch does not know, is a ConfigError.
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(name)!r} was asked for but CUDA is not available here; use cpu")
    return device
