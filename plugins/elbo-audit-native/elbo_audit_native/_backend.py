"""The ``native`` compute backend: the kernels of the pairwise pass in compiled C++.

A mixture is prepared once: per component m and dimension d, in float64,

    a_md = sqrt(log2(e) / 2) / sigma_md,   b_md = -mu_md a_md,
    c_m  = log2(e) (log w_m - sum_d log sigma_md - D/2 log 2 pi) - offset,

so that ``log2 [w_m N(z; mu_m, sigma_m)] = offset + c_m - sum_d (z_d a_md + b_md)^2``;
then cast to the working precision and stored dimension-major, padded with
zero-weight components to a multiple of the library's block width. The offset
(the mean of the finite c_m) keeps the constants small in float32 and is added
back in float64. Zero-weight components (log w = -inf) contribute exactly 0.
"""

from __future__ import annotations

import math
import os
from typing import Any, Final, final

import numpy as np
from elbo_audit._kernels.checks import (
    checked_components,
    checked_draws,
    checked_interaction_inputs,
)
from elbo_audit._kernels.protocol import PRECISIONS, Precision
from numpy.typing import NDArray

from ._lib import Library, library

__all__ = ["NativeBackend", "NativeMixture", "default_threads"]

_LOG2E: Final = 1.0 / math.log(2.0)
_LOG_2PI: Final = math.log(2.0 * math.pi)
_SCALE: Final = math.sqrt(0.5 * _LOG2E)
_ALIGN: Final = 64  # bytes
_PREP_BLOCK: Final = 16384  # components per block while preparing


def default_threads() -> int:
    """``ELBO_AUDIT_NUM_THREADS`` if set (a positive integer), else the usable cores."""
    env = os.environ.get("ELBO_AUDIT_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _aligned(shape: tuple[int, ...], dtype: type[np.floating[Any]], fill: float) -> NDArray[Any]:
    """A C-contiguous array whose data starts on a 64-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    n = int(np.prod(shape))
    raw = np.empty(n + _ALIGN // itemsize, dtype=dtype)
    start = (-raw.ctypes.data % _ALIGN) // itemsize
    out = raw[start : start + n].reshape(shape)
    out.fill(fill)
    return out


def _finite_mean(x: NDArray[np.float64], axis: int | None = None) -> NDArray[np.float64]:
    finite = np.isfinite(x)
    total = np.where(finite, x, 0.0).sum(axis=axis)
    count = finite.sum(axis=axis)
    return np.asarray(np.where(count > 0, total / np.maximum(count, 1), 0.0), dtype=np.float64)


def _ptr(x: NDArray[Any]) -> int:
    return int(x.ctypes.data)


@final
class NativeMixture:
    """A mixture prepared for the compiled kernels.

    Built by :meth:`NativeBackend.prepare`; satisfies
    :class:`elbo_audit._kernels.protocol.MixtureKernels`.
    """

    def __init__(
        self,
        lib: Library,
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        log_weights: NDArray[np.float64],
        precision: Precision,
        threads: int,
    ) -> None:
        m, d = mean.shape
        self._lib = lib
        self._precision: Precision = precision
        self._threads = int(threads)
        self.n_components, self.n_latent = m, d
        dtype = np.float32 if precision == "float32" else np.float64
        self._suffix = "f32" if precision == "float32" else "f64"
        bw = lib.block_width[precision]
        mpad = -(-m // bw) * bw
        self._mpad = mpad

        # built in blocks of components, so that no (M, D) temporary is made
        # besides the stored layouts (memory flat at N = 1e6); every entry is
        # computed row by row exactly as in one piece
        blocks = [slice(i, min(m, i + _PREP_BLOCK)) for i in range(0, m, _PREP_BLOCK)]
        c = np.empty(m)
        cm_sum, cm_count = np.zeros(d), np.zeros(d)
        for sl in blocks:
            log_std = np.log(std[sl])
            c[sl] = _LOG2E * (log_weights[sl] - log_std.sum(axis=1) - 0.5 * d * _LOG_2PI)
            cm = _LOG2E * (log_weights[sl, None] - log_std - 0.5 * _LOG_2PI)
            finite = np.isfinite(cm)
            cm_sum += np.where(finite, cm, 0.0).sum(axis=0)
            cm_count += finite.sum(axis=0)
        self._offset = float(_finite_mean(c))
        self._offsets = np.ascontiguousarray(
            np.where(cm_count > 0, cm_sum / np.maximum(cm_count, 1), 0.0), dtype=np.float64
        )
        self._c64 = _aligned((mpad,), np.float64, -np.inf)
        self._c64[:m] = c - self._offset
        self._a64 = _aligned((d, mpad), np.float64, 0.0)
        self._b64 = _aligned((d, mpad), np.float64, 0.0)
        self._cm = _aligned((d, mpad), dtype, -np.inf)
        if dtype is np.float32:
            self._a = _aligned((d, mpad), np.float32, 0.0)
            self._b = _aligned((d, mpad), np.float32, 0.0)
            self._c = _aligned((mpad,), np.float32, -np.inf)
            self._c[:m] = self._c64[:m]
        else:
            self._a, self._b, self._c = self._a64, self._b64, self._c64
        for sl in blocks:
            a = _SCALE / std[sl]
            self._a64[:, sl] = a.T
            self._b64[:, sl] = (-mean[sl] * a).T
            log_std = np.log(std[sl])
            self._cm[:, sl] = (
                _LOG2E * (log_weights[sl, None] - log_std - 0.5 * _LOG_2PI) - self._offsets
            ).T
            if dtype is np.float32:
                self._a[:, sl] = self._a64[:, sl]
                self._b[:, sl] = self._b64[:, sl]

    @property
    def precision(self) -> Precision:
        """The precision the kernels run in."""
        return self._precision

    @property
    def threads(self) -> int:
        """Worker threads per kernel call."""
        return self._threads

    def _draws(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return checked_draws(z, self.n_latent)

    def log_density(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q(z_s) for each row of ``z`` (S, D) -> (S,)."""
        z = self._draws(z)
        s = z.shape[0]
        out = np.empty(s, dtype=np.float64)
        if s:
            self._lib.call(
                f"ean_log_density_{self._suffix}", _ptr(z), s, self.n_latent,
                _ptr(self._a), _ptr(self._b), _ptr(self._c), self._mpad, self._offset,
                _ptr(out), self._threads,
            )  # fmt: skip
        return out

    def log_marginals(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q_j(z_sj) for each row and dimension of ``z`` (S, D) -> (S, D)."""
        z = self._draws(z)
        s = z.shape[0]
        out = np.empty((s, self.n_latent), dtype=np.float64)
        if s and self.n_latent:
            self._lib.call(
                f"ean_log_marginals_{self._suffix}", _ptr(z), s, self.n_latent,
                _ptr(self._a), _ptr(self._b), _ptr(self._cm), self._mpad, _ptr(self._offsets),
                _ptr(out), self._threads,
            )  # fmt: skip
        return out

    def interaction(
        self,
        z: NDArray[np.float64],
        owner: NDArray[np.int64],
        log_qz: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Column sums R_m of -log(1 - r_m(z_s)) over draws not owned by m -> (M,)."""
        z = self._draws(z)
        s = z.shape[0]
        own, lq = checked_interaction_inputs(owner, log_qz, s, self.n_components)
        out = np.zeros(self._mpad, dtype=np.float64)
        if s and self._mpad:
            if self._suffix == "f32":
                self._lib.call(
                    "ean_interaction_f32", _ptr(z), s, self.n_latent, _ptr(own), _ptr(lq),
                    _ptr(self._a), _ptr(self._b), _ptr(self._c),
                    _ptr(self._a64), _ptr(self._b64), _ptr(self._c64),
                    self._mpad, self._offset, _ptr(out), self._threads,
                )  # fmt: skip
            else:
                self._lib.call(
                    "ean_interaction_f64", _ptr(z), s, self.n_latent, _ptr(own), _ptr(lq),
                    _ptr(self._a), _ptr(self._b), _ptr(self._c),
                    self._mpad, self._offset, _ptr(out), self._threads,
                )  # fmt: skip
        return out[: self.n_components].copy()


@final
class NativeBackend:
    """Compiled CPU kernels (C++17, std::thread), float32 or float64.

    Satisfies :class:`elbo_audit._kernels.protocol.ComputeBackend`.

    Parameters
    ----------
    threads : int, optional
        Worker threads per kernel call; ``ELBO_AUDIT_NUM_THREADS`` or the number
        of cores when omitted. Results are bitwise identical for any count.
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self._threads = default_threads() if threads is None else int(threads)

    @property
    def name(self) -> str:
        return "native"

    @property
    def threads(self) -> int:
        """Worker threads per kernel call."""
        return self._threads

    def availability(self) -> str | None:
        """None when the compiled library loaded, else why not (one line)."""
        return library()[1]

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def build_info(self) -> str:
        """How the library was compiled (vector width, instruction sets), or why it is missing."""
        lib, reason = library()
        return f"{lib.path.name}: {lib.build_info}" if lib is not None else str(reason)

    def prepare(
        self,
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        log_weights: NDArray[np.float64] | None = None,
        *,
        precision: Precision = "float64",
        device: str = "cpu",
    ) -> NativeMixture:
        """Prepare the mixture (M, D) with log weights (M,) (uniform when None)."""
        if device != "cpu":
            raise ValueError(f"the native backend runs on the cpu only, not {device!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        mean, std, log_w = checked_components(mean, std, log_weights)
        lib, reason = library()
        if lib is None:
            raise RuntimeError(f"the native backend is unavailable: {reason}")
        return NativeMixture(lib, mean, std, log_w, precision, self._threads)
