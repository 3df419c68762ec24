"""Weight files the adapters share, at the level of numpy arrays.

What every framework adapter does the same way with a weights file: which
suffixes are pickles, reading an ``.npz`` without unpickling anything, and
the one-line message when a file's arrays do not fit the model's parameters.
The framework-specific parts (``torch.load``, safetensors into tensors, a JAX
pytree's key paths) stay in the adapters; this module imports numpy only.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .._errors import AuditError, ModelError

__all__ = ["PICKLE_SUFFIXES", "misfit", "read_npz"]

#: File suffixes that always mean a pickle (loading one can run arbitrary code).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".cloudpickle")


def read_npz(
    path: Path, refuse: Callable[[Path, str], AuditError]
) -> dict[str, NDArray[np.generic]]:
    """Every array of an ``.npz`` file, read with ``allow_pickle=False``.

    Parameters
    ----------
    path : Path
        The ``.npz`` file.
    refuse : callable
        ``refuse(path, why)`` builds the error raised when the file holds
        object arrays (pickles); each adapter words its own advice.

    Returns
    -------
    dict of str to ndarray
        The arrays by name, copied out of the archive.

    Raises
    ------
    AuditError
        What ``refuse`` returns, for object arrays (nothing has been unpickled).
    ModelError
        The file is not a readable ``.npz`` archive.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read {path} as .npz: {exc}") from exc
    if magic[:1] == b"\x80":  # a pickle stream, whatever its name
        raise refuse(path, "it is a pickle")
    if magic != b"PK\x03\x04":
        raise ModelError(f"cannot read {path} as .npz: not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.array(npz[k]) for k in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise refuse(path, "it holds object arrays (pickles)") from None
        raise ModelError(f"cannot read {path} as .npz: {exc}") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read {path} as .npz: {exc}") from exc


def misfit(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, tuple[int, ...]],
    *,
    sort_missing: bool = False,
) -> str:
    """How the arrays of a weights file fail to fit a model's parameters.

    Parameters
    ----------
    expected : mapping of str to tuple of int
        The model's parameter names and shapes, in the model's order.
    found : mapping of str to tuple of int
        The file's array names and shapes.
    sort_missing : bool, default False
        List the missing names sorted rather than in the model's order.

    Returns
    -------
    str
        ``""`` when every parameter is present with its shape and the file
        holds nothing else; otherwise the problems joined by ``"; "``, such
        as ``"missing 1: b; unexpected 1: c; wrong shape 1: w (3,) (model (4,))"``
        (at most five names of each kind, three wrong shapes).
    """
    missing = [k for k in expected if k not in found]
    if sort_missing:
        missing.sort()
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k} {tuple(found[k])} (model {tuple(shape)})"
        for k, shape in expected.items()
        if k in found and tuple(found[k]) != tuple(shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {', '.join(missing[:5])}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:5])}")
    if wrong:
        parts.append(f"wrong shape {len(wrong)}: {', '.join(wrong[:3])}")
    return "; ".join(parts)
