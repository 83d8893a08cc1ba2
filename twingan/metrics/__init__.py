"""Image-set metrics: FID and KID on the standard TF-Inception features.

:func:`compute_fid_kid` is the entry point used by `twingan fid` and
`twingan eval`: each side is a folder of images (features cached by content)
or an already computed feature array (N, 2048), e.g. a model's translations
run through an :class:`InceptionFeatures` extractor.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from twingan.errors import ConfigError, DatasetError
from twingan.metrics.feature_cache import cached_folder_features, default_cache_dir
from twingan.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from twingan.metrics.folder_features import FolderFeatures
from twingan.metrics.inception import (
    FEATURE_DIM,
    INCEPTION_ENV_VAR,
    INCEPTION_URL,
    FIDInception3,
    InceptionFeatures,
    load_fid_inception,
    load_inception,
    resolve_device,
)
from twingan.metrics.kid import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_SUBSET_SIZE,
    DEFAULT_SUBSETS,
    kernel_inception_distance,
    kid_blocks,
    mmd2_unbiased,
)

PathLike = Union[str, os.PathLike]

__all__ = [
    "FEATURE_DIM",
    "FIDInception3",
    "INCEPTION_ENV_VAR",
    "INCEPTION_URL",
    "InceptionFeatures",
    "compute_fid_kid",
    "default_cache_dir",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "kernel_inception_distance",
    "kid_blocks",
    "kid_of_features",
    "load_fid_inception",
    "load_inception",
    "mmd2_unbiased",
]

KID_ESTIMATORS = ("subsets", "blocks")
"""``subsets``: StyleGAN / clean-fid (random subsets of min(1000, n), std over subsets); ``blocks``: TF-GAN as
U-GAT-IT ran it (blocks of at most 10, standard error over blocks)."""


def kid_of_features(
    features_a: np.ndarray,
    features_b: np.ndarray,
    estimator: str = "subsets",
    *,
    subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    block_size: int = DEFAULT_BLOCK_SIZE,
    seed: int = 0,
) -> dict[str, Any]:
    """KID mean and spread by one of :data:`KID_ESTIMATORS`, with the settings that produced them."""
    if estimator == "subsets":
        mean, std = kernel_inception_distance(features_a, features_b, subsets, subset_size, seed)
        return {"kid_mean": mean, "kid_std": std, "kid_estimator": estimator, "kid_subsets": subsets,
                "kid_subset_size": min(subset_size, len(features_a), len(features_b))}
    if estimator == "blocks":
        mean, std = kid_blocks(features_a, features_b, block_size, seed)
        return {"kid_mean": mean, "kid_std": std, "kid_estimator": estimator, "kid_block_size": block_size,
                "kid_blocks": -(-max(len(features_a), len(features_b)) // block_size)}
    raise ValueError(f"KID estimator must be one of {', '.join(KID_ESTIMATORS)}, got {estimator!r}")


def compute_fid_kid(
    a: PathLike | np.ndarray,
    b: PathLike | np.ndarray,
    inception_path: PathLike | None = None,
    *,
    extractor: InceptionFeatures | None = None,
    device: str = "auto",
    batch_size: int = 32,
    kid_subsets: int = DEFAULT_SUBSETS,
    kid_subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = 0,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    size: int | None = None,
    kid_estimator: str = "subsets",
    kid_block_size: int = DEFAULT_BLOCK_SIZE,
) -> dict[str, Any]:
    """FID and KID between two image sets; each is a folder or a feature array (N, 2048).

    The Inception network (:func:`~twingan.metrics.inception.load_inception`: ``inception_path``,
    $TWINGAN_INCEPTION or the fid extra's TorchScript) is loaded only when a folder has to be read and
    no ``extractor`` is given. With ``size``, folder images are first squared and resized to ``size``
    (a model's output resolution). ``kid_estimator`` is one of :data:`KID_ESTIMATORS`. Returns a
    JSON-ready dict: fid, kid_mean, kid_std, the KID estimator and its settings, the number of images
    used and skipped per side, whether each side came from the cache, the first resize, and the
    weights/resize identifier when Inception ran.
    """
    if kid_estimator not in KID_ESTIMATORS:
        raise ValueError(f"KID estimator must be one of {', '.join(KID_ESTIMATORS)}, got {kid_estimator!r}")
    needs_network = not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray))
    if needs_network and extractor is None:
        extractor = InceptionFeatures.from_path(inception_path, device=resolve_device(device), batch_size=batch_size)
    side_a = _side(a, "A", extractor, cache_dir, use_cache, progress, size)
    side_b = _side(b, "B", extractor, cache_dir, use_cache, progress, size)
    try:
        kid = kid_of_features(side_a.features, side_b.features, kid_estimator, subsets=kid_subsets,
                              subset_size=kid_subset_size, block_size=kid_block_size, seed=seed)
    except ValueError as exc:
        raise ConfigError(f"KID ({kid_estimator}): {exc}") from exc
    return {
        "fid": fid_from_features(side_a.features, side_b.features, side_a.statistics(), side_b.statistics()),
        **kid,
        "size": size,
        "n_a": side_a.count,
        "n_b": side_b.count,
        "skipped_a": len(side_a.skipped),
        "skipped_b": len(side_b.skipped),
        "cached_a": side_a.from_cache,
        "cached_b": side_b.from_cache,
        "inception": extractor.weights_id if extractor is not None else None,
    }


def _side(
    source: PathLike | np.ndarray,
    label: str,
    extractor: InceptionFeatures | None,
    cache_dir: PathLike | None,
    use_cache: bool,
    progress: bool,
    size: int | None,
) -> FolderFeatures:
    if isinstance(source, np.ndarray):
        if source.ndim != 2 or source.shape[1] != FEATURE_DIM:
            raise ValueError(f"set {label}: features must be (N, {FEATURE_DIM}), got shape {source.shape}")
        side = FolderFeatures(features=source)
    else:
        assert extractor is not None
        side = cached_folder_features(Path(source), extractor, cache_dir=cache_dir, use_cache=use_cache,
                                      progress=progress, size=size)
    if side.count < 2:
        where = f"{source}" if not isinstance(source, np.ndarray) else f"set {label}"
        raise DatasetError(f"{where}: FID and KID need at least 2 images, got {side.count}")
    return side
