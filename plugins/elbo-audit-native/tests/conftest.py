"""Fixtures of the native backend's tests, and an independent float64 truth.

The truths are plain numpy broadcasting and ``scipy.special.logsumexp`` over the
full S x M matrix of log w_m N(z_s; mu_m, sigma_m), in nats: no code of the
backend, no log2 units, no streaming, no tiles.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import logsumexp

LOG_2PI = math.log(2.0 * math.pi)
Array = NDArray[np.float64]


@pytest.fixture(scope="session")
def backend() -> object:
    """A two-thread backend; skips (with the reason) where the library is not built."""
    native = pytest.importorskip("elbo_audit_native")
    reason = native.NativeBackend().availability()
    if reason is not None:
        pytest.skip(f"native backend unavailable: {reason}")
    return native.NativeBackend(threads=2)


def log_weights_or_uniform(m: int, log_weights: Array | None) -> Array:
    return np.full(m, -math.log(m)) if log_weights is None else np.asarray(log_weights, float)


def truth_pairs(z: Array, mean: Array, std: Array, log_weights: Array | None = None) -> Array:
    """log w_m + log N(z_s; mu_m, diag sigma_m^2), shape (S, M)."""
    lw = log_weights_or_uniform(mean.shape[0], log_weights)
    u = (z[:, None, :] - mean[None, :, :]) / std[None, :, :]
    norm = np.log(std).sum(axis=1) + 0.5 * mean.shape[1] * LOG_2PI
    with np.errstate(invalid="ignore"):
        out: Array = lw[None, :] - norm[None, :] - 0.5 * np.einsum("smd,smd->sm", u, u)
    return out


def truth_log_density(z: Array, mean: Array, std: Array, log_weights: Array | None = None) -> Array:
    return np.asarray(logsumexp(truth_pairs(z, mean, std, log_weights), axis=1))


def truth_log_marginals(
    z: Array, mean: Array, std: Array, log_weights: Array | None = None
) -> Array:
    lw = log_weights_or_uniform(mean.shape[0], log_weights)
    u = (z[:, None, :] - mean[None, :, :]) / std[None, :, :]
    lp = lw[None, :, None] - np.log(std)[None] - 0.5 * LOG_2PI - 0.5 * u * u
    return np.asarray(logsumexp(lp, axis=1))


def truth_interaction(
    z: Array,
    owner: NDArray[np.int64],
    log_qz: Array,
    mean: Array,
    std: Array,
    log_weights: Array | None = None,
) -> Array:
    """Brute force: every pair, r clipped at 1 - 1e-12, own pairs removed."""
    lr = truth_pairs(z, mean, std, log_weights) - log_qz[:, None]
    r = np.minimum(np.exp(lr), 1.0 - 1e-12)
    terms = -np.log1p(-r)
    rows = np.flatnonzero(owner >= 0)
    terms[rows, owner[rows]] = 0.0
    return np.asarray(terms.sum(axis=0))


def random_mixture(
    rng: np.random.Generator, m: int, d: int, zero_weights: int = 0, uniform: bool = False
) -> tuple[Array, Array, Array | None]:
    """mu ~ N(0, 1), sigma ~ U[0.05, 1], log weights normalised, some -inf."""
    mean = rng.standard_normal((m, d))
    std = rng.uniform(0.05, 1.0, (m, d))
    if uniform:
        return mean, std, None
    lw = rng.normal(0.0, 1.5, m)
    if zero_weights:
        lw[rng.choice(m, size=min(zero_weights, m - 1), replace=False)] = -np.inf
    lw -= logsumexp(lw)
    return mean, std, lw


def draws(
    rng: np.random.Generator, mean: Array, std: Array, s: int, log_weights: Array | None = None
) -> tuple[Array, NDArray[np.int64]]:
    """s draws of the mixture (owner: its component); the last quarter from N(0, 4), owner -1."""
    m = mean.shape[0]
    p = np.exp(log_weights_or_uniform(m, log_weights))
    owner = rng.choice(m, size=s, p=p / p.sum()).astype(np.int64)
    z = mean[owner] + std[owner] * rng.standard_normal((s, mean.shape[1]))
    k = s // 4
    if k:
        z[-k:] = 2.0 * rng.standard_normal((k, mean.shape[1]))
        owner[-k:] = -1
    return z, owner


@pytest.fixture(scope="session")
def truth() -> SimpleNamespace:
    """The float64 truths and the test data makers, for the test modules."""
    return SimpleNamespace(
        pairs=truth_pairs,
        log_density=truth_log_density,
        log_marginals=truth_log_marginals,
        interaction=truth_interaction,
        mixture=random_mixture,
        draws=draws,
    )
