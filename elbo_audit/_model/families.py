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
from typing import Any, ClassVar, final

import numpy as np
from numpy.typing import NDArray

from .._errors import DataError, ModelError

__all__ = ["ENCODING_BOUNDS", "LOG_2PI", "POSTERIOR_PARAMS", "DiagonalGaussian", "posterior_from_params"]

_ROWS = 16384  # rows per block of row-wise computations

LOG_2PI = math.log(2.0 * math.pi)

#: The largest magnitude each array of a saved encoding may hold (docs/posteriors.md).
#: With |mean| <= 1e20 and std in [e^-40, e^40] (4.2e-18 .. 2.4e17) every squared
#: standardised distance between a draw and a component, ((z - mu) / sigma)^2, stays
#: below about 1e76 per latent, so the terms, their jackknife cubes (the BCa
#: acceleration) and mean^2 + std^2 are finite in float64 with room to spare;
#: beyond, exp(2 log_std) underflows or mean^2 overflows and a term is inf or NaN.
ENCODING_BOUNDS: dict[str, tuple[float, float]] = {
    "mean": (-1e20, 1e20),
    "log_std": (-40.0, 40.0),
    "std": (math.exp(-40.0), math.exp(40.0)),
    "reconstruction": (-1e20, 1e20),
}

#: What the second parameter of an encoder's ``(mean, second)`` output may be.
POSTERIOR_PARAMS = ("log_var", "log_std", "std", "var")


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
        return cls(np.asarray(mean, dtype=np.float64), np.exp(log_std), source)

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

    def beyond_bounds(self) -> str | None:
        """The first parameter outside :data:`ENCODING_BOUNDS`, described (None when all are inside).

        Beyond these bounds the terms overflow to inf or NaN in float64.
        """
        for what, key, arr in (("posterior mean", "mean", self.mean), ("posterior std", "std", self.std)):
            lo, hi = ENCODING_BOUNDS[key]
            bad = (arr < lo) | (arr > hi)
            rows = np.flatnonzero(bad.any(axis=1))
            if rows.size:
                r = int(rows[0])
                j = int(np.flatnonzero(bad[r])[0])
                return f"{what} {arr[r, j]:g} at data point {r}, latent {j}, outside [{lo:g}, {hi:g}]"
        return None

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
        z: NDArray[np.float64]
        if index is None:
            z = self.mean[:, None, :] + self.std[:, None, :] * eps
        else:
            # rows in blocks: the same values as in one piece, without (M, D) temporaries
            z = np.empty(np.shape(eps))
            for i in range(0, index.shape[0], _ROWS):
                ix = index[i : i + _ROWS]
                z[i : i + _ROWS] = self.mean[ix] + self.std[ix] * eps[i : i + _ROWS]
        return z

    def log_prob_own(self, z: NDArray[np.float64], index: NDArray[np.intp]) -> NDArray[np.float64]:
        """log q(z_i | x_{index_i}) for each row i of ``z`` (direct form)."""
        log_q: NDArray[np.float64] = np.empty(index.shape[0])
        for i in range(0, index.shape[0], _ROWS):
            ix, sl = index[i : i + _ROWS], slice(i, i + _ROWS)
            u = (z[sl] - self.mean[ix]) / self.std[ix]
            log_q[sl] = (
                -0.5 * np.sum(u * u, axis=-1) - np.sum(np.log(self.std[ix]), axis=-1)
                - 0.5 * self.n_latent * LOG_2PI
            )
        return log_q

    def entropy(self) -> NDArray[np.float64]:
        """Differential entropy H[q(z | x_n)] of every posterior, shape (N,)."""
        h: NDArray[np.float64] = np.sum(np.log(self.std), axis=1) + 0.5 * self.n_latent * (1.0 + LOG_2PI)
        return h

    def cross_entropy_gaussian(
        self, prior_mean: NDArray[np.float64], prior_std: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """-E_q[log N(z; prior_mean, diag prior_std^2)] for every posterior, shape (N,).

        Closed form: sum_d [log s_d + 0.5 log 2 pi + (sigma_nd^2 + (mu_nd - m_d)^2) / (2 s_d^2)].
        """
        s = np.broadcast_to(np.asarray(prior_std, np.float64), (self.n_latent,))
        m = np.broadcast_to(np.asarray(prior_mean, np.float64), (self.n_latent,))
        quad = (self.std**2 + (self.mean - m) ** 2) / (s**2)
        ce: NDArray[np.float64] = np.sum(np.log(s)) + 0.5 * self.n_latent * LOG_2PI + 0.5 * np.sum(quad, axis=1)
        return ce


def _rows_of(
    part: NDArray[Any] | list[NDArray[Any]],
) -> NDArray[np.float64] | list[NDArray[np.float64]]:
    if isinstance(part, list):
        return [np.asarray(c, dtype=np.float64) for c in part]
    return np.asarray(part, dtype=np.float64)


def posterior_from_params(
    mean: NDArray[Any] | list[NDArray[Any]],
    second: NDArray[Any] | list[NDArray[Any]],
    kind: str,
    where: str,
    batch_size: int,
    *,
    producer: str = "encoder",
    source: str | None = None,
) -> DiagonalGaussian:
    """Check what an encoder returned for a batch and turn it into posteriors.

    The one place where adapters (PyTorch, JAX, ...) validate the encoder's
    output, so that every framework reports a bad encoder in the same words:
    shapes, NaN or infinite values (naming the rows), non-positive scales,
    and scales that under- or overflow when converted to standard deviations.

    Parameters
    ----------
    mean : ndarray, shape (B, D), or list of ndarray
        Posterior means of the batch; a list holds the row blocks of
        successive chunks (as an adapter collects them) and is concatenated
        (a list is always read as blocks: give one batch as an array).
    second : ndarray, shape (B, D), or list of ndarray
        The second parameter of each posterior, as named by ``kind``; a list
        is concatenated like ``mean``.
    kind : {"log_var", "log_std", "std", "var"}
        What ``second`` holds (one of :data:`POSTERIOR_PARAMS`).
    where : str
        Prefix of every error message, e.g. ``"model 'm' (torch adapter)"``.
    batch_size : int
        B, the number of data points the encoder was given.
    producer : str, default "encoder"
        What returned the parameters, as error messages name it
        (``"encoder"``, ``"encode_fn"``, ...).
    source : str, optional
        ``source`` of the returned posteriors; ``where`` by default.

    Returns
    -------
    DiagonalGaussian
        Posteriors with ``mean`` and the standard deviations implied by
        ``second``, in float64.

    Raises
    ------
    ModelError
        The parameters have the wrong shapes, hold NaN or infinite values,
        a ``std`` or ``var`` is not positive, or the standard deviation
        under- or overflows float64.
    ValueError
        ``kind`` is not one of :data:`POSTERIOR_PARAMS` (a bug of the caller).
    """
    if kind not in POSTERIOR_PARAMS:
        raise ValueError(f"kind={kind!r}; expected one of {', '.join(POSTERIOR_PARAMS)}")
    b = int(batch_size)
    of_batch = f"of a batch of {b} data points"
    m, s = _rows_of(mean), _rows_of(second)
    if isinstance(m, list) or isinstance(s, list):
        blocks_m = m if isinstance(m, list) else [m]
        blocks_s = s if isinstance(s, list) else [s]
        try:
            m, s = np.concatenate(blocks_m), np.concatenate(blocks_s)
        except ValueError:
            shapes = sorted({a.shape for a in blocks_m} | {a.shape for a in blocks_s})
            raise ModelError(
                f"{where}: {producer} returned posterior parameters of shapes {shapes} "
                f"for a batch of {b} data points; expected ({b}, D)"
            ) from None
    if m.ndim != 2 or m.shape[0] != b:
        raise ModelError(
            f"{where}: {producer} returned posterior means of shape {m.shape} for a "
            f"batch of {b} data points; expected ({b}, D)"
        )
    if s.shape != m.shape:
        raise ModelError(f"{where}: {producer} returned mean {m.shape} but {kind} {s.shape}")
    for label, arr in (("mean", m), (kind, s)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ModelError(
                f"{where}: {producer} returned NaN or infinite posterior {label} at rows "
                f"{_first_bad_rows(bad)} {of_batch}"
            )
    if kind in ("std", "var") and (s <= 0).any():
        raise ModelError(
            f"{where}: {producer} returned non-positive posterior {kind} at rows "
            f"{_first_bad_rows(s <= 0)} {of_batch}"
        )
    with np.errstate(over="ignore", under="ignore"):
        if kind == "log_var":
            std = np.exp(0.5 * s)
        elif kind == "log_std":
            std = np.exp(s)
        elif kind == "var":
            std = np.sqrt(s)
        else:
            std = s
    bad = ~(np.isfinite(std) & (std > 0))
    if bad.any():
        raise ModelError(
            f"{where}: posterior std from the {producer}'s {kind} under- or overflows "
            f"at rows {_first_bad_rows(bad)} {of_batch}"
        )
    return DiagonalGaussian(m, std, where if source is None else source)
