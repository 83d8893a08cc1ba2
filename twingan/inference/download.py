"""Checkpoints by URL: download once into torch.hub's cache, checked against the file's SHA-256.

Nothing is downloaded without a hash to check it against, and nothing is
downloaded at all when a local path is given. Without a network the error says
how to get the file another way.
"""
from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Union

import torch.hub

from twingan.checkpoint import file_sha256
from twingan.errors import CheckpointError, ConfigError

PathLike = Union[str, os.PathLike]

URL_SCHEMES = ("http", "https", "file")
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.safetensors$")
"""torch.hub's convention: ``name-<first hex digits of the sha256>.safetensors``."""


def resolve_pretrained(source: PathLike, sha256: str | None = None, cache_dir: PathLike | None = None) -> Path:
    """A local checkpoint path for ``source``: a path as is, or a URL downloaded once into the cache.

    A URL needs its SHA-256: ``sha256=`` (the whole hex digest) or torch.hub's file name convention
    ``name-<first hex digits>.safetensors``; the download is checked against it and a mismatching file
    is not kept. ``cache_dir`` defaults to torch.hub's checkpoint folder. Without a network the error
    says to download the file elsewhere and pass its path.
    """
    text = os.fspath(source)
    scheme = urllib.parse.urlparse(text).scheme
    if scheme not in URL_SCHEMES:
        return Path(text)
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(text).path)).name
    if not name.endswith(".safetensors"):
        raise ConfigError(f"{text}: a twingan checkpoint URL must name a .safetensors file")
    expected = (sha256 or "").lower()
    if not expected:
        match = _HASH_IN_NAME.search(name)
        if match is None:
            raise ConfigError(
                f"{text}: give the file's sha256 (sha256=...) or use a URL whose file name ends in "
                "-<first 8+ hex digits of its sha256>.safetensors; twingan checks every download"
            )
        expected = match.group(1)
    if not re.fullmatch(r"[a-f0-9]{8,64}", expected):
        raise ConfigError(f"sha256 must be 8 to 64 hex digits, got {sha256!r}")
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / name
    if target.exists():
        if file_sha256(target).startswith(expected):
            return target
        raise CheckpointError(
            f"{target}: a cached file of that name has another sha256 than {expected}; remove it to download again"
        )
    folder.mkdir(parents=True, exist_ok=True)
    try:  # torch.hub writes a temporary file beside the target, checks its hash, then renames it
        torch.hub.download_url_to_file(text, str(target), hash_prefix=expected, progress=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{text}: the download does not match its sha256, not kept ({exc})") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise CheckpointError(
            f"{text}: download failed ({exc}); without a network, download the file elsewhere and pass its path"
        ) from exc
    return target
