"""SIGTERM and SIGINT during training: the first asks for a clean stop, a second one aborts at once.

Schedulers (SLURM, Kubernetes) send SIGTERM some time before they kill a job, and Ctrl-C sends SIGINT. The first
of either only sets a flag; the training loop finishes the step it is in, writes a checkpoint and returns. The
handlers that were there before come back at the first signal's arrival, so a second signal does what it would
have done without twingan: SIGTERM ends the process, SIGINT raises KeyboardInterrupt. A signal the process
was started ignoring (``nohup``, a background job's SIGINT) stays ignored.
"""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Installs the handlers for the duration of a ``with`` block (in the main thread; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()
        name = signal.Signals(signum).name
        message = (f"twingan train: {name} received: stopping after this step and writing a checkpoint (send it "
                   "again to abort at once)\n")
        os.write(2, message.encode())

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # type: ignore[arg-type]
        self._previous.clear()
