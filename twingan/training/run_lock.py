"""One owner per run folder: an advisory lock that a training process holds from start to end.

The lock is a ``flock`` on ``<run_dir>/train.lock``, which also names its holder (process id, host, start time) for
the message a second process gets. The kernel drops the lock when its holder exits, however it exits (SIGKILL
included), so a lock left by a killed run is simply taken by the next one; the file is never deleted, since
deleting a lock file while another process waits on it would let two processes own the folder.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from twingan.errors import ConfigError, quoted, write_failure

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "train.lock"

log = logging.getLogger("twingan.train")


class RunFolderBusy(ConfigError):
    """Another process trains into the run folder."""


class RunLock:
    """The lock of one run folder; :meth:`acquire` it before reading or writing anything there."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._handle: int | None = None

    def acquire(self) -> None:
        """Own the folder, or raise RunFolderBusy naming the process that does."""
        if fcntl is None:
            log.warning("no advisory locks on this platform: nothing stops a second run from using %s", self.root)
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise write_failure(self.path, exc) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(handle))
            os.close(handle)
            raise RunFolderBusy(
                f"run folder {quoted(self.root)} is in use by another training run ({holder}); wait for it to end "
                "or stop it, or train into another run_dir"
            ) from None
        previous = _read_holder(handle)
        if previous:
            log.info("run folder %s: its previous owner (%s) is gone; this run takes it over", self.root,
                     _describe(previous))
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(handle, 0)
        os.pwrite(handle, (json.dumps(record) + "\n").encode("utf-8"), 0)
        self._handle = handle

    def release(self) -> None:
        """Give the folder up (the file stays: see the module docstring)."""
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None


def _read_holder(handle: int) -> dict:
    try:
        record = json.loads(os.pread(handle, 4096, 0).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "a process that has not said which yet"
    where = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"pid {holder['pid']}{where}{since}"
