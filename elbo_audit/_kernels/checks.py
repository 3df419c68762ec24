"""What every compute backend checks of its inputs, written once.

A backend's ``prepare`` and kernels receive numpy arrays from the core's
driver (or from a user calling a backend directly); these functions turn them
into the float64/int64 arrays the protocol promises, or raise one ValueError
that says what is wrong.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["checked_components", "checked_draws", "checked_interaction_inputs"]


def checked_components(
    mean: NDArray[np.floating],
    std: NDArray[np.floating],
    log_weights: NDArray[np.floating] | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Means and scales (M, D) and log weights (M,) (uniform when None), as float64.

    Raises
    ------
    ValueError
        Shapes that differ, non-finite means, scales that are not finite and
        positive, log weights of the wrong shape or NaN/+inf.
    """
    mean64 = np.asarray(mean, dtype=np.float64)
    std64 = np.asarray(std, dtype=np.float64)
    if mean64.ndim != 2 or std64.shape != mean64.shape:
        raise ValueError(
            f"mean and std must have the same shape (M, D), got {mean64.shape} and {std64.shape}"
        )
    m = mean64.shape[0]
    if not np.isfinite(mean64).all():
        raise ValueError("mean has non-finite entries")
    if not (np.isfinite(std64).all() and (std64 > 0).all()):
        raise ValueError("std must be finite and positive")
    if log_weights is None:
        log_w = np.full(m, -math.log(m) if m else 0.0)
    else:
        log_w = np.asarray(log_weights, dtype=np.float64)
        if log_w.shape != (m,):
            raise ValueError(f"log_weights must have shape ({m},), got {log_w.shape}")
        if np.isnan(log_w).any() or np.isposinf(log_w).any():
            raise ValueError("log_weights must not be NaN or +inf")
    return mean64, std64, log_w


def checked_draws(z: NDArray[np.floating], n_latent: int) -> NDArray[np.float64]:
    """Draws (S, D) as C-contiguous float64; raises ValueError on a bad shape or non-finite entry."""
    z64 = np.ascontiguousarray(z, dtype=np.float64)
    if z64.ndim != 2 or z64.shape[1] != n_latent:
        raise ValueError(f"z must have shape (S, {n_latent}), got {z64.shape}")
    if not np.isfinite(z64).all():
        raise ValueError("z has non-finite entries")
    return z64


def checked_interaction_inputs(
    owner: NDArray[np.integer], log_qz: NDArray[np.floating], n_draws: int, n_components: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """``owner`` (S,) as int64 in [-1, M) and ``log_qz`` (S,) as float64 without NaN."""
    own = np.ascontiguousarray(owner, dtype=np.int64)
    lq = np.ascontiguousarray(log_qz, dtype=np.float64)
    if own.shape != (n_draws,) or lq.shape != (n_draws,):
        raise ValueError(
            f"owner and log_qz must have shape ({n_draws},), got {own.shape} and {lq.shape}"
        )
    if n_draws and (own.min() < -1 or own.max() >= n_components):
        raise ValueError(f"owner entries must lie in [-1, {n_components})")
    if np.isnan(lq).any():
        raise ValueError("log_qz has NaN entries")
    return own, lq
