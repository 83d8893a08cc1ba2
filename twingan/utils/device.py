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


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""``train.precision`` and the translator's precision: ``auto`` picks per device (see :func:`resolve_precision`)."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 dot products in hardware (AVX-512 BF16 or AMX), which oneDNN's
    convolutions use; elsewhere bf16 on the CPU is emulated and slower than fp32."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto`` -> bf16 autocast on a CPU with native bf16 (measured 1.5-1.9x per training step, BENCHMARKS.md
    "Training speed"), fp32 elsewhere (CUDA included: no GPU figure supports another default yet).

    An explicit fp16 is CUDA only; an explicit bf16 runs on any device.
    """
    if setting not in PRECISIONS:
        raise ConfigError(f"precision {setting!r} is not one of {', '.join(PRECISIONS)}")
    if setting == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return setting


def resolve_channels_last(setting: Union[str, bool], device: torch.device) -> bool:
    """``auto`` -> channels_last on the CPU (oneDNN's convolutions run 1.3-1.8x faster on NHWC tensors,
    BENCHMARKS.md "Training speed"), off on CUDA until measured there; ``true`` / ``false`` as given."""
    if setting == "auto":
        return device.type == "cpu"
    if isinstance(setting, bool):
        return setting
    raise ConfigError(f"channels_last must be auto, true or false, got {setting!r}")


def autocast(device: torch.device, precision: str):
    """The autocast context of a resolved precision (fp32: a context that changes nothing)."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
