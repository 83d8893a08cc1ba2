"""Defaults shared by the inference entry points (the translator, the photo pipeline, file and generation runs)."""

DEFAULT_BATCH_SIZE = 16
"""Images per forward pass."""
DEFAULT_MAX_FACES = 8
"""Faces translated per photo, largest first."""
