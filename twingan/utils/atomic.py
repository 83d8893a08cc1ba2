"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash or an exception while writing leaves the previous file (or nothing)
in place, never a half-written one.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    Use this for libraries that want a file name to write to (safetensors, faiss,
    PIL). The temporary file keeps the target's suffix so format detection by
    extension still works.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(target: PathLike, mode: str = "w", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``target`` only if the block succeeds."""
    if "r" in mode or "a" in mode:
        raise ValueError("atomic_open is for writing a whole file ('w' or 'wb')")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(target) as tmp:
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh


def atomic_write_bytes(target: PathLike, data: bytes) -> None:
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def atomic_write_text(target: PathLike, text: str) -> None:
    with atomic_open(target, "w") as fh:
        fh.write(text)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
