"""Inference: the translation API, the photo -> faces -> translations pipeline, file batches and export.

``twingan.load(path)`` (or :meth:`Translator.load`) is the entry point for
Python users; `twingan translate`, `twingan generate` and `twingan export` are
built on the same pieces.
"""
from twingan.inference.generation import generate_images, latent_walk
from twingan.inference.translator import Translator

__all__ = ["Translator", "generate_images", "latent_walk"]
