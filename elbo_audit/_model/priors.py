"""Priors p(z): standard normal, diagonal Gaussian, and Gaussian mixtures.

A prior evaluates ``log_prob`` at many points and draws samples. Priors with a
closed-form cross-entropy against a diagonal-Gaussian posterior give the
average KL analytically; factorised priors also give per-dimension marginal
log-densities, needed by ``dimwise_kl``. The VampPrior of Tomczak & Welling is
a uniform mixture of the encoder's posteriors at learned pseudo-inputs, and the
aggregate posterior q(z) is a uniform mixture of all N posteriors: both are
:class:`MixtureOfGaussians`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, final

import numpy as np
from numpy.typing import NDArray

from .._errors import DataError, ModelError
from .families import LOG_2PI, DiagonalGaussian

__all__ = [
    "DiagonalGaussianPrior",
    "LazyStandardNormal",
    "MixtureOfGaussians",
    "StandardNormal",
    "aggregate_posterior_prior",
    "vamp_prior",
]


@final
@dataclass(frozen=True)
class DiagonalGaussianPrior:
    """p(z) = N(mean, diag(std^2)).

    Parameters
    ----------
    mean, std : ndarray, shape (D,)
    """

    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    name: str = "diagonal_gaussian"

    factorised: ClassVar[bool] = True

    def __post_init__(self) -> None:
        mean = np.atleast_1d(np.asarray(self.mean, np.float64))
        std = np.atleast_1d(np.asarray(self.std, np.float64))
        if mean.ndim != 1 or std.shape != mean.shape:
            raise DataError(f"prior {self.name!r}: mean and std must both have shape (D,)")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise DataError(f"prior {self.name!r}: mean must be finite and std positive")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def n_latent(self) -> int:
        return int(self.mean.shape[0])

    def log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log p(z) for each row of ``z`` (shape (S, D)) -> (S,)."""
        return np.asarray(np.sum(self.marginal_log_prob(z), axis=-1), np.float64)

    def marginal_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log p_j(z_j) for each row and dimension -> (S, D)."""
        u = (z - self.mean) / self.std
        return -0.5 * u * u - np.log(self.std) - 0.5 * LOG_2PI

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return self.mean + self.std * rng.standard_normal((n, self.n_latent))

    def grad_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """d log p(z) / dz = -(z - mean) / std^2 for each row -> (S, D)."""
        out: NDArray[np.float64] = -(np.asarray(z, np.float64) - self.mean) / self.std**2
        return out

    def cross_entropy(self, q: DiagonalGaussian) -> NDArray[np.float64]:
        """-E_{q(z|x_n)}[log p(z)] in closed form, shape (N,)."""
        return q.cross_entropy_gaussian(self.mean, self.std)

    def marginal_cross_entropy(self, q: DiagonalGaussian) -> NDArray[np.float64]:
        """-E_{q(z_j|x_n)}[log p_j(z_j)] per data point and latent, shape (N, D).

        Closed form: log s_j + 0.5 log 2 pi + (sigma_nj^2 + (mu_nj - m_j)^2) / (2 s_j^2);
        its sum over j is :meth:`cross_entropy`.
        """
        quad = (q.std**2 + (q.mean - self.mean) ** 2) / self.std**2
        out: NDArray[np.float64] = np.log(self.std) + 0.5 * LOG_2PI + 0.5 * quad
        return out


def StandardNormal(n_latent: int) -> DiagonalGaussianPrior:
    """The isotropic standard normal prior N(0, I) in ``n_latent`` dimensions."""
    if n_latent < 1:
        raise DataError(f"standard normal prior: need at least one latent, got {n_latent}")
    return DiagonalGaussianPrior(np.zeros(n_latent), np.ones(n_latent), name="standard_normal")


@final
class LazyStandardNormal:
    """N(0, I) whose dimension is read when it is first needed.

    For adapters that learn the latent dimension D only when the encoder has
    run; every method builds :func:`StandardNormal` of the D known by then.

    Parameters
    ----------
    latent_size : callable
        ``latent_size()`` returns D, or None while it is unknown.
    where : str
        Prefix of the error message when D is still unknown.
    hint : str
        How to give D up front, e.g. ``"give TorchVAE(latent_dim=...)"``.

    Raises
    ------
    ModelError
        From every method, while ``latent_size()`` returns None.
    """

    name: ClassVar[str] = "standard_normal"
    factorised: ClassVar[bool] = True

    def __init__(self, latent_size: Callable[[], int | None], where: str, hint: str) -> None:
        self._latent_size = latent_size
        self._where = where
        self._hint = hint

    def _prior(self) -> DiagonalGaussianPrior:
        d = self._latent_size()
        if d is None:
            raise ModelError(
                f"{self._where}: the latent size is unknown until the encoder has run; {self._hint}"
            )
        return StandardNormal(d)

    @property
    def n_latent(self) -> int:
        return int(self._prior().n_latent)

    def log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._prior().log_prob(z)

    def marginal_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._prior().marginal_log_prob(z)

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return self._prior().sample(rng, n)

    def grad_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._prior().grad_log_prob(z)

    def cross_entropy(self, q: DiagonalGaussian) -> NDArray[np.float64]:
        return self._prior().cross_entropy(q)

    def marginal_cross_entropy(self, q: DiagonalGaussian) -> NDArray[np.float64]:
        return self._prior().marginal_cross_entropy(q)


@final
@dataclass(frozen=True)
class MixtureOfGaussians:
    """p(z) = sum_k pi_k N(z; mean_k, diag(std_k^2)).

    Parameters
    ----------
    weights : ndarray, shape (K,)
        Mixture weights, positive, summing to one.
    mean, std : ndarray, shape (K, D)
    name : str
    """

    weights: NDArray[np.float64]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    name: str = "mixture_of_gaussians"
    log_weights: NDArray[np.float64] = field(init=False, repr=False)

    factorised: ClassVar[bool] = False

    def __post_init__(self) -> None:
        w = np.atleast_1d(np.asarray(self.weights, np.float64))
        mean = np.atleast_2d(np.asarray(self.mean, np.float64))
        std = np.atleast_2d(np.asarray(self.std, np.float64))
        if mean.shape != std.shape or w.shape != (mean.shape[0],):
            raise DataError(
                f"prior {self.name!r}: weights (K,), mean (K, D) and std (K, D) disagree: "
                f"{w.shape}, {mean.shape}, {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise DataError(f"prior {self.name!r}: means must be finite and stds positive")
        if (w <= 0).any() or abs(w.sum() - 1.0) > 1e-6:
            raise DataError(f"prior {self.name!r}: weights must be positive and sum to 1")
        object.__setattr__(self, "weights", w / w.sum())
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "log_weights", np.log(w / w.sum()))

    @property
    def n_latent(self) -> int:
        return int(self.mean.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.mean.shape[0])

    def log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log p(z) for each row of ``z`` -> (S,), exactly over all K components.

        Plain float64 numpy in blocks of components; audits evaluate mixture
        priors on their compute backend instead (:mod:`elbo_audit._kernels`).
        """
        z = np.asarray(z, np.float64)
        return _mixture_lse(z[:, None, :], self.mean[:, None, :], self.std[:, None, :],
                            self.log_weights, axis_sum=True)

    def marginal_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per-dimension marginals log p_j(z_j) -> (S, D)."""
        z = np.asarray(z, np.float64)
        return _mixture_lse(z[:, None, :], self.mean[:, None, :], self.std[:, None, :],
                            self.log_weights, axis_sum=False)

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        k = rng.choice(self.n_components, size=n, p=self.weights)
        return self.mean[k] + self.std[k] * rng.standard_normal((n, self.n_latent))

    def grad_log_prob(self, z: NDArray[np.float64], block: int = 256) -> NDArray[np.float64]:
        """d log p(z) / dz = sum_k r_k(z) * -(z - mean_k) / std_k^2 for each row -> (S, D).

        r_k(z) are the components' responsibilities, computed with a
        log-sum-exp in blocks of ``block`` rows.
        """
        z = np.asarray(z, np.float64)
        out = np.empty_like(z)
        inv_var = self.std**-2
        for s0 in range(0, z.shape[0], block):
            zb = z[s0 : s0 + block, None, :]  # (s, 1, D)
            u = (zb - self.mean[None]) / self.std[None]  # (s, K, D)
            logc = self.log_weights[None] - 0.5 * np.sum(u * u, axis=2) - np.sum(np.log(self.std), axis=1)[None]
            r = np.exp(logc - logc.max(axis=1, keepdims=True))
            r /= r.sum(axis=1, keepdims=True)
            out[s0 : s0 + block] = np.einsum("sk,skd->sd", r, -(zb - self.mean[None]) * inv_var[None])
        return out


def _mixture_lse(
    z: NDArray[np.float64],
    mean: NDArray[np.float64],
    std: NDArray[np.float64],
    log_w: NDArray[np.float64],
    *,
    axis_sum: bool,
    block: int = 256,
) -> NDArray[np.float64]:
    """Streaming logsumexp over components of log w_k + log N(z; mean_k, std_k^2).

    ``z`` is (S, 1, D) and ``mean``/``std`` are (K, 1, D); with ``axis_sum`` the
    density is joint over D (result (S,)), else per dimension (result (S, D)).
    """
    shape = (z.shape[0],) if axis_sum else (z.shape[0], z.shape[2])
    run_max = np.full(shape, -np.inf)
    run_sum = np.zeros(shape)
    for k0 in range(0, mean.shape[0], block):
        mu, sd = mean[k0 : k0 + block, 0], std[k0 : k0 + block, 0]
        u = (z - mu[None]) / sd[None]  # (S, k, D)
        logn = -0.5 * u * u - np.log(sd)[None] - 0.5 * LOG_2PI
        lw = log_w[k0 : k0 + block]
        tile = logn.sum(axis=2) + lw[None] if axis_sum else logn + lw[None, :, None]
        new_max = np.maximum(run_max, tile.max(axis=1))
        shift = np.where(np.isneginf(new_max), 0.0, new_max)
        run_sum = run_sum * np.exp(run_max - shift) + np.exp(tile - shift[:, None]).sum(axis=1)
        run_max = new_max
    with np.errstate(divide="ignore"):
        return np.asarray(run_max + np.log(run_sum), np.float64)


def vamp_prior(pseudo_posteriors: DiagonalGaussian) -> MixtureOfGaussians:
    """The VampPrior: a uniform mixture of the posteriors at K pseudo-inputs.

    Parameters
    ----------
    pseudo_posteriors : DiagonalGaussian
        q(z | u_k) for the K learned pseudo-inputs u_k.

    References
    ----------
    .. [1] J. M. Tomczak and M. Welling, "VAE with a VampPrior", AISTATS 2018.
    """
    k = pseudo_posteriors.n_points
    return MixtureOfGaussians(
        np.full(k, 1.0 / k), pseudo_posteriors.mean, pseudo_posteriors.std, name="vamp_prior"
    )


def aggregate_posterior_prior(posteriors: DiagonalGaussian) -> MixtureOfGaussians:
    """The aggregate posterior q(z) = (1/N) sum_n q(z | x_n) used as a prior.

    It is the prior that maximises the average ELBO for a fixed encoder and
    decoder: under it ``marginal_kl`` is zero and ``avg_kl`` equals
    ``index_code_mi``.

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery", 2016.
    """
    n = posteriors.require_mixture().n_points
    return MixtureOfGaussians(
        np.full(n, 1.0 / n), posteriors.mean, posteriors.std, name="aggregate_posterior"
    )
