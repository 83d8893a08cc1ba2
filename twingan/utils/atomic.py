"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash or an exception while writing leaves the previous file (or nothing)
in place, never a half-written one. Temporary files are named
``.tw.<pid>.<random>.tmp<suffix>``, short whatever the target's name (a target
whose name is near the file system's 255-byte limit still gets one), and their
writer holds an advisory lock (``flock``) on each until it is renamed. A process
killed mid-write (SIGKILL, power loss) leaves one behind;
:func:`remove_stale_temporaries` recognises it by its name and removes it once
nobody holds its lock and its process is gone: a live writer's file is never
touched, by this process, another one, or a process on another machine that
shares the folder. Files are created with the permissions the umask gives (not
mkstemp's 0600). A failed write (disk full, no permission) raises
:class:`~twingan.errors.OutputError` naming the target.
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

try:
    import fcntl
except ImportError:  # not on Windows: liveness falls back to the process id alone
    fcntl = None  # type: ignore[assignment]

TEMPORARY_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[^.]*)?$")
"""The names :func:`atomic_path` gives its temporary files (``.tw.<pid>.<random>.tmp<suffix>``), and those of
earlier versions (``.<target name>.<pid>.<random>.tmp<suffix>``)."""
TEMPORARY_PREFIX = ".tw"
MAX_KEPT_SUFFIX = 16
"""A target suffix longer than this (a name with a dot far from its end) is not repeated in the temporary name."""


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
    handles: list[int] = []
    try:
        try:
            for target in targets:
                tmp, handle = _temporary(target)
                temporaries.append(tmp)
                handles.append(handle)
            yield temporaries
            for handle in handles:
                os.fsync(handle)
            for tmp, target in zip(temporaries, targets):
                os.replace(tmp, target)
            for folder in {target.parent for target in targets}:
                _fsync_dir(folder)
        except OutputError:
            raise
        except OSError as exc:
            failed = targets[len(temporaries)] if len(temporaries) < len(targets) else _named(exc, temporaries, targets)
            raise write_failure(failed, exc) from exc
    finally:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        for handle in handles:  # closing drops the lock that told cleanups the file was being written
            os.close(handle)


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
    """Remove the temporary files of atomic writes whose writer is gone; returns how many.

    A file counts as stale when nobody holds its lock and the process named in it is not alive. A temporary
    file named with this process's own id and not locked counts as stale too: a restarted container may reuse
    the id of the run that was killed.
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
            if match and path.is_file() and writer_gone(path, int(match.group("pid"))):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


def writer_gone(path: PathLike, pid: int) -> bool:
    """Whether the temporary file ``path``, named with process id ``pid``, has no live writer: nobody holds its
    lock and that process is not alive (or is this one, which is not writing it)."""
    if _locked_by_someone(Path(path)):
        return False
    return not _alive(pid)


def _locked_by_someone(path: Path) -> bool:
    """Whether another open file holds a ``flock`` on ``path`` (False where locks are not supported)."""
    if fcntl is None:
        return False
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks: the process id decides
        return False
    finally:
        os.close(handle)
    return False


def _temporary(target: Path) -> tuple[Path, int]:
    """A new temporary file beside ``target``, locked, and its open descriptor (the caller closes it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if len(target.suffix) <= MAX_KEPT_SUFFIX else ""
    handle, name = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}.{os.getpid()}.", suffix=f".tmp{suffix}",
                                    dir=target.parent)
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):  # a file system without locks: cleanups go by the process id
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.fchmod(handle, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; give the usual permissions
    except BaseException:
        os.close(handle)
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), handle


def _named(exc: OSError, temporaries: Sequence[Path], targets: Sequence[Path]) -> Path:
    """The target an OSError is about (by the file name it gives, else the first target)."""
    for name in (exc.filename, exc.filename2):
        if name is None:
            continue
        path = Path(os.fsdecode(name))
        for tmp, target in zip(temporaries, targets):
            if path in (tmp, target):
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

