"""What the JAX adapter's pieces share: where and how they run, and padding to buckets.

:class:`_Context` holds a model's name, device, float dtype, 64-bit mode,
chunk size, jit switch and latent size; calls are padded to a few row counts
(:func:`_bucket`, :func:`_pad`) so that each shape compiles once, and
:func:`_cached` reuses the jitted functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from elbo_audit import ModelError

_MIN_BUCKET = 64


def _x64_context(on: bool) -> contextlib.AbstractContextManager[Any]:
    if not on:
        return contextlib.nullcontext()
    enable = getattr(jax, "enable_x64", None)  # jax >= 0.4.3x: a context manager
    if enable is None:  # older jax
        from jax.experimental import enable_x64 as enable  # type: ignore[no-redef]

        return enable()
    return enable(True)


class _Context:
    def __init__(self, name: str, device: Any, dtype: np.dtype, x64: bool, chunk: int, jit: bool) -> None:
        self.name = name
        self.device = device
        self.dtype = np.dtype(dtype)
        self.x64 = x64
        self.chunk = max(1, int(chunk))
        self.use_jit = jit
        self.n_latent: int | None = None

    def where(self) -> str:
        return f"model {self.name!r} (jax adapter)"

    def compute(self) -> contextlib.AbstractContextManager[Any]:
        """Where every call runs: full-precision matrix products (no TF32 on GPUs, where
        XLA's default for float32 would use it) and, for float64, 64-bit mode."""
        stack = contextlib.ExitStack()
        stack.enter_context(jax.default_matmul_precision("highest"))
        stack.enter_context(_x64_context(self.x64))
        return stack

    def put(self, a: Any, dtype: np.dtype | None = None) -> jax.Array:
        arr = np.asarray(a)
        if not (arr.dtype == np.bool_ or arr.dtype.kind in "iuf"):
            raise ModelError(f"{self.where()}: cannot feed data of dtype {arr.dtype} to a JAX model")
        return jax.device_put(arr.astype(dtype or self.dtype, copy=False), self.device)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return jax.jit(fn) if self.use_jit else fn

    def bind_latent(self, d: int) -> None:
        if self.n_latent is None:
            self.n_latent = d
        elif self.n_latent != d:
            raise ModelError(f"{self.where()}: encoder gave {d} latents, earlier {self.n_latent}")


def _bucket(m: int, chunk: int) -> int:
    """Rows to pad a call of m rows to: powers of two up to the chunk size.

    Every distinct shape costs a compilation; padding bounds them to about
    log2(chunk) shapes whatever the batch sizes the core or a test uses.
    """
    if m >= chunk:
        return m
    return min(chunk, max(_MIN_BUCKET, 1 << max(0, (m - 1).bit_length())))


def _pad(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` with its last row repeated up to ``rows`` rows (real data: no NaN from zeros)."""
    if a.shape[0] == rows:
        return a
    return np.concatenate([a, np.repeat(a[-1:], rows - a.shape[0], axis=0)])


def _rows(mask: np.ndarray, limit: int = 5) -> str:
    rows = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    return ", ".join(str(int(r)) for r in rows[:limit]) + more


def _np64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _cached(factory: Any, *args: Any) -> Callable[..., Any]:
    """``factory(*args)`` from its cache, or freshly for unhashable callables."""
    try:
        hash(args)
    except TypeError:
        return factory.__wrapped__(*args)  # type: ignore[no-any-return]
    return factory(*args)  # type: ignore[no-any-return]
