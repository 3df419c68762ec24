"""The pairwise pass: log-densities of Gaussian mixtures at many points.

Every exact aggregate-posterior term needs, for S outer samples z_s,

    log q(z_s) = logsumexp_m [log w_m + log N(z_s; mu_m, diag sigma_m^2)],

an O(S M D) computation over all M mixture components. This module computes it
in blocks with a streaming (running-max) logsumexp, so memory holds one
``outer_block x inner_block`` tile per worker and never an S x M matrix.

Two numerically safe forms are provided:

``"gemm64"`` (default)
    The quadratic form expanded as ``[z^2, z, 1] @ [-w/2; mu w; c]`` with
    ``w = 1/sigma^2``, evaluated as one float64 matrix product per tile. The
    expanded form cancels catastrophically in float32 (up to 0.2 nats per
    point, see PERFORMANCE.md), which is why it is only ever run in float64.
    Even in float64 the cancellation error grows with the size of the
    cancelling terms, about ``eps * sum_d w_md mu_md^2`` (34 nats were
    measured for sigma = 1e-4 and |mu| ~ 1e4). So z and the means are first
    centred on the mean of the component means, and every component whose
    bound ``16 eps (sum_d w_md (mu_md - c_d)^2 + |const_m|)`` exceeds
    ``1e-7`` nats is evaluated in the direct form instead, in the same
    streaming logsumexp. Typical VAE posteriors never take that path (the
    sharp case sigma = 0.01, |mu| ~ 3, D = 20 has a bound of about 1e-8).
    This is never run in lower precision.
``"direct"``
    The reference: ``sum_d ((z_d - mu_md) / sigma_md)^2`` by broadcasting,
    in float64. Exact to rounding, and several times slower.

Both are pure numpy; work is split over threads, each with single-threaded
BLAS, since numpy releases the GIL in matrix products and ufuncs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar, final

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from .._model.families import LOG_2PI
from .protocol import Precision

__all__ = [
    "Form",
    "NumpyBackend",
    "NumpyMixture",
    "interaction_sums",
    "log_mixture_density",
    "log_mixture_marginals",
]

Form = Literal["gemm64", "direct"]
_T = TypeVar("_T")

# exp() of values that underflow is an order of magnitude slower; entries more
# than 80 nats below the running maximum contribute at most M * e^-80 relative.
_CLAMP = -80.0

# Largest tolerated cancellation error (nats) of the expanded "gemm64" form for
# one component; components above it are evaluated in the direct form.
_GEMM_TOL = 1e-7
_GEMM_ERR_FACTOR = 16.0 * float(np.finfo(np.float64).eps)


def _default_workers() -> int:
    env = os.environ.get("ELBO_AUDIT_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(os.cpu_count() or 1, 8))


def _map_in_threads(
    fn: Callable[[_T], NDArray[np.float64]], items: Sequence[_T], workers: int | None
) -> list[NDArray[np.float64]]:
    """``[fn(x) for x in items]`` in up to ``workers`` threads, results in order."""
    n_workers = min(workers or _default_workers(), max(1, len(items)))
    if n_workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(n_workers) as pool:
        return list(pool.map(fn, items))


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _stream_lse(
    tiles: Iterator[NDArray[np.float64]], n_rows: int
) -> NDArray[np.float64]:
    run_max = np.full(n_rows, -np.inf)
    run_sum = np.zeros(n_rows)
    for tile in tiles:
        new_max = np.maximum(run_max, tile.max(axis=1))
        # rows whose entries so far are all -inf (zero-weight components) keep
        # a shift of 0: -inf - -inf would be NaN
        shift = np.where(np.isneginf(new_max), 0.0, new_max)
        run_sum *= np.exp(run_max - shift)
        tile -= shift[:, None]
        np.maximum(tile, _CLAMP, out=tile)
        np.exp(tile, out=tile)
        run_sum += tile.sum(axis=1)
        run_max = new_max
    return run_max + np.log(run_sum)


def _gemm_tiles(
    zb: NDArray[np.float64], coef: NDArray[np.float64], inner_block: int
) -> Iterator[NDArray[np.float64]]:
    """Tiles of the expanded form; ``zb`` must already be centred like ``coef``."""
    feats = np.concatenate([zb * zb, zb, np.ones((zb.shape[0], 1))], axis=1)
    for start in range(0, coef.shape[1], inner_block):
        yield feats @ coef[:, start : start + inner_block]


def _direct_tiles(
    zb: NDArray[np.float64],
    mean: NDArray[np.float64],
    inv_std: NDArray[np.float64],
    const: NDArray[np.float64],
    inner_block: int,
) -> Iterator[NDArray[np.float64]]:
    for start in range(0, mean.shape[0], inner_block):
        sl = slice(start, start + inner_block)
        u = (zb[:, None, :] - mean[None, sl]) * inv_std[None, sl]
        yield const[None, sl] - 0.5 * np.einsum("snd,snd->sn", u, u)


def log_mixture_density(
    z: NDArray[np.floating],
    mean: NDArray[np.floating],
    std: NDArray[np.floating],
    log_weights: NDArray[np.floating] | None = None,
    *,
    form: Form = "gemm64",
    outer_block: int = 512,
    inner_block: int = 2048,
    workers: int | None = None,
) -> NDArray[np.float64]:
    """Log-density of a diagonal-Gaussian mixture at every row of ``z``.

    Parameters
    ----------
    z : ndarray, shape (S, D)
        Points at which to evaluate.
    mean, std : ndarray, shape (M, D)
        Component means and standard deviations.
    log_weights : ndarray, shape (M,), optional
        Log mixture weights; uniform (``-log M``) when omitted.
    form : {"gemm64", "direct"}
        How the quadratic form is computed (see the module docstring).
    outer_block, inner_block : int
        Tile sizes; memory per worker is ``outer_block * inner_block`` floats.
    workers : int, optional
        Threads; defaults to the number of cores (``ELBO_AUDIT_NUM_THREADS``
        overrides).

    Returns
    -------
    ndarray, shape (S,)
        ``logsumexp_m [log w_m + log N(z_s; mean_m, diag std_m^2)]``.

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery: yet another way to
       carve up the variational evidence lower bound", NIPS Workshop on
       Advances in Approximate Bayesian Inference, 2016.
    """
    z64: NDArray[np.float64] = np.ascontiguousarray(z, dtype=np.float64)
    mean64: NDArray[np.float64] = np.asarray(mean, dtype=np.float64)
    std64: NDArray[np.float64] = np.asarray(std, dtype=np.float64)
    z, mean, std = z64, mean64, std64
    m, d = mean.shape
    if z.ndim != 2 or z.shape[1] != d or std.shape != mean.shape:
        raise ValueError(f"shape mismatch: z {z.shape}, mean {mean.shape}, std {std.shape}")
    if log_weights is None:
        log_w = np.full(m, -np.log(m))
    else:
        log_w = np.asarray(log_weights, dtype=np.float64)
    inv_std = 1.0 / std
    const = log_w - np.sum(np.log(std), axis=1) - 0.5 * d * LOG_2PI
    if form == "gemm64":
        # Centre on the mean of the means (translation leaves the density
        # unchanged) to shrink the cancelling terms of the expanded form, and
        # send components whose cancellation bound is still too large to the
        # direct form.
        centre = mean.mean(axis=0)
        mc = mean - centre
        w = inv_std * inv_std
        mag = np.sum(mc * mc * w, axis=1)
        gemm_const = const - 0.5 * mag
        bad_weight = ~np.isfinite(log_w)
        bound = _GEMM_ERR_FACTOR * (mag + np.abs(np.where(bad_weight, 0.0, gemm_const)))
        risky = (bound > _GEMM_TOL) & ~bad_weight
        safe = ~risky
        coef = np.ascontiguousarray(
            np.concatenate(
                [-0.5 * w[safe].T, (mc[safe] * w[safe]).T, gemm_const[safe][None, :]], axis=0
            )
        )
        n_safe = int(safe.sum())
        r_mean = np.ascontiguousarray(mean[risky])
        r_inv_std = np.ascontiguousarray(inv_std[risky])
        r_const = const[risky]
        r_blk = max(1, min(inner_block, 4_000_000 // max(1, outer_block * d)))

        def one(zb: NDArray[np.float64]) -> NDArray[np.float64]:
            def tiles() -> Iterator[NDArray[np.float64]]:
                if n_safe:
                    yield from _gemm_tiles(zb - centre, coef, inner_block)
                if r_const.size:
                    yield from _direct_tiles(zb, r_mean, r_inv_std, r_const, r_blk)

            return _stream_lse(tiles(), zb.shape[0])

    elif form == "direct":
        blk = max(1, min(inner_block, 4_000_000 // max(1, outer_block * d)))

        def one(zb: NDArray[np.float64]) -> NDArray[np.float64]:
            return _stream_lse(_direct_tiles(zb, mean, inv_std, const, blk), zb.shape[0])

    else:
        raise ValueError(f"unknown form {form!r}; expected 'gemm64' or 'direct'")

    chunks = [z[i : i + outer_block] for i in range(0, z.shape[0], outer_block)]
    with _single_threaded_blas():
        parts = _map_in_threads(one, chunks, workers)
    return np.concatenate(parts) if parts else np.empty(0)


def log_mixture_marginals(
    z: NDArray[np.floating],
    mean: NDArray[np.floating],
    std: NDArray[np.floating],
    log_weights: NDArray[np.floating] | None = None,
    *,
    outer_block: int = 256,
    inner_block: int = 2048,
    workers: int | None = None,
) -> NDArray[np.float64]:
    """Per-dimension marginal log-densities of a diagonal-Gaussian mixture.

    Parameters
    ----------
    z : ndarray, shape (S, D)
    mean, std : ndarray, shape (M, D)
    log_weights : ndarray, shape (M,), optional

    Returns
    -------
    ndarray, shape (S, D)
        ``log q_j(z_sj) = logsumexp_m [log w_m + log N(z_sj; mean_mj, std_mj^2)]``.

    References
    ----------
    .. [1] R. T. Q. Chen, X. Li, R. Grosse and D. Duvenaud, "Isolating sources
       of disentanglement in variational autoencoders", NeurIPS 2018.
    """
    z64: NDArray[np.float64] = np.asarray(z, dtype=np.float64)
    mean64: NDArray[np.float64] = np.asarray(mean, dtype=np.float64)
    std64: NDArray[np.float64] = np.asarray(std, dtype=np.float64)
    z, mean, std = z64, mean64, std64
    m, d = mean.shape
    log_w = np.full(m, -np.log(m)) if log_weights is None else np.asarray(log_weights, np.float64)
    inv_std = 1.0 / std
    const = log_w[:, None] - np.log(std) - 0.5 * LOG_2PI  # (M, D)

    def one(j: int) -> NDArray[np.float64]:
        out = np.empty(z.shape[0])
        mu_j, is_j, c_j = mean[:, j], inv_std[:, j], const[:, j]
        for i in range(0, z.shape[0], outer_block):
            zb = z[i : i + outer_block, j]

            def tiles(zb: NDArray[np.float64] = zb) -> Iterator[NDArray[np.float64]]:
                for s in range(0, m, inner_block):
                    sl = slice(s, s + inner_block)
                    u = (zb[:, None] - mu_j[None, sl]) * is_j[None, sl]
                    u *= u
                    u *= -0.5
                    u += c_j[None, sl]
                    yield u

            out[i : i + outer_block] = _stream_lse(tiles(), zb.shape[0])
        return out

    cols = _map_in_threads(one, list(range(d)), workers)
    return np.stack(cols, axis=1) if cols else np.empty((z.shape[0], 0))


# log-responsibilities below this contribute at most N * e^-80 in total
_LOG_R_FLOOR = -80.0
# largest responsibility of another component used in log(1 - r)
_R_CEIL = 1.0 - 1e-12


def _quad_tiles(
    mean: NDArray[np.float64], std: NDArray[np.float64], form: Form
) -> Callable[[NDArray[np.float64], int], Iterator[tuple[int, int, NDArray[np.float64]]]]:
    """Tiles of sum_d ((z_d - mu_md) / sigma_md)^2, by the same rules as the pairwise pass.

    ``gemm64``: centred, expanded form as one float64 matrix product per tile,
    with components whose rounding bound exceeds the pass's tolerance done in
    the direct form; ``direct``: broadcasting.
    """
    m = mean.shape[0]
    inv_std = 1.0 / std
    centre = mean.mean(axis=0)
    mc = mean - centre
    w = inv_std * inv_std
    mag = np.sum(mc * mc * w, axis=1)
    risky = np.full(m, True) if form == "direct" else _GEMM_ERR_FACTOR * mag > _GEMM_TOL
    coef = np.concatenate([w.T, -2.0 * (mc * w).T, mag[None, :]], axis=0)
    coef[:, risky] = 0.0

    def tiles(
        zb: NDArray[np.float64], block: int
    ) -> Iterator[tuple[int, int, NDArray[np.float64]]]:
        zc = zb - centre
        feats = np.concatenate([zc * zc, zc, np.ones((zb.shape[0], 1))], axis=1)
        for c0 in range(0, m, block):
            c1 = min(m, c0 + block)
            quad = feats @ coef[:, c0:c1]
            np.maximum(quad, 0.0, out=quad)
            bad = np.flatnonzero(risky[c0:c1])
            if bad.size:
                u = (zb[:, None, :] - mean[None, c0 + bad]) * inv_std[None, c0 + bad]
                quad[:, bad] = np.einsum("snd,snd->sn", u, u)
            yield c0, c1, quad

    return tiles


def interaction_sums(
    z: NDArray[np.floating],
    owner: NDArray[np.integer],
    log_qz: NDArray[np.floating],
    mean: NDArray[np.floating],
    std: NDArray[np.floating],
    log_weights: NDArray[np.floating] | None = None,
    *,
    form: Form = "gemm64",
    sample_block: int = 512,
    component_block: int = 1024,
    workers: int | None = None,
) -> NDArray[np.float64]:
    """Column sums of -log(1 - r_m(z_s)) over the draws that component m does not own.

    Parameters
    ----------
    z : ndarray, shape (S, D)
        Draws.
    owner : ndarray of int, shape (S,)
        The component each draw came from (-1: none).
    log_qz : ndarray, shape (S,)
        log q(z_s) of the whole mixture at each draw.
    mean, std : ndarray, shape (M, D)
    log_weights : ndarray, shape (M,), optional
        Uniform when omitted.
    form : {"gemm64", "direct"}

    Returns
    -------
    ndarray, shape (M,)
        ``R_m = sum_{s: owner(s) != m} -log(1 - r_m(z_s))`` with the
        responsibility ``r_m(z) = w_m N(z; mu_m, sigma_m^2) / q(z)``.

    References
    ----------
    .. [1] W. Hoeffding, "A class of statistics with asymptotically normal
       distribution", Annals of Mathematical Statistics 19, 1948.
    """
    z64: NDArray[np.float64] = np.ascontiguousarray(z, dtype=np.float64)
    mean64: NDArray[np.float64] = np.asarray(mean, dtype=np.float64)
    std64: NDArray[np.float64] = np.asarray(std, dtype=np.float64)
    z, mean, std = z64, mean64, std64
    own_all = np.asarray(owner, dtype=np.int64)
    lq_all = np.asarray(log_qz, dtype=np.float64)
    m, d = mean.shape
    log_w = np.full(m, -np.log(m)) if log_weights is None else np.asarray(log_weights, np.float64)
    const = log_w - np.sum(np.log(std), axis=1) - 0.5 * d * LOG_2PI
    quad_tiles = _quad_tiles(mean, std, form)

    def one(s0: int) -> NDArray[np.float64]:
        s1 = min(z.shape[0], s0 + sample_block)
        own, lq = own_all[s0:s1], lq_all[s0:s1]
        rows = np.arange(s1 - s0)
        part = np.zeros(m)
        for c0, c1, quad in quad_tiles(z[s0:s1], component_block):
            log_r = const[None, c0:c1] - 0.5 * quad - lq[:, None]
            np.maximum(log_r, _LOG_R_FLOOR, out=log_r)
            r = np.minimum(np.exp(log_r, out=log_r), _R_CEIL)
            mine = (own >= c0) & (own < c1)
            r[rows[mine], own[mine] - c0] = 0.0  # a point's own draws are its own term
            part[c0:c1] -= np.log1p(-r).sum(axis=0)
        return part

    starts = list(range(0, z.shape[0], sample_block))
    out = np.zeros(m)
    with _single_threaded_blas():
        for part in _map_in_threads(one, starts, workers):  # summed in order: deterministic
            out += part
    return out


@final
class NumpyMixture:
    """A mixture prepared for the numpy kernels (float64, no copies)."""

    def __init__(
        self,
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        log_weights: NDArray[np.float64] | None,
        form: Form,
        workers: int | None,
    ) -> None:
        self._mean, self._std, self._log_w = mean, std, log_weights
        self._form: Form = form
        self._workers = workers

    @property
    def precision(self) -> Precision:
        return "float64"

    def log_density(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return log_mixture_density(
            z, self._mean, self._std, self._log_w, form=self._form, workers=self._workers
        )

    def log_marginals(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return log_mixture_marginals(z, self._mean, self._std, self._log_w, workers=self._workers)

    def interaction(
        self, z: NDArray[np.float64], owner: NDArray[np.int64], log_qz: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        return interaction_sums(
            z, owner, log_qz, self._mean, self._std, self._log_w,
            form=self._form, workers=self._workers,
        )


@final
class NumpyBackend:
    """The float64 reference: numpy, in threads with single-threaded BLAS.

    Parameters
    ----------
    form : {"gemm64", "direct"}
        How quadratic forms are computed (see the module docstring).
    workers : int, optional
        Threads (default: the cores, ``ELBO_AUDIT_NUM_THREADS`` overrides).
    """

    def __init__(self, form: Form = "gemm64", workers: int | None = None) -> None:
        if form not in ("gemm64", "direct"):
            raise ValueError(f"unknown form {form!r}; expected 'gemm64' or 'direct'")
        self._form: Form = form
        self._workers = workers

    @property
    def name(self) -> str:
        return "numpy"

    def availability(self) -> str | None:
        return None

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def prepare(
        self,
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        log_weights: NDArray[np.float64] | None = None,
        *,
        precision: Precision = "float64",
        device: str = "cpu",
    ) -> NumpyMixture:
        if precision != "float64":
            raise ValueError(f"the numpy backend computes in float64 only, not {precision}")
        if device != "cpu":
            raise ValueError(f"the numpy backend runs on the cpu only, not {device!r}")
        mean = np.asarray(mean, np.float64)
        std = np.asarray(std, np.float64)
        lw = None if log_weights is None else np.asarray(log_weights, np.float64)
        return NumpyMixture(mean, std, lw, self._form, self._workers)
