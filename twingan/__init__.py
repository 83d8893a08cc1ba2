"""twingan: unpaired face-domain translation with TwinGAN, and cross-domain face search."""

__version__ = "0.1.0"
