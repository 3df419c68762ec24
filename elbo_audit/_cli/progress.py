"""Progress on stderr for steps that take more than a second.

Off unless the command line turns it on (``--quiet`` not given). On a terminal
each long step draws a bar, redrawn in place; off a terminal (a CI log, a file)
a step that runs longer than a few seconds prints a plain line every
:data:`LINE_EVERY` seconds with its label and share done, and a last line when
it ends, so a log shows where a long run spends its time without carriage
returns. Long computations open a task with :func:`task`; ``advance`` comes
from the calling thread only, while a ticker thread redraws steps whose share
cannot be counted (a mixture fit, a bootstrap) so they still show that they
are alive.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TextIO

__all__ = ["LINE_EVERY", "Task", "enabled", "task"]


@dataclass(frozen=True)
class _Mode:
    stream: TextIO
    terminal: bool


_ENABLED: ContextVar[_Mode | None] = ContextVar("elbo_audit_progress", default=None)
_DELAY = 1.0  # seconds before a bar appears on a terminal
_EVERY = 0.1  # seconds between redraws of a bar
#: Seconds between progress lines off a terminal (the first comes after this long).
LINE_EVERY = 5.0


@contextlib.contextmanager
def enabled(stream: TextIO | None = None, *, terminal: bool | None = None) -> Iterator[None]:
    """Show progress on ``stream`` (stderr) inside this block.

    ``terminal`` chooses bars (True) or periodic lines (False); by default it
    is whether ``stream`` is a terminal.
    """
    stream = stream if stream is not None else sys.stderr
    if terminal is None:
        try:
            terminal = stream.isatty()
        except (AttributeError, ValueError):
            terminal = False
    token = _ENABLED.set(_Mode(stream, terminal))
    try:
        yield
    finally:
        _ENABLED.reset(token)


class Task:
    """One step: ``advance(n)`` after each unit of work, ``close()`` at the end."""

    def __init__(self, label: str, total: int, mode: _Mode | None) -> None:
        self.label, self.total, self.mode = label, max(1, total), mode
        self.done = 0
        self.start = self.last = time.monotonic()
        self.shown = False
        self._lock = threading.Lock()

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units of work as done."""
        self.done += n
        self.tick()

    def tick(self) -> None:
        """Redraw (a bar) or print a line if it is time to."""
        if self.mode is None:
            return
        now = time.monotonic()
        with self._lock:
            if self.mode.terminal:
                if now - self.start < _DELAY or (now - self.last < _EVERY and self.done < self.total):
                    return
                self.last, self.shown = now, True
                self._write(f"\r{self._text(now)}")
            elif now - self.last >= LINE_EVERY:
                self.last, self.shown = now, True
                self._write(f"elbo-audit: {self._text(now)}\n")

    def _text(self, now: float) -> str:
        frac = min(1.0, self.done / self.total)
        elapsed = now - self.start
        if self.mode is not None and self.mode.terminal:
            bar = "#" * int(30 * frac)
            return f"{self.label:<28.28} [{bar:<30}] {frac:4.0%} {elapsed:6.1f}s"
        return f"{self.label}: {frac:.0%} done, {elapsed:.1f} s"

    def _write(self, text: str) -> None:
        assert self.mode is not None
        try:
            self.mode.stream.write(text)
            self.mode.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not end the audit
            self.mode = None

    def close(self) -> None:
        """End the step: a bar ends its line; a logged step says how long it took."""
        if self.mode is None or not self.shown:
            return
        with self._lock:
            if self.mode.terminal:
                self._write("\n")
            else:
                self._write(f"elbo-audit: {self.label}: done in {time.monotonic() - self.start:.1f} s\n")


def _ticker(t: Task, stop: threading.Event) -> None:
    period = _EVERY if t.mode is not None and t.mode.terminal else 1.0
    while not stop.wait(period):
        t.tick()


@contextlib.contextmanager
def task(label: str, total: int) -> Iterator[Task]:
    """Progress of ``total`` units of work (a no-op when progress is off)."""
    t = Task(label, total, _ENABLED.get())
    stop = threading.Event()
    ticker = None
    if t.mode is not None:
        ticker = threading.Thread(target=_ticker, args=(t, stop), daemon=True, name="elbo-audit-progress")
        ticker.start()
    try:
        yield t
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        t.close()


class _TerminalReporter:
    """The progress of this module as an injectable :class:`elbo_audit._reporting.Reporter`."""

    def task(self, label: str, total: int) -> contextlib.AbstractContextManager[Task]:
        return task(label, total)


#: Progress for the audit layer (shown inside :func:`enabled` only).
REPORTER = _TerminalReporter()
