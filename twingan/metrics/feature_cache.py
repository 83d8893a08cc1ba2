"""Folder features and FID statistics cached by content.

The cache key is a sha256 over (a) every image file of the folder (or of the
chosen files of it), in sorted order, as its relative name plus the sha256 of
its bytes, (b) the Inception weights digest, (c) the resize pipeline and (d) the
size the images are first resized to, when they are (the model resolution). Any added, removed, renamed or
edited file, other weights or another resize give a new key, so a stale entry
is never used; a folder that is copied or moved keeps its key. Entries are
.npz files written atomically under ``$TWINGAN_CACHE/fid`` (default
``~/.cache/twingan/fid``).
"""
from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import Union

import numpy as np

from twingan.metrics.folder_features import FolderFeatures, extract_folder_features, list_folder_images
from twingan.metrics.inception import InceptionFeatures
from twingan.utils.atomic import atomic_path

PathLike = Union[str, os.PathLike]

CACHE_ENV_VAR = "TWINGAN_CACHE"
CACHE_FORMAT = 1
"""Bumped whenever the entry layout changes; part of the key."""
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$TWINGAN_CACHE/fid``, or ``~/.cache/twingan/fid`` when the variable is unset."""
    root = os.environ.get(CACHE_ENV_VAR) or "~/.cache/twingan"
    return Path(root).expanduser() / "fid"


def folder_content_hash(root: PathLike, files: list[Path] | None = None) -> str:
    """sha256 over the sorted image files of ``root`` (or ``files`` in it): relative name and sha256 of the
    bytes of each."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(files) if files is not None else list_folder_images(root):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(_file_sha256(path).encode("ascii") + b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(folder_hash: str, weights_id: str, size: int | None = None) -> str:
    """The entry name for a folder content hash under given weights, resize pipeline and first resize."""
    first_resize = "" if size is None else f"|square{int(size)}"
    return hashlib.sha256(f"twingan-fid-v{CACHE_FORMAT}|{folder_hash}|{weights_id}{first_resize}".encode()).hexdigest()


def cached_folder_features(
    root: PathLike,
    extractor: InceptionFeatures,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    size: int | None = None,
    files: list[Path] | None = None,
) -> FolderFeatures:
    """Features and statistics of ``root`` (or of ``files`` in it), resized to ``size`` first when given; from
    the cache when the content is unchanged, else computed and stored. Rows follow the sorted file order."""
    files = sorted(files) if files is not None else None
    if not use_cache:
        return extract_folder_features(root, extractor, progress=progress, size=size, files=files)
    entry = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entry = entry / f"{cache_key(folder_content_hash(root, files), extractor.weights_id, size)}.npz"
    if entry.is_file():
        cached = _read_entry(entry)
        if cached is not None:
            return cached
    result = extract_folder_features(root, extractor, progress=progress, size=size, files=files)
    _write_entry(entry, result)
    return result


def _write_entry(entry: Path, result: FolderFeatures) -> None:
    """Features, skipped files and, for folders of at least as many images as feature dimensions, the FID
    statistics (below that the covariance is singular, FID works from the features, and a 2048 x 2048
    covariance would be 32 MB per small test folder)."""
    statistics = {}
    if result.count >= result.features.shape[1]:
        statistics = dict(zip(("mu", "sigma"), result.statistics()))
    skipped = result.skipped
    with atomic_path(entry) as tmp:
        np.savez(
            tmp,
            features=result.features.astype(np.float32),
            skipped_paths=np.array([p for p, _ in skipped], dtype=np.str_),
            skipped_reasons=np.array([r for _, r in skipped], dtype=np.str_),
            **statistics,
        )


def _read_entry(entry: Path) -> FolderFeatures | None:
    """The stored entry, or None (with a warning; it is then recomputed and replaced) when it is unreadable."""
    try:
        with np.load(entry, allow_pickle=False) as data:
            return FolderFeatures(
                features=data["features"],
                skipped=list(zip(data["skipped_paths"].tolist(), data["skipped_reasons"].tolist())),
                from_cache=True,
                mu=data["mu"] if "mu" in data.files else None,
                sigma=data["sigma"] if "sigma" in data.files else None,
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        warnings.warn(f"{entry}: unreadable FID cache entry ({exc}); recomputing it", RuntimeWarning, stacklevel=3)
        return None
