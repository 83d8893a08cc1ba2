"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash or an exception while writing leaves the previous file (or nothing)
in place, never a half-written one. Temporary files are named
``.<target name>.<pid>.<random>.tmp<suffix>``: a process killed mid-write
(SIGKILL, power loss) leaves one behind, and :func:`remove_stale_temporaries`
recognises it by that name and removes it once its process is gone. Files are
created with the permissions the umask gives (not mkstemp's 0600). A failed
write (disk full, no permission) raises :class:`~twingan.errors.OutputError`
naming the target.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator, Sequence, Union

from twingan.errors import OutputError, write_failure

PathLike = Union[str, os.PathLike]

TEMPORARY_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[^.]*)?$")
"""The names :func:`atomic_path` gives its temporary files."""


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    Use this for libraries that want a file name to write to (faiss, PIL). The
    temporary file keeps the target's suffix so format detection by extension
    still works. An OSError in the block becomes an OutputError naming ``target``.
    """
    with atomic_paths([target]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(targets: Sequence[PathLike]) -> Iterator[list[Path]]:
    """Temporary paths for several files that are published together once the block has written them all.

    Nothing is renamed until every file is complete, then the files are renamed in the order given: put
    last the file whose presence says the set is complete (a crash between two renames leaves that one out).
    """
    targets = [Path(t) for t in targets]
    temporaries: list[Path] = []
    try:
        try:
            for target in targets:
                temporaries.append(_temporary(target))
            yield temporaries
            for tmp in temporaries:
                _fsync_file(tmp)
            for tmp, target in zip(temporaries, targets):
                os.replace(tmp, target)
            for folder in {target.parent for target in targets}:
                _fsync_dir(folder)
        except OutputError:
            raise
        except OSError as exc:
            failed = targets[len(temporaries)] if len(temporaries) < len(targets) else _named(exc, targets)
            raise write_failure(failed, exc) from exc
    finally:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
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


def remove_stale_temporaries(folder: PathLike, recursive: bool = False) -> int:
    """Remove the temporary files of atomic writes whose process has died; returns how many.

    A temporary file of this process counts as stale too: call this before the process starts writing
    into ``folder`` (a restarted container may reuse the pid of the run that was killed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    walk = os.walk(folder) if recursive else [(str(folder), [], [p.name for p in folder.iterdir()])]
    for dirpath, _, names in walk:
        for name in names:
            match = TEMPORARY_NAME.match(name)
            path = Path(dirpath) / name
            if match and path.is_file() and not _alive(int(match.group("pid"))):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


def _temporary(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=f".tmp{target.suffix}",
                                dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; give the usual permissions
    finally:
        os.close(fd)
    return Path(name)


def _named(exc: OSError, targets: Sequence[Path]) -> Path:
    """The target an OSError is about (by its file name, else the first target)."""
    for name in (exc.filename, exc.filename2):
        for target in targets:
            if name is not None and Path(os.fsdecode(name)).name.startswith(f".{target.name}."):
                return target
    return targets[0]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    """The process umask, read without changing it where Linux tells it (setting it races other threads)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask

