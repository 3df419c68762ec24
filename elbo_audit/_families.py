"""Posterior families: the distributions an encoder may return.

A posterior family holds the parameters of q(z | x_n) for every data point in
plain numpy arrays and knows how to sample from them, evaluate their density,
and (where a closed form exists) their entropy and their cross-entropy to a
Gaussian prior. The diagonal Gaussian is the first family; others register
through the ``elbo_audit_register_families`` hook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, final

import numpy as np
from numpy.typing import NDArray

from ._errors import DataError

__all__ = ["DiagonalGaussian", "LOG_2PI"]

LOG_2PI = math.log(2.0 * math.pi)


def _first_bad_rows(mask: NDArray[np.bool_], limit: int = 5) -> str:
    rows = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    return f"{shown}{more}"


@final
@dataclass(frozen=True, eq=False)
class DiagonalGaussian:
    """Diagonal Gaussian posteriors q(z | x_n) = N(mean_n, diag(std_n^2)).

    Parameters
    ----------
    mean : ndarray, shape (N, D)
        Posterior means, one row per data point.
    std : ndarray, shape (N, D)
        Posterior standard deviations, strictly positive.
    source : str
        Where the parameters came from, used in error messages.
    """

    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    source: str = "posteriors"

    name: ClassVar[str] = "diagonal_gaussian"

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        where = self.source
        if mean.ndim != 2:
            raise DataError(f"{where}: 'mean' must have shape (N, D), got {mean.shape}")
        if std.shape != mean.shape:
            raise DataError(
                f"{where}: 'std' has shape {std.shape} but 'mean' has shape {mean.shape}"
            )
        n, d = mean.shape
        if d == 0:
            raise DataError(f"{where}: the latent dimension D is 0; need at least one latent")
        if n < 1:
            raise DataError(f"{where}: no data points")
        for key, arr in (("mean", mean), ("std", std)):
            bad = ~np.isfinite(arr)
            if bad.any():
                raise DataError(
                    f"{where}: '{key}' has NaN or infinite values at data points "
                    f"{_first_bad_rows(bad)}"
                )
        nonpos = std <= 0.0
        if nonpos.any():
            raise DataError(
                f"{where}: 'std' must be positive; non-positive values at data points "
                f"{_first_bad_rows(nonpos)}"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_log_std(
        cls, mean: NDArray[np.floating], log_std: NDArray[np.floating], source: str = "posteriors"
    ) -> DiagonalGaussian:
        """Build from means and log standard deviations."""
        log_std = np.asarray(log_std, dtype=np.float64)
        if not np.isfinite(log_std).all():
            bad = ~np.isfinite(log_std)
            raise DataError(
                f"{source}: 'log_std' has NaN or infinite values at data points "
                f"{_first_bad_rows(bad)}"
            )
        return cls(mean, np.exp(log_std), source)

    @classmethod
    def from_log_var(
        cls, mean: NDArray[np.floating], log_var: NDArray[np.floating], source: str = "posteriors"
    ) -> DiagonalGaussian:
        """Build from means and log variances (the usual VAE encoder output)."""
        return cls.from_log_std(mean, 0.5 * np.asarray(log_var, dtype=np.float64), source)

    def require_mixture(self) -> DiagonalGaussian:
        """Check that these posteriors can form an aggregate posterior (N >= 2)."""
        if self.n_points < 2:
            raise DataError(
                f"{self.source}: N = {self.n_points} data points; the aggregate posterior needs N >= 2"
            )
        return self

    @property
    def n_points(self) -> int:
        """Number of data points N."""
        return int(self.mean.shape[0])

    @property
    def n_latent(self) -> int:
        """Latent dimension D."""
        return int(self.mean.shape[1])

    def subset(self, index: NDArray[np.intp]) -> DiagonalGaussian:
        """The posteriors of the data points ``index``."""
        return DiagonalGaussian(self.mean[index], self.std[index], self.source)

    def sample(self, eps: NDArray[np.float64], index: NDArray[np.intp] | None = None) -> NDArray[np.float64]:
        """Reparameterised samples ``mean + std * eps``.

        Parameters
        ----------
        eps : ndarray, shape (M, D) or (N, K, D)
            Standard normal noise. With ``index`` (shape (M,)) row i of ``eps``
            is used for data point ``index[i]``; without it ``eps`` has shape
            (N, K, D) and gives K samples per data point.
        index : ndarray of int, optional
        """
        if index is None:
            return self.mean[:, None, :] + self.std[:, None, :] * eps
        return self.mean[index] + self.std[index] * eps

    def log_prob_own(self, z: NDArray[np.float64], index: NDArray[np.intp]) -> NDArray[np.float64]:
        """log q(z_i | x_{index_i}) for each row i of ``z`` (direct form)."""
        u = (z - self.mean[index]) / self.std[index]
        return -0.5 * np.sum(u * u, axis=-1) - np.sum(np.log(self.std[index]), axis=-1) - 0.5 * self.n_latent * LOG_2PI

    def entropy(self) -> NDArray[np.float64]:
        """Differential entropy H[q(z | x_n)] of every posterior, shape (N,)."""
        return np.sum(np.log(self.std), axis=1) + 0.5 * self.n_latent * (1.0 + LOG_2PI)

    def cross_entropy_gaussian(
        self, prior_mean: NDArray[np.float64], prior_std: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """-E_q[log N(z; prior_mean, diag prior_std^2)] for every posterior, shape (N,).

        Closed form: sum_d [log s_d + 0.5 log 2 pi + (sigma_nd^2 + (mu_nd - m_d)^2) / (2 s_d^2)].
        """
        s = np.broadcast_to(np.asarray(prior_std, np.float64), (self.n_latent,))
        m = np.broadcast_to(np.asarray(prior_mean, np.float64), (self.n_latent,))
        quad = (self.std**2 + (self.mean - m) ** 2) / (s**2)
        return np.sum(np.log(s)) + 0.5 * self.n_latent * LOG_2PI + 0.5 * np.sum(quad, axis=1)
