"""Checkpoints by URL: download once into torch.hub's cache, checked against the file's SHA-256.

Nothing is downloaded without a hash to check it against, and nothing is
downloaded at all when a local path is given. Without a network the error says
how to get the file another way.

A download cannot hang or fill the disk: connecting and every read time out
(:data:`TIMEOUT_S`), a server that trickles (less than :data:`MIN_PROGRESS_BYTES`
in :data:`PROGRESS_WINDOW_S`) is given up, and the body may not exceed
``max_bytes`` (refused before reading when the server announces more). The body
goes to a temporary file of :mod:`twingan.utils.atomic` beside the target, renamed
once its hash matches; one left by a killed download (SIGTERM, SIGKILL) is removed
by the next download into the cache, as are the ``.partial`` files of earlier
versions, which downloaded with torch.hub.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Union

import torch.hub

from twingan.version import __version__
from twingan.checkpoint import file_sha256
from twingan.errors import CheckpointError, ConfigError
from twingan.utils.atomic import atomic_path, remove_stale_temporaries

PathLike = Union[str, os.PathLike]

URL_SCHEMES = ("http", "https", "file")
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.safetensors$")
"""torch.hub's convention: ``name-<first hex digits of the sha256>.safetensors``."""
TIMEOUT_S = 30.0
"""Seconds to connect, and to wait for any byte once connected."""
MIN_PROGRESS_BYTES = 64 * 2**10
PROGRESS_WINDOW_S = 60.0
"""A download that receives less than MIN_PROGRESS_BYTES in this many seconds is given up."""
DEFAULT_MAX_BYTES = 2 * 2**30
"""The largest body downloaded unless the caller allows more (twingan releases are tens of MB, training
checkpoints of the largest models a few hundred)."""
CHUNK = 1 << 20
LEGACY_PARTIAL_AGE_S = 3600.0
"""A torch.hub ``.partial`` file of an earlier twingan, untouched this long, belongs to no running download."""


def resolve_pretrained(
    source: PathLike,
    sha256: str | None = None,
    cache_dir: PathLike | None = None,
    *,
    max_bytes: int | None = None,
) -> Path:
    """A local checkpoint path for ``source``: a path as is, or a URL downloaded once into the cache.

    A URL needs its SHA-256: ``sha256=`` (the whole hex digest) or torch.hub's file name convention
    ``name-<first hex digits>.safetensors``; the download is checked against it and a mismatching file
    is not kept. ``cache_dir`` defaults to torch.hub's checkpoint folder. ``max_bytes`` bounds the download
    (default :data:`DEFAULT_MAX_BYTES`; pass the file's size to stop at it). Without a network the error
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
    limit = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    if limit < 1:
        raise ConfigError(f"max_bytes must be positive, got {max_bytes!r}")
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / name
    if target.exists():
        if file_sha256(target).startswith(expected):
            return target
        raise CheckpointError(
            f"{target}: a cached file of that name has another sha256 than {expected}; remove it to download again"
        )
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(folder)
    _download(text, target, expected, limit)
    return target


def remove_stale_partials(folder: Path) -> None:
    """Temporary files of downloads that were killed: ours once their writer is gone, torch.hub's (earlier
    versions) once untouched for an hour."""
    remove_stale_temporaries(folder)
    for partial in folder.glob("*.safetensors.*.partial"):
        try:
            if time.time() - partial.stat().st_mtime > LEGACY_PARTIAL_AGE_S:
                partial.unlink()
        except FileNotFoundError:
            pass


def _download(url: str, target: Path, expected: str, max_bytes: int) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"twingan/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
            raise CheckpointError(f"{url}: no answer within {TIMEOUT_S:g} s; {_elsewhere()}") from exc
        raise CheckpointError(f"{url}: download failed ({exc}); {_elsewhere()}") from exc
    with response:
        announced = response.headers.get("Content-Length")
        size = int(announced) if announced and announced.isdigit() else None
        if size is not None and size > max_bytes:
            raise CheckpointError(f"{url}: the server announces {size} bytes, more than the bound of {max_bytes} "
                                  "(max_bytes); nothing was downloaded")
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            digest = _receive(url, response, fh, max_bytes, size)
            if not digest.startswith(expected):
                raise CheckpointError(f"{url}: the download does not match its sha256 {expected} (got {digest}), "
                                      "not kept")


def _receive(url: str, response: Any, fh: Any, max_bytes: int, size: int | None) -> str:
    """Copy the body to ``fh`` under the bounds; its SHA-256. Network failures become CheckpointError, which
    the atomic write lets through after removing its temporary file."""
    read = getattr(response, "read1", response.read)
    digest = hashlib.sha256()
    received, window_start, window_bytes = 0, time.monotonic(), 0
    while True:
        try:
            block = read(CHUNK)
        except TimeoutError as exc:
            raise CheckpointError(f"{url}: the server stopped sending for {TIMEOUT_S:g} s; not kept") from exc
        except OSError as exc:
            raise CheckpointError(f"{url}: the download broke off ({exc}); not kept") from exc
        if not block:
            break
        received += len(block)
        if received > max_bytes:
            raise CheckpointError(f"{url}: the body is larger than the bound of {max_bytes} bytes (max_bytes); "
                                  "not kept")
        digest.update(block)
        fh.write(block)
        window_bytes += len(block)
        now = time.monotonic()
        if window_bytes >= MIN_PROGRESS_BYTES:
            window_start, window_bytes = now, 0
        elif now - window_start > PROGRESS_WINDOW_S:
            raise CheckpointError(f"{url}: the server sends too slowly (less than {MIN_PROGRESS_BYTES} bytes in "
                                  f"{PROGRESS_WINDOW_S:g} s); not kept")
    if size is not None and received != size:
        raise CheckpointError(f"{url}: the download ended after {received} of {size} bytes; not kept")
    return digest.hexdigest()


def _elsewhere() -> str:
    return "without a network, download the file elsewhere and pass its path"

