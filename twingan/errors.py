"""Errors the toolkit raises for bad input; the CLI prints them as one clear line."""
from __future__ import annotations

import errno
import os
from typing import Union


class TwinGANError(Exception):
    """Base class: a problem with the user's input, files or options (not a bug)."""


class ConfigError(TwinGANError):
    """An option or configuration value is missing, unknown or out of range."""


class ImageLoadError(TwinGANError):
    """An image file could not be read; ``reason`` says why in a few words."""

    def __init__(self, path: Union[str, os.PathLike], reason: str) -> None:
        super().__init__(f"{quoted(path)}: {reason}")
        self.path = str(path)
        self.reason = reason


class CheckpointError(TwinGANError):
    """A checkpoint file is missing, foreign, truncated or does not match the request."""


class NonFiniteOutputError(CheckpointError):
    """A model produced NaN or infinite values: its weights are unusable (a diverged run, overflowing weights)."""


class NoFaceError(TwinGANError):
    """A photo (or reference picture) in which no face was found; the message says how small a face was looked for."""


class DatasetError(TwinGANError):
    """A dataset is missing, empty or laid out differently than expected."""


class OutputError(TwinGANError, OSError):
    """A file could not be written (disk full, no permission, read-only file system).

    Also an OSError, so code that handles failed writes keeps catching it; the writer left nothing
    half-written behind (see :mod:`twingan.utils.atomic`).
    """


WRITE_HINTS = {
    errno.ENOSPC: "no space left on the device: free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.EROFS: "read-only file system: write elsewhere",
    errno.EFBIG: "file too large for this file system or the process's file size limit",
}


def write_failure(target: Union[str, os.PathLike], exc: OSError) -> OutputError:
    """The one-line OutputError for an OSError raised while writing ``target``."""
    reason = WRITE_HINTS.get(exc.errno) or exc.strerror or str(exc)
    return OutputError(f"cannot write {quoted(target)}: {reason}")


def quoted(path: Union[str, os.PathLike]) -> str:
    """A file name as it is safe to print: as is, or quoted with escapes when it holds a newline, a terminal
    escape sequence or another unprintable character (a crafted name cannot forge or hide output lines)."""
    text = os.fspath(path)
    text = text if isinstance(text, str) else os.fsdecode(text)
    return text if text.isprintable() else repr(text)
