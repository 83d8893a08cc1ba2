"""Errors the toolkit raises for bad input; the CLI prints them as one clear line."""
from __future__ import annotations


class TwinGANError(Exception):
    """Base class: a problem with the user's input, files or options (not a bug)."""


class ConfigError(TwinGANError):
    """An option or configuration value is missing, unknown or out of range."""


class ImageLoadError(TwinGANError):
    """An image file could not be read; ``reason`` says why in a few words."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class CheckpointError(TwinGANError):
    """A checkpoint file is missing, foreign, truncated or does not match the request."""


class DatasetError(TwinGANError):
    """A dataset is missing, empty or laid out differently than expected."""
