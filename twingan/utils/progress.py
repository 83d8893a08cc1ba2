"""Progress bars that suit where they are written: a live tqdm bar in a terminal, plain lines in a log.

In a terminal tqdm redraws one line with carriage returns. Written to a file, a
pipe or a CI log, those redraws pile up as frames (hundreds of kilobytes for one
training run). :func:`progress_bar` returns a tqdm bar when the stream is a
terminal and otherwise a :class:`LogProgress`: the same counters and fields
(description, percentage, count, elapsed and remaining time, rate, postfix) as
one plain line when it starts, then at most one line every ``interval``
seconds, and a last line when it closes.
"""
from __future__ import annotations

import sys
from typing import IO, Any, Iterable

from tqdm import tqdm

LOG_INTERVAL_S = 30.0
"""Seconds between two progress lines in a log."""


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None, *, file: IO[str] | None = None, interval: float = LOG_INTERVAL_S,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on a terminal ``file`` (default: standard error), else a :class:`LogProgress` writing a line
    every ``interval`` seconds. ``kwargs`` are tqdm's (total, desc, unit, initial, disable, ...)."""
    stream = sys.stderr if file is None else file
    if is_terminal(stream):
        return tqdm(iterable, file=stream, **kwargs)
    return LogProgress(iterable, file=stream, interval=interval, **kwargs)


class _Discard:
    """Where tqdm's own drawing goes in line mode: its carriage returns and cursor moves are not for a log."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class LogProgress(tqdm):
    """tqdm that writes whole lines, rate-limited to one per ``interval`` seconds (plus the first and last)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, file: IO[str], interval: float = LOG_INTERVAL_S,
                 **kwargs: Any) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self._stream = file
        self._interval = interval
        self._last_line: float | None = None
        self._last_n: float | None = None
        self._closing = False
        kwargs.update(mininterval=interval, maxinterval=interval, ncols=0, dynamic_ncols=False)
        super().__init__(iterable, file=_Discard(), **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm clearing or hiding its line: there is nothing to erase in a log
            return True
        now = self._time()
        due = self._last_line is None or now - self._last_line >= self._interval
        if due or (self._closing and self.n != self._last_n):
            self._stream.write(self.__str__() + "\n")
            self._stream.flush()
            self._last_line, self._last_n = now, self.n
        return True

    def close(self) -> None:
        self._closing = True
        super().close()
