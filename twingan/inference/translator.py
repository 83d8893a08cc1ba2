"""The Python translation API: load a checkpoint, translate and embed images.

Accepted images (one, or a list of them):

* PIL images, any mode (transparency is composited over white, grayscale,
  CMYK and 16-bit are converted to 8-bit RGB);
* numpy arrays, uint8, (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grayscale;
  a 4-D (N, H, W, 3) array is a list of N images;
* torch tensors, float in [-1, 1], (3, H, W) or a batch (N, 3, H, W).

Every image is centre-cropped to a square and resized to the model resolution
exactly as the training data was (:func:`twingan.data.datasets.resize_square`:
area averaging when shrinking, bicubic when enlarging); tensors already at the
model resolution go in unchanged. Translations come back as RGB PIL images at
the model resolution.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image

from twingan.checkpoint import load_translator
from twingan.data.datasets import resize_square
from twingan.data.image_io import pil_to_tensor, tensor_to_pil, to_rgb
from twingan.errors import ConfigError
from twingan.utils.device import resolve_device
from twingan.models import TwinGAN

PathLike = Union[str, os.PathLike]
ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
Images = Union[ImageLike, Sequence[ImageLike]]

DEFAULT_BATCH_SIZE = 16
WHITE = (255, 255, 255)


class Translator:
    """A trained TwinGAN ready for inference (eval mode, no gradients), with its checkpoint metadata."""

    def __init__(self, model: TwinGAN, meta: dict[str, Any] | None = None, path: PathLike | None = None) -> None:
        self.model = model.eval()
        self.meta = dict(meta or {})
        self.path = Path(path) if path is not None else None

    @classmethod
    def load(cls, path: PathLike, device: str | torch.device = "auto", weights: str = "ema") -> "Translator":
        """Load a twingan checkpoint; ``device`` 'auto' picks CUDA when available; EMA weights by default."""
        model, meta = load_translator(path, device=resolve_device(device), weights=weights)
        return cls(model, meta, path)

    @property
    def domains(self) -> tuple[str, ...]:
        return self.model.domains

    @property
    def resolution(self) -> int:
        return self.model.resolution

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return f"Translator(domains={list(self.domains)}, resolution={self.resolution}, device={self.device})"

    def check_domain(self, domain: str, option: str = "domain") -> str:
        if domain not in self.domains:
            raise ConfigError(f"{option} {domain!r} is not a domain of this checkpoint; it knows {list(self.domains)}")
        return domain

    def source_domain(self, to: str, src: str | None = None) -> str:
        """The domain of the input images: ``src`` when given, else the only possible one.

        With two domains the source is the one that is not ``to``; a one-domain
        model reconstructs; with more domains the source is ambiguous and must
        be given.
        """
        self.check_domain(to, "target domain")
        if src is not None:
            return self.check_domain(src, "source domain")
        others = [d for d in self.domains if d != to]
        if len(others) > 1:
            raise ConfigError(
                f"this checkpoint knows {len(self.domains)} domains {list(self.domains)}; say which one the "
                f"input images are (--from / src=)"
            )
        return others[0] if others else to

    def preprocess(self, images: Images) -> torch.Tensor:
        """Images -> float32 (N, 3, R, R) batch in [-1, 1] on the CPU."""
        items, _ = _as_list(images)
        return torch.stack([self._to_model_tensor(item) for item in items])

    @torch.inference_mode()
    def translate_tensor(self, x: torch.Tensor, to: str, src: str, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        """(N, 3, R, R) in [-1, 1] -> translated (N, 3, R, R) on the CPU, unclamped model output."""
        self.check_domain(to, "target domain")
        self.check_domain(src, "source domain")
        _check_batch_size(batch_size)
        outputs = [
            self.model.translate(chunk.to(self.device), src, to).float().cpu() for chunk in x.split(batch_size)
        ]
        return torch.cat(outputs) if outputs else x.new_zeros((0, 3, self.resolution, self.resolution))

    def translate(
        self, images: Images, to: str, src: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Union[Image.Image, list[Image.Image]]:
        """Translate into domain ``to``; one image in gives one PIL image out, a list (or batch) gives a list."""
        src = self.source_domain(to, src)
        items, single = _as_list(images)
        if not items:
            return []
        batch = torch.stack([self._to_model_tensor(item) for item in items])
        pils = [tensor_to_pil(t) for t in self.translate_tensor(batch, to, src, batch_size)]
        return pils[0] if single else pils

    @torch.inference_mode()
    def embed(
        self, images: Images, domain: str, kind: str = "full", batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """float32 (N, D) L2-normalised embeddings (the 4x4 latent with ``domain``'s normalisation)."""
        self.check_domain(domain, "domain")
        if kind not in ("full", "pooled"):
            raise ConfigError(f"embedding kind must be 'full' or 'pooled', got {kind!r}")
        _check_batch_size(batch_size)
        items, _ = _as_list(images)
        batch = torch.stack([self._to_model_tensor(item) for item in items]) if items else None
        if batch is None:
            return np.zeros((0, self.embedding_dim(kind)), dtype=np.float32)
        vectors = [
            self.model.embed(chunk.to(self.device), domain, kind).float().cpu() for chunk in batch.split(batch_size)
        ]
        return torch.cat(vectors).numpy().astype(np.float32, copy=False)

    def embedding_dim(self, kind: str = "full") -> int:
        channels = self.model.encoder.latent_channels
        return channels * 16 if kind == "full" else channels

    def _to_model_tensor(self, item: ImageLike) -> torch.Tensor:
        """One image -> float32 (3, R, R) in [-1, 1] on the CPU."""
        res = self.resolution
        if isinstance(item, torch.Tensor):
            if item.dtype == torch.uint8 or not item.is_floating_point():
                raise ConfigError(f"image tensors must be float in [-1, 1], got dtype {item.dtype}")
            if item.dim() != 3 or item.shape[0] != 3:
                raise ConfigError(f"an image tensor must be (3, H, W), got shape {tuple(item.shape)}")
            if tuple(item.shape[1:]) == (res, res):
                return item.detach().float().cpu()
            item = tensor_to_pil(item)
        pil = _to_pil(item)
        return pil_to_tensor(Image.fromarray(resize_square(pil, res), "RGB"))


def _as_list(images: Images) -> tuple[list[ImageLike], bool]:
    """Split the accepted inputs into single images; the flag says whether one image was given."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images), False
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        return [images], True
    if isinstance(images, (list, tuple)):
        for item in images:
            if not isinstance(item, (Image.Image, np.ndarray, torch.Tensor)):
                raise ConfigError(f"expected PIL images, numpy arrays or tensors, got {type(item).__name__}")
        return list(images), False
    raise ConfigError(
        f"expected a PIL image, numpy array, tensor or a list of them, got {type(images).__name__}"
    )


def _to_pil(item: Union[Image.Image, np.ndarray]) -> Image.Image:
    if isinstance(item, Image.Image):
        return to_rgb(item, WHITE)
    if item.dtype != np.uint8:
        raise ConfigError(f"numpy images must be uint8 (H, W[, 3 or 4]), got dtype {item.dtype}")
    if item.ndim == 2:
        return Image.fromarray(item, "L").convert("RGB")
    if item.ndim == 3 and item.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(item), "RGB")
    if item.ndim == 3 and item.shape[2] == 4:
        return to_rgb(Image.fromarray(np.ascontiguousarray(item), "RGBA"), WHITE)
    raise ConfigError(f"numpy images must be (H, W), (H, W, 3) or (H, W, 4), got shape {item.shape}")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
