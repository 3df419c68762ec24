"""Exceptions that map one-to-one onto the exit codes of the command line.

Every error raised on purpose by elbo-audit is an :class:`AuditError`; its
``exit_code`` is the code of DESIGN.md and its message is one line that names
the file, model or plugin at fault.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "DataError",
    "GateFailed",
    "ModelError",
    "PluginError",
    "UnsafeArtifactError",
    "UsageError",
]


class AuditError(Exception):
    """Base class of every deliberate elbo-audit error.

    Parameters
    ----------
    message
        One line naming what is wrong and where.
    """

    exit_code: int = 5

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split("\n")))


class GateFailed(AuditError):
    """A gate failed (exit code 1)."""

    exit_code = 1


class UsageError(AuditError):
    """Bad command line or configuration (exit code 2)."""

    exit_code = 2


class DataError(UsageError):
    """Missing, unreadable or invalid data (exit code 2)."""

    exit_code = 2


class PluginError(AuditError):
    """A plugin failed to import or misbehaved (exit code 3)."""

    exit_code = 3


class ModelError(AuditError):
    """A model raised, returned wrong shapes or non-finite values (exit code 3)."""

    exit_code = 3


class UnsafeArtifactError(AuditError):
    """An artifact in an unsafe format was refused (exit code 4)."""

    exit_code = 4
