"""Data in memory as one numpy array: arrays, tensors, DataLoaders, iterables of batches.

Nothing here imports a framework. A tensor is recognised by its methods
(``detach``, ``cpu``, ``numpy``), a DataLoader as any iterable of batches, and a
batch of ``(x, y)`` pairs, or a mapping with an ``x`` key, gives its ``x``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import DataError

__all__ = ["as_array", "check_points"]


def _tensor_to_numpy(obj: Any) -> NDArray[Any]:
    for step in ("detach", "cpu"):
        method = getattr(obj, step, None)
        if callable(method):
            obj = method()
    numpy = getattr(obj, "numpy", None)
    if callable(numpy) and not isinstance(obj, np.ndarray):
        obj = numpy()
    return np.asarray(obj)


def _batch_x(batch: Any, where: str) -> NDArray[Any]:
    if isinstance(batch, Mapping):
        if "x" not in batch:
            raise DataError(f"{where}: a batch that is a mapping needs an 'x' key, got {sorted(map(str, batch))}")
        batch = batch["x"]
    elif isinstance(batch, (tuple, list)) and batch and not np.isscalar(batch[0]):
        batch = batch[0]  # (x, y, ...) pairs, as a labelled DataLoader gives them
    arr = _tensor_to_numpy(batch)
    if arr.ndim == 0:
        raise DataError(f"{where}: a batch is a scalar; expected one data point per row")
    return arr


def as_array(data: Any, where: str = "data") -> NDArray[Any]:
    """The data points of ``data`` as one array, one data point per row.

    Parameters
    ----------
    data : array-like, tensor, or iterable of batches
        A numpy array (or anything ``numpy.asarray`` takes), a tensor of any
        framework (moved to the CPU), or an iterable of batches such as a
        ``torch.utils.data.DataLoader``; a batch is an array or tensor, a
        ``(x, y, ...)`` tuple, or a mapping with key ``x``. Batches are
        concatenated in the order they come: give an unshuffled loader, so
        the audit sees the same points in the same order each time.
    where : str
        Names the data in error messages.

    Raises
    ------
    DataError
        No data points, batches of different trailing shapes, or not numbers.
    """
    if isinstance(data, np.ndarray):
        x = data
    elif hasattr(data, "__array__") or hasattr(data, "detach") or hasattr(data, "__cuda_array_interface__"):
        x = _tensor_to_numpy(data)
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, Mapping)):
        batches = [_batch_x(b, f"{where}, batch {i}") for i, b in enumerate(data)]
        if not batches:
            raise DataError(f"{where}: the iterable gave no batches")
        shapes = {b.shape[1:] for b in batches}
        if len(shapes) > 1:
            raise DataError(f"{where}: batches have different data-point shapes {sorted(shapes)}")
        x = np.concatenate(batches, axis=0)
    else:
        raise DataError(f"{where}: cannot read a {type(data).__name__} as data points")
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError(f"{where}: no data points (shape {x.shape})")
    if x.dtype != np.bool_ and x.dtype.kind not in "iuf":
        raise DataError(f"{where}: data of dtype {x.dtype} are not numbers")
    return x


def check_points(x: NDArray[Any], where: str = "data") -> None:
    """At least 2 data points as rows, and no NaN or infinite values (as ``--data`` requires)."""
    if x.ndim < 2 or x.shape[0] < 2:
        raise DataError(f"{where}: need at least 2 data points as rows, got shape {x.shape}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x.reshape(x.shape[0], -1))
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))[:5]
            raise DataError(f"{where}: NaN or infinite values at data points {', '.join(map(str, rows))}")
