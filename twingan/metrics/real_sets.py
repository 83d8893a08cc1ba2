"""Folders of real images per domain, seen at a model's resolution, and what the real-image metrics share.

`twingan eval` scores a checkpoint on real folders: ``--real`` (test images of
a domain, translated), ``--target`` (real images of a domain the translations
are compared with), ``--train`` (training reals of a domain: the independent
style judge is fitted on them and the KID floor is drawn from them) and
``--gender-faces`` (UTKFace-named photos for the gender judge). :class:`RealSets`
holds them and computes, once per evaluation, what several metrics need:

* every folder is loaded once, squared and resized to the model resolution the
  way training data is (:func:`~twingan.data.image_io.resize_square`), as uint8;
* each system's translations of each source folder are made once;
* Inception features are memoised by the bytes of the images (a copy of the
  input costs nothing twice) and the features of the reference folders are
  cached on disk by content and size (:mod:`twingan.metrics.feature_cache`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Union

import numpy as np
import torch

from twingan.data.image_io import load_image, resize_square, tensor_to_uint8, uint8_to_tensor
from twingan.errors import DatasetError, ImageLoadError
from twingan.metrics.feature_cache import cached_folder_features
from twingan.metrics.folder_features import list_folder_images
from twingan.metrics.inception import InceptionFeatures
from twingan.metrics.paired import Translatable, require_finite
from twingan.utils.progress import progress_bar

FLOOR_SEED = 0
"""Seed of the floor's draw from a training folder (fixed: every evaluation compares the same images)."""


@dataclass
class FolderImages:
    """A folder's readable images at one resolution: uint8 (N, 3, R, R), their files and the files skipped."""

    root: Path
    images: torch.Tensor
    files: list[Path]
    skipped: list[tuple[str, str]]

    @property
    def count(self) -> int:
        return int(self.images.shape[0])

    def as_float(self) -> torch.Tensor:
        """The images in [-1, 1], the models' input convention."""
        return uint8_to_tensor(self.images)


def load_folder(root: Path, resolution: int, files: Iterable[Path] | None = None, progress: bool = False,
                minimum: int = 2) -> FolderImages:
    """Every readable image of ``root`` (or ``files`` in it), squared and resized to ``resolution``; unreadable
    files are skipped and listed. DatasetError when fewer than ``minimum`` can be read."""
    root = Path(root)
    files = list_folder_images(root) if files is None else sorted(files)
    arrays, kept, skipped = [], [], []
    for path in progress_bar(files, desc=f"read {root.name}", unit="img", disable=not progress):
        try:
            arrays.append(resize_square(load_image(path), resolution))
            kept.append(path)
        except ImageLoadError as exc:
            skipped.append((path.relative_to(root).as_posix(), exc.reason))
    if len(arrays) < minimum:
        first = f" (first unreadable: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DatasetError(f"{root}: needs at least {minimum} readable images, got {len(arrays)}{first}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return FolderImages(root, images, kept, skipped)


def _device_of(system: Translatable) -> torch.device:
    if isinstance(system, torch.nn.Module):
        for parameter in system.parameters():
            return parameter.device
    return torch.device("cpu")


@torch.no_grad()
def translate_all(system: Translatable, images: torch.Tensor, src: str, dst: str, batch_size: int) -> torch.Tensor:
    """uint8 (N, 3, R, R) -> the system's translations src -> dst as uint8; NonFiniteOutputError on NaN."""
    device = _device_of(system)
    chunks = []
    for chunk in images.split(batch_size):
        fake = system.translate(uint8_to_tensor(chunk).to(device), src, dst).float().cpu()
        chunks.append(tensor_to_uint8(require_finite(fake, "translations")))
    return torch.cat(chunks)


