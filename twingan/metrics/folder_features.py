"""Inception features of every readable image in a folder.

Images go through the toolkit's one loader (:func:`~twingan.data.image_io.load_image`);
files it refuses are skipped and reported (path and reason), never silently
dropped. With ``size``, each image is first centre-cropped and resized to that
size the way training data is (:func:`~twingan.data.image_io.resize_square`), so
real images are compared with a model's outputs at the model's resolution; the
resize to 299 and the normalisation are the extractor's (clean-fid's "clean" mode).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from twingan.data.image_io import iter_image_files, load_image, resize_square
from twingan.errors import DatasetError, ImageLoadError
from twingan.metrics.fid import feature_statistics
from twingan.metrics.inception import InceptionFeatures
from twingan.utils.progress import progress_bar

PathLike = Union[str, os.PathLike]


@dataclass
class FolderFeatures:
    """Features (N, 2048) of a folder's readable images, their FID statistics and the files skipped."""

    features: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path relative to the folder, reason) of each file that could not be read."""
    from_cache: bool = False
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float64)

    @property
    def count(self) -> int:
        return int(self.features.shape[0])

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """FID mean and covariance, computed once (or restored from the cache)."""
        if self.mu is None or self.sigma is None:
            self.mu, self.sigma = feature_statistics(self.features)
        return self.mu, self.sigma


def list_folder_images(root: PathLike) -> list[Path]:
    """Image files of ``root`` (sorted); DatasetError when it is not a folder or holds none."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder not found (or not a folder)")
    files = list(iter_image_files(root))
    if not files:
        raise DatasetError(f"{root}: no image files found (looked for the usual extensions, recursively)")
    return files


def extract_folder_features(
    root: PathLike,
    extractor: InceptionFeatures,
    progress: bool = True,
    size: int | None = None,
    files: list[Path] | None = None,
) -> FolderFeatures:
    """Run the extractor over every readable image of ``root`` (or only ``files``, paths inside it), in batches
    of ``extractor.batch_size``; with ``size``, each image is first squared and resized to ``size``."""
    root = Path(root)
    files = list_folder_images(root) if files is None else files
    chunks: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    batch: list = []
    with progress_bar(total=len(files), desc=f"Inception features {root.name}", unit="img",
                      disable=not progress) as bar:
        for index, path in enumerate(files):
            try:
                image = load_image(path)
                batch.append(image if size is None else resize_square(image, size)[None].transpose(0, 3, 1, 2))
            except ImageLoadError as exc:
                skipped.append((path.relative_to(root).as_posix(), exc.reason))
                bar.set_postfix(skipped=len(skipped), refresh=False)
            if batch and (len(batch) == extractor.batch_size or index == len(files) - 1):
                chunks.append(extractor(batch if size is None else np.concatenate(batch)))
                batch = []
            bar.update(1)
    if not chunks:
        raise DatasetError(f"{root}: none of the {len(files)} image files could be read (first: {skipped[0][1]})")
    return FolderFeatures(features=np.concatenate(chunks), skipped=skipped)
