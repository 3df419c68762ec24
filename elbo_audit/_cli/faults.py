"""The one place that turns faults into the exit codes of DESIGN.md.

:func:`classify` maps what escaped a command to ``(exit code, one line)``:
deliberate :class:`~elbo_audit._errors.AuditError` s keep their own code; an
:class:`OSError` on any input or output (unreadable, a folder, a read-only file
system, a disk full) is a usage error naming the path (exit 2); running out of
memory says which options size a run (exit 2); SIGINT and SIGTERM give 130 and
143; a ``sys.exit()`` from a factory, model or plugin is a model error (exit
3), never a silent success. Anything else is an internal error (exit 5).

:func:`routed_warnings` is the same for warnings (numpy's RuntimeWarnings, the
BCa fallback): each distinct one is a single ``elbo-audit: warning:`` line on
stderr, none under ``--quiet``.
"""

from __future__ import annotations

import contextlib
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from .._errors import AuditError
from .._signals import TEMP_TAG, Terminated

__all__ = ["UserExit", "classify", "describe_os_error", "routed_warnings"]


class UserExit(Exception):
    """``sys.exit()`` was called by code elbo-audit runs (a factory, a model, a plugin)."""

    def __init__(self, code: object) -> None:
        super().__init__(code)
        self.code = code


def _name(filename: object) -> str:
    text = str(filename)
    if TEMP_TAG in Path(text).name:  # our temporary report: name the folder written to
        return f"writing the report in {Path(text).parent}"
    return text


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason`` for an OSError (``A -> B: reason`` for a rename)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{_name(exc.filename)} -> {_name(exc.filename2)}: {reason}"
    if exc.filename is not None:
        return f"{_name(exc.filename)}: {reason}"
    return f"{type(exc).__name__}: {reason}"


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one stderr line for an exception that ended a command."""
    if isinstance(exc, AuditError):
        return exc.exit_code, f"elbo-audit: error: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return 130, "elbo-audit: interrupted; no report written"
    if isinstance(exc, Terminated):
        return 143, "elbo-audit: terminated; no report written"
    if isinstance(exc, UserExit):
        return 3, (
            f"elbo-audit: error: user code (a factory, model or plugin) called sys.exit({exc.code!r}) "
            "during the run; no report written"
        )
    if isinstance(exc, MemoryError):
        return 2, (
            "elbo-audit: error: out of memory; lower --limit, --samples-per-point, "
            "--marginal-samples or --bootstrap (see docs/security.md, sizing a run)"
        )
    if isinstance(exc, OSError):
        return 2, f"elbo-audit: error: {describe_os_error(exc)}"
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f"at {Path(where.filename).name}:{where.lineno}; " if where else ""
    return 5, (
        f"elbo-audit: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
        f"({at}rerun with --debug)"
    )


@contextlib.contextmanager
def routed_warnings(stream: TextIO, *, quiet: bool) -> Iterator[None]:
    """Within the block, warnings are silent (``quiet``) or one line each on ``stream``.

    A warning is shown once per distinct message (numpy repeats the same overflow
    for every batch), as ``elbo-audit: warning: MESSAGE (at FILE:LINE)`` and
    never with the source line Python's default display adds.
    """
    seen: set[tuple[type[Warning], str]] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        if (category, text) in seen:
            return
        seen.add((category, text))
        print(f"elbo-audit: warning: {text} (at {Path(filename).name}:{lineno})", file=stream)

    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        else:
            warnings.simplefilter("always")  # repeats are dropped by ``show``, not by location
            warnings.showwarning = show
        yield
