"""Per-latent terms: where the KL sits, dimension by dimension, and which dimensions are active.

For a factorised Gaussian posterior and a factorised Gaussian prior the KL of
each data point splits exactly over the latents,
KL(q(z|x_n) || p(z)) = sum_j KL(q(z_j|x_n) || p(z_j)), each summand in closed
form, so ``latent_kl`` sums to ``avg_kl`` (its analytic form) with no Monte
Carlo error. The variance of the posterior means across data points measures
how much a dimension's code depends on the input; a dimension whose variance
is below a threshold (0.01 by default) is inactive, as in Burda et al. (2016).

Both are averages over data points, so their only uncertainty is that of the
data: a percentile bootstrap over data points gives their intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

from .._model.families import LOG_2PI, DiagonalGaussian

__all__ = [
    "DEFAULT_ACTIVE_THRESHOLD",
    "LatentTerms",
    "latent_intervals",
    "latent_kl",
    "latent_terms",
    "posterior_mean_variance",
]

#: Burda et al. (2016): a unit is active when Cov_x(E_q[z_j|x]) exceeds this.
DEFAULT_ACTIVE_THRESHOLD = 0.01


def latent_kl(q: DiagonalGaussian, prior: Any) -> NDArray[np.float64] | None:
    """KL(q(z_j|x_n) || p(z_j)) per data point and latent, in nats, shape (N, D).

    Parameters
    ----------
    q : DiagonalGaussian
        q(z|x_n) for all N data points.
    prior : Prior
        Needs ``factorised`` true and ``marginal_cross_entropy(q) -> (N, D)``
        (the closed form for factorised Gaussian priors).

    Returns
    -------
    ndarray or None
        None when the prior has no closed form per latent (a mixture prior).

    References
    ----------
    .. [1] D. P. Kingma and M. Welling, "Auto-encoding variational Bayes",
       ICLR 2014 (appendix B: the Gaussian KL in closed form).
    .. [2] M. D. Hoffman and M. J. Johnson, "ELBO surgery", 2016.
    """
    cross = getattr(prior, "marginal_cross_entropy", None)
    if not getattr(prior, "factorised", False) or cross is None:
        return None
    ce = np.asarray(cross(q), np.float64)
    entropy = np.log(q.std) + 0.5 * (1.0 + LOG_2PI)
    out: NDArray[np.float64] = ce - entropy
    return out


def posterior_mean_variance(q: DiagonalGaussian) -> NDArray[np.float64]:
    """Variance over data points of the posterior means, per latent, shape (D,).

    References
    ----------
    .. [1] Y. Burda, R. Grosse and R. Salakhutdinov, "Importance weighted
       autoencoders", ICLR 2016 (the active-units criterion).
    """
    out: NDArray[np.float64] = np.var(q.mean, axis=0)
    return out


def latent_intervals(
    q: DiagonalGaussian,
    pointwise_kl: dict[str, NDArray[np.float64]],
    rng: np.random.Generator,
    n_resamples: int,
    confidence_level: float,
) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.float64]]:
    """Percentile bootstrap intervals over data points of ``latent_kl`` and the mean variance.

    Every statistic is evaluated on the same resamples (paired), drawn from
    ``rng`` in blocks of 32.

    Returns
    -------
    dict of str to ndarray, ndarray
        Per prior, the (D, 2) interval of ``latent_kl``; and the (D, 2)
        interval of ``posterior_mean_variance``.

    References
    ----------
    .. [1] B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap",
       Chapman & Hall, 1993 (ch. 13, the percentile interval).
    """
    n, d = q.mean.shape
    reps_kl = {p: np.empty((n_resamples, d)) for p in pointwise_kl}
    reps_var = np.empty((n_resamples, d))
    m1, m2 = q.mean, q.mean**2
    for start in range(0, n_resamples, 32):
        b = min(32, n_resamples - start)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64) / n
        mean = w @ m1
        reps_var[start : start + b] = np.maximum(w @ m2 - mean**2, 0.0)
        for p, kl in pointwise_kl.items():
            reps_kl[p][start : start + b] = w @ kl
    alpha = (1.0 - confidence_level) / 2.0
    qs = [alpha, 1.0 - alpha]

    def interval(reps: NDArray[np.float64]) -> NDArray[np.float64]:
        out: NDArray[np.float64] = np.quantile(reps, qs, axis=0).T
        return out

    return {p: interval(r) for p, r in reps_kl.items()}, interval(reps_var)


@final
@dataclass(frozen=True)
class LatentTerms:
    """The per-latent terms of one model.

    Attributes
    ----------
    latent_kl : dict of str to ndarray
        Per prior with a closed form, KL(q(z_j|x_n) || p(z_j)) averaged over
        data points, shape (D,).
    latent_kl_ci : dict of str to ndarray
        Their bootstrap intervals, shape (D, 2) (empty without resamples).
    posterior_mean_variance : ndarray, shape (D,)
    posterior_mean_variance_ci : ndarray, shape (D, 2), or None
    active_threshold : float
    """

    latent_kl: dict[str, NDArray[np.float64]]
    latent_kl_ci: dict[str, NDArray[np.float64]]
    posterior_mean_variance: NDArray[np.float64]
    posterior_mean_variance_ci: NDArray[np.float64] | None
    active_threshold: float

    @property
    def active(self) -> NDArray[np.bool_]:
        """Whether each latent is active (variance of posterior means above the threshold)."""
        out: NDArray[np.bool_] = self.posterior_mean_variance > self.active_threshold
        return out


def latent_terms(
    q: DiagonalGaussian,
    priors: dict[str, Any],
    rng: np.random.Generator,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    active_threshold: float = DEFAULT_ACTIVE_THRESHOLD,
) -> LatentTerms:
    """Every per-latent term of one model, with bootstrap intervals over data points.

    Parameters
    ----------
    q : DiagonalGaussian
    priors : dict of str to Prior
    rng : numpy Generator
        The resampling stream (``elbo_audit._model.streams.LATENT``).
    n_resamples : int
        0 gives no intervals.
    confidence_level : float
    active_threshold : float
        Burda et al.'s threshold on the variance of posterior means.

    Returns
    -------
    LatentTerms

    References
    ----------
    .. [1] Y. Burda, R. Grosse and R. Salakhutdinov, "Importance weighted
       autoencoders", ICLR 2016.
    .. [2] M. D. Hoffman and M. J. Johnson, "ELBO surgery", 2016.
    """
    pointwise = {}
    for label, prior in priors.items():
        kl = latent_kl(q, prior)
        if kl is not None:
            pointwise[label] = kl
    var = posterior_mean_variance(q)
    cis: dict[str, NDArray[np.float64]] = {}
    var_ci = None
    if n_resamples > 0:
        cis, var_ci = latent_intervals(q, pointwise, rng, n_resamples, confidence_level)
    means = {p: np.mean(kl, axis=0) for p, kl in pointwise.items()}
    return LatentTerms(means, cis, var, var_ci, float(active_threshold))