@torch.no_grad()
def embed_all(system: Translatable, images: torch.Tensor, domain: str, batch_size: int,
              kind: str = "full") -> np.ndarray:
    """The system's embeddings (N, D) of uint8 images taken in ``domain``."""
    device = _device_of(system)
    chunks = [system.embed(uint8_to_tensor(chunk).to(device), domain, kind).float().cpu()
              for chunk in images.split(batch_size)]
    return require_finite(torch.cat(chunks), "embeddings").numpy().astype(np.float64)


@dataclass
class RealSets:
    """The real folders of one evaluation (domain -> folder) and the memoised work on them."""

    resolution: int
    batch_size: int = 32
    real: dict[str, Path] = field(default_factory=dict)
    target: dict[str, Path] = field(default_factory=dict)
    train: dict[str, Path] = field(default_factory=dict)
    gender_faces: dict[str, Path] = field(default_factory=dict)
    inception: Union[str, Path, InceptionFeatures, None] = None
    device: torch.device = torch.device("cpu")
    cache_dir: Path | None = None
    progress: bool = False
    _folders: dict[tuple[str, Path], FolderImages] = field(default_factory=dict, repr=False)
    _translations: dict[tuple[str, str, str, Path], torch.Tensor] = field(default_factory=dict, repr=False)
    _features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _extractor: InceptionFeatures | None = field(default=None, repr=False)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """(source, target) domain pairs scored: each --real domain against each other --target domain."""
        return [(src, dst) for src in self.real for dst in self.target if src != dst]

    def folder(self, root: Path) -> FolderImages:
        """A folder's images at the model resolution, read once."""
        key = ("all", Path(root))
        if key not in self._folders:
            self._folders[key] = load_folder(Path(root), self.resolution, progress=self.progress)
        return self._folders[key]

    def floor_draw(self, domain: str, count: int) -> FolderImages:
        """``count`` images of the training folder of ``domain`` drawn with :data:`FLOOR_SEED` (all of them if
        it holds fewer): real images of the target domain that play the translations' part in the floor."""
        root = Path(self.train[domain])
        key = (f"floor{count}", root)
        if key not in self._folders:
            files = list_folder_images(root)
            chosen = np.random.default_rng(FLOOR_SEED).permutation(len(files))[:count]
            self._folders[key] = load_folder(root, self.resolution, [files[i] for i in chosen], self.progress)
        return self._folders[key]

    def translations(self, name: str, system: Translatable, src: str, dst: str, root: Path) -> torch.Tensor:
        """uint8 translations src -> dst of the images of ``root`` by the system called ``name``, made once."""
        key = (name, src, dst, Path(root))
        if key not in self._translations:
            self._translations[key] = translate_all(system, self.folder(root).images, src, dst, self.batch_size)
        return self._translations[key]

    @property
    def extractor(self) -> InceptionFeatures:
        """The Inception feature extractor, loaded on first use."""
        if self._extractor is None:
            if isinstance(self.inception, InceptionFeatures):
                self._extractor = self.inception
            else:
                self._extractor = InceptionFeatures.from_path(self.inception, device=self.device,
                                                              batch_size=self.batch_size)
        return self._extractor

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Inception features (N, 2048) of uint8 images, memoised by their bytes."""
        key = self._key(images)
        if key not in self._features:
            self._features[key] = self.extractor(images)
        return self._features[key]

    def folder_features(self, root: Path, images: FolderImages | None = None) -> np.ndarray:
        """Inception features of a folder's images (``images``: a draw from it, else all of it) at the model
        resolution, cached on disk by content and size, and memoised for :meth:`features` of the same images."""
        images = images if images is not None else self.folder(root)
        features = cached_folder_features(Path(root), self.extractor, cache_dir=self.cache_dir,
                                          progress=self.progress, size=self.resolution, files=images.files).features
        if len(features) == images.count:
            self._features.setdefault(self._key(images.images), features)
        return features

    @staticmethod
    def _key(images: torch.Tensor) -> str:
        return hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest() + f":{tuple(images.shape)}"
