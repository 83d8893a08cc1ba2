"""Inference: the translation API, the photo -> faces -> translations pipeline, file batches and export.

``twingan.load(path)`` (or :meth:`Translator.load`) is the entry point for
Python users; `twingan translate` and `twingan export` are built on the same
pieces.
"""
from twingan.inference.translator import Translator

__all__ = ["Translator"]
