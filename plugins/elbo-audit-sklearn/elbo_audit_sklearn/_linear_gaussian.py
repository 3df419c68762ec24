"""Linear-Gaussian latent models and their exact posteriors.

Factor analysis and probabilistic PCA are both

    z ~ N(0, I_K),    x | z ~ N(z @ W + mu, diag(psi)),

with a loading matrix ``W`` of shape (K, D) (scikit-learn's row layout:
``X ~= z @ components_ + mean_``), so the marginal is
x ~ N(mu, W^T W + diag(psi)) and the posterior is Gaussian and the same shape
for every data point:

    Sigma = (I + W diag(1/psi) W^T)^{-1},    m(x) = Sigma W diag(1/psi) (x - mu).

elbo-audit's posterior family is a *diagonal* Gaussian. Sigma is diagonalised by
a rotation of the latent space: with the eigendecomposition
P = Sigma^{-1} = U diag(p) U^T and latents z' = U^T z, the prior is unchanged
(N(0, I) is rotation invariant), the loading becomes W' = U^T W, and the
posterior is N(U^T m(x), diag(1/p)) -- still exact. With the exact posterior the
ELBO of every data point equals its log-likelihood log p(x), which is what
scikit-learn's ``score_samples`` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

from elbo_audit import DiagonalGaussian, ModelError

__all__ = ["LinearGaussianDecoder", "LinearGaussianEncoder", "LinearGaussianLatentModel"]

_LOG_2PI = math.log(2.0 * math.pi)
_DIAGONAL_RTOL = 1e-10


@final
@dataclass(frozen=True, eq=False)
class LinearGaussianLatentModel:
    """A linear-Gaussian latent model in the basis where its posterior is diagonal.

    Build it with :meth:`from_loading`; the attributes are derived there.

    Attributes
    ----------
    loading : ndarray, shape (K, D)
        W' = U^T W: x | z' ~ N(z' @ loading + mean, diag(noise_variance)).
    mean : ndarray, shape (D,)
    noise_variance : ndarray, shape (D,)
        Strictly positive per-feature noise variances psi.
    rotation : ndarray, shape (K, K)
        Orthogonal U with z = U z' (z in the estimator's own latent basis).
        The identity when the posterior is already diagonal (PCA).
    posterior_var : ndarray, shape (K,)
        Exact posterior variances in the rotated basis (the same for every x).
    encoder_matrix : ndarray, shape (K, D)
        Posterior mean m'(x) = (x - mean) @ encoder_matrix.T.
    source : str
        What the model was built from, for error messages.

    References
    ----------
    .. [1] C. M. Bishop, "Pattern Recognition and Machine Learning", Springer
       2006, sections 2.3.3 (linear-Gaussian posteriors) and 12.2.
    """

    loading: NDArray[np.float64]
    mean: NDArray[np.float64]
    noise_variance: NDArray[np.float64]
    rotation: NDArray[np.float64]
    posterior_var: NDArray[np.float64]
    encoder_matrix: NDArray[np.float64]
    source: str = "linear-Gaussian model"

    @classmethod
    def from_loading(
        cls,
        loading: NDArray[Any],
        mean: NDArray[Any],
        noise_variance: NDArray[Any] | float,
        source: str = "linear-Gaussian model",
    ) -> LinearGaussianLatentModel:
        """Exact diagonal-posterior form of z ~ N(0, I), x | z ~ N(z @ W + mean, diag(psi)).

        Parameters
        ----------
        loading : ndarray, shape (K, D)
            W in the estimator's latent basis.
        mean : ndarray, shape (D,)
        noise_variance : float or ndarray, shape (D,)
            Must be finite and strictly positive.
        source : str
            Names the estimator in error messages.

        Returns
        -------
        LinearGaussianLatentModel

        Raises
        ------
        ModelError
            Shapes disagree, values are not finite, or a noise variance is not positive.
        """
        w = np.atleast_2d(np.asarray(loading, dtype=np.float64))
        k, d = w.shape
        mu = np.asarray(mean, dtype=np.float64).reshape(-1)
        psi = np.broadcast_to(np.asarray(noise_variance, dtype=np.float64), (d,)).copy()
        if k < 1 or d < 1:
            raise ModelError(
                f"{source}: loading matrix has shape {w.shape}; need K >= 1 and D >= 1"
            )
        if mu.shape != (d,):
            raise ModelError(f"{source}: mean has shape {mu.shape}, expected ({d},)")
        for key, arr in (("loading", w), ("mean", mu), ("noise variance", psi)):
            if not np.isfinite(arr).all():
                raise ModelError(f"{source}: the {key} has NaN or infinite values")
        if (psi <= 0.0).any():
            bad = np.flatnonzero(psi <= 0.0)
            raise ModelError(
                f"{source}: noise variance is not positive for feature(s) "
                f"{', '.join(str(int(i)) for i in bad[:5])}{' ...' if bad.size > 5 else ''}; "
                "the model has no density (p(x) is degenerate)"
            )
        scaled = w / psi  # W diag(1/psi), (K, D)
        precision = np.eye(k) + scaled @ w.T
        precision = 0.5 * (precision + precision.T)
        diag = np.diag(precision).copy()
        offdiag = precision - np.diag(diag)
        if np.max(np.abs(offdiag), initial=0.0) <= _DIAGONAL_RTOL * np.max(diag):
            rotation = np.eye(k)
            p = diag
        else:
            p, rotation = np.linalg.eigh(precision)
            order = np.argsort(-p, kind="stable")  # most informative latent first
            p, rotation = p[order], rotation[:, order]
            # deterministic signs: the largest entry of each column is positive
            pivot = np.argmax(np.abs(rotation), axis=0)
            signs = np.sign(rotation[pivot, np.arange(k)])
            rotation = rotation * np.where(signs == 0.0, 1.0, signs)
        if not (np.isfinite(p).all() and (p > 0.0).all()):
            raise ModelError(f"{source}: the posterior precision is not positive definite")
        w_rot = rotation.T @ w
        posterior_var = 1.0 / p
        encoder_matrix = (w_rot / psi) * posterior_var[:, None]
        return cls(w_rot, mu, psi, rotation, posterior_var, encoder_matrix, source)

    @property
    def n_latent(self) -> int:
        """Latent dimension K."""
        return int(self.loading.shape[0])

    @property
    def n_features(self) -> int:
        """Data dimension D."""
        return int(self.loading.shape[1])

    def as_rows(self, x: NDArray[Any]) -> NDArray[np.float64]:
        """``x`` as a float64 (B, D) array, checking the feature count."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0:
            raise ModelError(f"{self.source}: data must have one data point per row, got a scalar")
        rows = x.reshape(x.shape[0], -1)
        if rows.shape[1] != self.n_features:
            raise ModelError(
                f"{self.source}: data points have {rows.shape[1]} features, the model expects "
                f"{self.n_features}"
            )
        return rows

    def posterior(self, x: NDArray[Any]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Exact posterior means (B, K) and standard deviations (B, K), rotated basis."""
        rows = self.as_rows(x)
        mean = (rows - self.mean) @ self.encoder_matrix.T
        std = np.broadcast_to(np.sqrt(self.posterior_var), mean.shape).copy()
        return mean, std

    def log_likelihood(self, x: NDArray[Any], z: NDArray[Any]) -> NDArray[np.float64]:
        """log N(x_b; z_bk @ loading + mean, diag(noise_variance)), shape (B, K)."""
        rows = self.as_rows(x)
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 3 or z.shape[0] != rows.shape[0] or z.shape[2] != self.n_latent:
            raise ModelError(
                f"{self.source}: z has shape {z.shape}, expected ({rows.shape[0]}, K, "
                f"{self.n_latent})"
            )
        resid = rows[:, None, :] - (z @ self.loading + self.mean)
        quad = np.einsum("bkd,bkd->bk", resid, resid / self.noise_variance)
        const = self.n_features * _LOG_2PI + float(np.sum(np.log(self.noise_variance)))
        return -0.5 * (quad + const)

    def log_likelihood_grad(
        self, x: NDArray[Any], z: NDArray[Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """log p(x_b | z_bk) (B, K) and its gradient (x - z W' - mu) diag(1/psi) W'^T (B, K, K_z)."""
        ll = self.log_likelihood(x, z)
        resid = self.as_rows(x)[:, None, :] - (np.asarray(z, np.float64) @ self.loading + self.mean)
        return ll, (resid / self.noise_variance) @ self.loading.T

    def covariance(self) -> NDArray[np.float64]:
        """Marginal covariance of x, W'^T W' + diag(psi), shape (D, D)."""
        cov = self.loading.T @ self.loading
        cov[np.diag_indices_from(cov)] += self.noise_variance
        return cov


@final
class LinearGaussianEncoder:
    """Encoder of the exact posterior q(z' | x) = p(z' | x) of a linear-Gaussian model.

    Parameters
    ----------
    model : LinearGaussianLatentModel
    """

    def __init__(self, model: LinearGaussianLatentModel) -> None:
        self.model = model

    def encode(self, x: NDArray[Any]) -> DiagonalGaussian:
        """Posteriors of a batch ``x`` of B data points (any trailing shape with D entries)."""
        mean, std = self.model.posterior(x)
        return DiagonalGaussian(mean, std, source=self.model.source)


@final
class LinearGaussianDecoder:
    """Decoder log p(x | z') = log N(x; z' @ W' + mu, diag(psi)) of a linear-Gaussian model.

    Parameters
    ----------
    model : LinearGaussianLatentModel
    """

    def __init__(self, model: LinearGaussianLatentModel) -> None:
        self.model = model

    def log_likelihood(self, x: NDArray[Any], z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log p(x_b | z_bk) for x of B rows and z of shape (B, K, D_z); returns (B, K)."""
        return self.model.log_likelihood(x, z)

    def log_likelihood_grad(
        self, x: NDArray[Any], z: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """log p(x_b | z_bk) and its gradient in z, in closed form: (B, K) and (B, K, D_z)."""
        return self.model.log_likelihood_grad(x, z)
