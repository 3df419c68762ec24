"""TensorBoard event files for :class:`elbo_audit.Monitor`, without a deep-learning framework.

``Monitor(log_dir=...)`` writes through the ``tensorboard`` package's own
writer (:class:`tensorboard.summary.Writer`, numpy only: the core imports no
framework), else through ``tensorboardX`` when that is what is installed. A
writer the caller already has (torch's ``SummaryWriter``, a Lightning
logger's ``experiment``) is passed as ``Monitor(tensorboard=writer)`` instead.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .._errors import UsageError

__all__ = ["open_writer"]


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def open_writer(log_dir: str | os.PathLike[str]) -> Any:
    """A writer with ``add_scalar(tag, value, step)``, ``flush()`` and ``close()`` into ``log_dir``.

    Raises
    ------
    UsageError
        Neither ``tensorboard`` nor ``tensorboardX`` is installed.
    """
    path = os.fspath(log_dir)
    summary = _module("tensorboard.summary")
    if summary is not None and hasattr(summary, "Writer"):
        return summary.Writer(path)
    tbx = _module("tensorboardX")
    if tbx is not None:
        return tbx.SummaryWriter(path)
    raise UsageError(
        f"Monitor(log_dir={path!r}): writing TensorBoard events needs the tensorboard package "
        "(pip install tensorboard), or pass tensorboard=WRITER (anything with add_scalar)"
    )
