"""Progress reporting, injected into long computations (never imported by kernels).

A :class:`Reporter` opens one task per long step; the step calls
``advance(n)`` as units of work finish. The command line injects its terminal
bars (:mod:`elbo_audit._cli.progress`); library callers get :data:`SILENT`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

__all__ = ["SILENT", "Reporter", "Task"]


class Task(Protocol):
    """One step in progress."""

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units of work as done."""
        ...


class Reporter(Protocol):
    """Something that shows progress: ``with reporter.task(label, total) as t: t.advance()``."""

    def task(self, label: str, total: int) -> AbstractContextManager[Task]: ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        return None


class _Silent:
    @contextlib.contextmanager
    def task(self, label: str, total: int) -> Iterator[Task]:
        yield _NullTask()


#: A reporter that shows nothing.
SILENT: Reporter = _Silent()
