"""The web demo behind `twingan serve`: translate a selfie (upload or webcam) and search similar faces.

:mod:`twingan.web.handlers` does the work with plain functions (no Gradio);
:mod:`twingan.web.app` builds the Gradio page on top (the ``web`` extra:
``pip install "twingan[web]"``).
"""
from twingan.web.handlers import WebDemo, WebInputError, WebLimits, decode_upload

__all__ = ["WebDemo", "WebInputError", "WebLimits", "decode_upload"]
