"""Interrupts (SIGINT, SIGTERM) and the temporary files of atomic writes.

The command line answers SIGINT with exit code 130 and SIGTERM with 143 (DESIGN.md):
one line on stderr, no traceback, no report and no temporary file. SIGINT arrives
as :class:`KeyboardInterrupt`; :func:`install` makes SIGTERM arrive as
:class:`Terminated`, which is not an :class:`Exception` either, so no ``except
Exception`` in user or library code swallows it.

A report is written to a temporary file in the target folder and renamed
(:func:`temp_prefix`); the write itself runs under :func:`deferred`, which holds a
signal until the netCDF library has returned (a KeyboardInterrupt raised inside
HDF5's callbacks can leave the library locked and the process hung), then raises
it. A temporary file left by a run that was killed (SIGKILL cannot be caught) is
named with the writer's process id; :func:`clean_stale` removes those whose
writer is gone, and every write calls it on its folder first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

__all__ = [
    "TEMP_TAG",
    "Terminated",
    "clean_stale",
    "deferred",
    "early_guard",
    "install",
    "temp_prefix",
]

#: Every temporary report holds this tag: ``.NAME.elbo-audit-partial-PID-XXXX.tmp``.
TEMP_TAG = ".elbo-audit-partial-"


class Terminated(BaseException):
    """SIGTERM arrived (exit code 143)."""

    exit_code = 143


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def install() -> None:
    """SIGTERM raises :class:`Terminated`, SIGINT :class:`KeyboardInterrupt` (main thread only)."""
    with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
        signal.signal(signal.SIGTERM, _raise_terminated)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _early_exit(signum: int, frame: FrameType | None) -> None:
    code = 143 if signum == signal.SIGTERM else 130
    what = "terminated" if signum == signal.SIGTERM else "interrupted"
    with contextlib.suppress(OSError):
        os.write(2, f"elbo-audit: {what} while starting; no report written\n".encode())
    os._exit(code)


def early_guard() -> None:
    """While the command line is importing, SIGINT/SIGTERM exit at once with one line.

    Only when this process is the ``elbo-audit`` command (its script, or
    ``python -m elbo_audit``); a library import changes no handler. Nothing is
    written before the command runs, so there is nothing to clean up;
    :func:`install` replaces these handlers when the command starts.
    """
    argv0 = Path(sys.argv[0]).name if sys.argv else ""
    orig = list(getattr(sys, "orig_argv", []))
    as_module = any(orig[i : i + 2] == ["-m", "elbo_audit"] for i in range(len(orig)))
    if argv0 != "elbo-audit" and not as_module:
        return
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, _early_exit)
        signal.signal(signal.SIGTERM, _early_exit)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then raise the first that came.

    Used around a write that must not be torn (the netCDF library); the caller
    removes its temporary file when the raised interrupt reaches it.
    """
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        old_int = signal.signal(signal.SIGINT, hold)
        old_term = signal.signal(signal.SIGTERM, hold)
    except ValueError:  # not the main thread: signals are not delivered here anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    if pending:
        if pending[0] == signal.SIGTERM:
            raise Terminated()
        raise KeyboardInterrupt()


def temp_prefix(target: Path) -> str:
    """The prefix of the temporary file of ``target``: hidden, tagged, with this process id."""
    return f".{target.name}{TEMP_TAG}{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove the temporary reports in ``folder`` whose writing process is gone.

    Returns the paths removed. Files of live processes (a concurrent run) and
    every other file are left alone; errors while cleaning are ignored.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and TEMP_TAG in name and name.endswith(".tmp")):
            continue
        pid_text = name.split(TEMP_TAG, 1)[1].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed
