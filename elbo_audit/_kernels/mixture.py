"""A mixture on a compute backend: centring, the float32 safety split, chunks and progress.

The kernels of a backend only compute (:mod:`elbo_audit._kernels.protocol`);
this module decides how, the same way for every backend:

* z and the component means are centred on the mean of the means (the
  densities are translation invariant, and offset posteriors, |mu| ~ 1e3, lose
  all their float32 digits without it);
* in float32 the normalising constants are shifted by a common offset (added
  back in float64), and every component whose estimated float32 rounding error
  of log N(z; mu_m, sigma_m) exceeds :data:`FLOAT32_TOL` nats is evaluated in
  float64 instead (sharp posteriors far from the centre, sigma << |mu|); the
  two parts are combined exactly with ``logaddexp``;
* draws are processed in chunks, so a progress bar can advance and memory
  stays flat in the number of draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import final

import numpy as np
from numpy.typing import NDArray

from .._model.families import LOG_2PI
from .protocol import ComputeBackend, MixtureKernels, Precision

__all__ = ["DEFAULT_CHUNK", "FLOAT32_TOL", "Engine", "Mixture", "float32_error_bound"]

#: Draws per kernel call unless the backend prefers another number.
DEFAULT_CHUNK = 8192

#: Largest estimated float32 rounding error (nats) of one component's
#: log-density at a typical draw; components above it run in float64.
FLOAT32_TOL = 2e-6

_EPS32 = float(np.finfo(np.float32).eps)
_BLOCK = 16384  # rows per block of the error bound

Advance = Callable[[int], None]


def float32_error_bound(
    mean: NDArray[np.float64], std: NDArray[np.float64], const: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Estimated float32 rounding error (nats) of each component's log-density.

    Forming ``(z_d - mu_d) / sigma_d`` from float32 z and mu costs about
    ``eps |mu_d| / sigma_d`` per dimension (with |z_d| <= |mu_d| + 3 sigma_d at
    the draws that matter), which enters ``0.5 u^2`` times ``|u| ~ 1``; errors
    of the D dimensions add in quadrature. The constant ``const`` (already
    shifted) is rounded once.

    Parameters
    ----------
    mean, std : ndarray, shape (M, D)
        Centred means and scales.
    const : ndarray, shape (M,)
        The float32 constants of the components (log weight plus normaliser).
    """
    quad = np.empty(mean.shape[0])
    for i in range(0, mean.shape[0], _BLOCK):  # rows in blocks: no (M, D) temporaries
        sl = slice(i, i + _BLOCK)
        ratio = (np.abs(mean[sl]) + 3.0 * std[sl]) / std[sl]
        quad[sl] = 0.5 * _EPS32 * np.sqrt(np.sum(ratio * ratio, axis=1))
    return np.asarray(quad + 0.5 * _EPS32 * (np.abs(const) + mean.shape[1]), np.float64)


def _centred(
    mean: NDArray[np.float64], centre: NDArray[np.float64], idx: NDArray[np.intp] | None
) -> NDArray[np.float64]:
    """``mean[idx] - centre`` (all rows when ``idx`` is None) with one copy, not two."""
    out = mean.copy() if idx is None else mean[idx]
    out -= centre
    return out


@final
class Mixture:
    """A diagonal-Gaussian mixture prepared on a backend.

    Parameters
    ----------
    backend : ComputeBackend
    mean, std : ndarray, shape (M, D)
    log_weights : ndarray, shape (M,), optional
        Uniform when omitted.
    precision : {"float32", "float64"}
    device : str
    chunk : int
        Draws per kernel call.
    """

    def __init__(
        self,
        backend: ComputeBackend,
        mean: NDArray[np.floating],
        std: NDArray[np.floating],
        log_weights: NDArray[np.floating] | None = None,
        *,
        precision: Precision = "float64",
        device: str = "cpu",
        chunk: int = 8192,
    ) -> None:
        mean64: NDArray[np.float64] = np.asarray(mean, np.float64)
        std64: NDArray[np.float64] = np.asarray(std, np.float64)
        mean, std = mean64, std64
        m, d = mean.shape
        if std.shape != mean.shape:
            raise ValueError(f"shape mismatch: mean {mean.shape}, std {std.shape}")
        log_w = (
            np.full(m, -math.log(m)) if log_weights is None else np.asarray(log_weights, np.float64)
        )
        self.n_components, self.n_latent = m, d
        self.precision: Precision = precision
        self.backend = backend.name
        self._chunk = max(1, int(chunk))
        self._centre = mean.mean(axis=0) if m else np.zeros(d)
        self._offset = 0.0
        parts: list[tuple[NDArray[np.intp], MixtureKernels]] = []
        # each part's centred means are made just before its prepare and freed
        # after it: peak memory is one copy of the means besides the backend's own
        if precision == "float32" and m:
            const = log_w - np.sum(np.log(std), axis=1) - 0.5 * d * LOG_2PI
            finite = np.isfinite(const)
            self._offset = float(const[finite].mean()) if finite.any() else 0.0
            mc = _centred(mean, self._centre, None)
            bound = float32_error_bound(mc, std, np.where(finite, const - self._offset, 0.0))
            del mc
            risky = bound > FLOAT32_TOL
            shifted = log_w - self._offset
            split: tuple[tuple[NDArray[np.bool_], Precision], ...] = (
                (~risky, "float32"), (risky, "float64"),
            )
            for mask, prec in split:
                idx = np.flatnonzero(mask)
                if idx.size == m:
                    kern = backend.prepare(
                        _centred(mean, self._centre, None), std, shifted, precision=prec, device=device
                    )
                    parts.append((idx, kern))
                elif idx.size:
                    kern = backend.prepare(
                        _centred(mean, self._centre, idx), std[idx], shifted[idx],
                        precision=prec, device=device,
                    )
                    parts.append((idx, kern))
            self.n_float64 = int(risky.sum())
        else:
            kern = backend.prepare(
                _centred(mean, self._centre, None), std, log_w, precision=precision, device=device
            )
            parts.append((np.arange(m), kern))
            self.n_float64 = m if precision == "float64" else 0
        self._parts = parts

    @property
    def precision_detail(self) -> str:
        """The precision used, with the count of float64 components of a float32 run."""
        if self.precision == "float32" and self.n_float64:
            return f"float32 ({self.n_float64} of {self.n_components} components in float64)"
        return self.precision

    def _chunks(self, s: int) -> list[slice]:
        return [slice(i, min(s, i + self._chunk)) for i in range(0, s, self._chunk)]

    def n_chunks(self, s: int) -> int:
        """Kernel calls (progress units) for ``s`` draws."""
        return max(1, -(-s // self._chunk))

    def log_density(self, z: NDArray[np.floating], advance: Advance | None = None) -> NDArray[np.float64]:
        """log q(z_s) at every row of ``z`` (S, D) -> (S,)."""
        z = np.asarray(z, np.float64)
        out = np.full(z.shape[0], -np.inf)
        for sl in self._chunks(z.shape[0]):
            zc = z[sl] - self._centre  # centred chunk by chunk: no copy of all draws
            for _, kern in self._parts:
                out[sl] = np.logaddexp(out[sl], kern.log_density(zc))
            if advance is not None:
                advance(1)
        return out + self._offset

    def log_marginals(self, z: NDArray[np.floating], advance: Advance | None = None) -> NDArray[np.float64]:
        """log q_j(z_sj) at every row and dimension of ``z`` (S, D) -> (S, D)."""
        z = np.asarray(z, np.float64)
        out = np.full(z.shape, -np.inf)
        for sl in self._chunks(z.shape[0]):
            zc = z[sl] - self._centre
            for _, kern in self._parts:
                out[sl] = np.logaddexp(out[sl], kern.log_marginals(zc))
            if advance is not None:
                advance(1)
        return out + self._offset

    def interaction(
        self,
        z: NDArray[np.floating],
        owner: NDArray[np.integer],
        log_qz: NDArray[np.floating],
        advance: Advance | None = None,
    ) -> NDArray[np.float64]:
        """R_m = sum over draws not owned by m of -log(1 - r_m(z_s)) -> (M,)."""
        z = np.asarray(z, np.float64)
        own = np.asarray(owner, np.int64)
        lq = np.asarray(log_qz, np.float64) - self._offset
        out = np.zeros(self.n_components)
        local = []
        for idx, _ in self._parts:
            pos = np.full(self.n_components + 1, -1, np.int64)  # the last entry maps owner -1
            pos[idx] = np.arange(idx.size)
            local.append(pos[own])
        for sl in self._chunks(z.shape[0]):
            zc = z[sl] - self._centre
            for (idx, kern), own_local in zip(self._parts, local, strict=True):
                out[idx] += kern.interaction(zc, own_local[sl], lq[sl])
            if advance is not None:
                advance(1)
        return out


@final
class Engine:
    """Where and how the kernels run: a backend, a precision and a device.

    Parameters
    ----------
    backend : ComputeBackend
    precision : {"float32", "float64"}
    device : str
    chunk : int, optional
        Draws per kernel call: the backend's ``chunk_draws`` attribute when it
        has one (a cluster backend takes many chunks at once to spread them
        over its workers), else :data:`DEFAULT_CHUNK`.
    """

    def __init__(
        self,
        backend: ComputeBackend,
        precision: Precision = "float64",
        device: str = "cpu",
        chunk: int | None = None,
    ) -> None:
        if chunk is None:
            preferred = getattr(backend, "chunk_draws", None)
            chunk = int(preferred) if isinstance(preferred, int) and preferred > 0 else DEFAULT_CHUNK
        self.backend, self.precision, self.device, self.chunk = backend, precision, device, chunk

    def mixture(
        self,
        mean: NDArray[np.floating],
        std: NDArray[np.floating],
        log_weights: NDArray[np.floating] | None = None,
    ) -> Mixture:
        """Prepare a mixture on this engine."""
        return Mixture(
            self.backend, mean, std, log_weights,
            precision=self.precision, device=self.device, chunk=self.chunk,
        )
