"""Progress bars on stderr for passes that take more than a second.

Off unless the command line turns them on (stderr is a terminal and
``--quiet`` was not given). Long computations open a task with
:func:`task`; updates come from the calling thread only.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TextIO

__all__ = ["Task", "enabled", "task"]

_ENABLED: ContextVar[TextIO | None] = ContextVar("elbo_audit_progress", default=None)
_DELAY = 1.0  # seconds before a bar appears
_EVERY = 0.1  # seconds between redraws


@contextlib.contextmanager
def enabled(stream: TextIO | None = None) -> Iterator[None]:
    """Show progress bars on ``stream`` (stderr) inside this block, if it is a terminal."""
    stream = stream if stream is not None else sys.stderr
    token = _ENABLED.set(stream if stream.isatty() else None)
    try:
        yield
    finally:
        _ENABLED.reset(token)


class Task:
    """One bar: ``advance(n)`` after each unit of work, ``close()`` at the end."""

    def __init__(self, label: str, total: int, stream: TextIO | None) -> None:
        self.label, self.total, self.stream = label, max(1, total), stream
        self.done = 0
        self.start = self.last = time.monotonic()
        self.shown = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.start < _DELAY or (now - self.last < _EVERY and self.done < self.total):
            return
        self.last, self.shown = now, True
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r{self.label:<28.28} [{bar:<30}] {frac:4.0%} {now - self.start:6.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.shown:
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def task(label: str, total: int) -> Iterator[Task]:
    """A progress bar for ``total`` units of work (a no-op when bars are off)."""
    t = Task(label, total, _ENABLED.get())
    try:
        yield t
    finally:
        t.close()


class _TerminalReporter:
    """The bars of this module as an injectable :class:`elbo_audit._reporting.Reporter`."""

    def task(self, label: str, total: int) -> contextlib.AbstractContextManager[Task]:
        return task(label, total)


#: Terminal bars for the audit layer (shown inside :func:`enabled` only).
REPORTER = _TerminalReporter()
