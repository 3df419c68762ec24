"""Estimators of the KL side of the ELBO-surgery decomposition.

For posteriors q(z | x_n), n = 1..N, and a prior p(z), with
q(n, z) = q(z | x_n) / N and the aggregate posterior q(z) = (1/N) sum_n q(z | x_n):

* ``avg_kl`` = (1/N) sum_n KL(q(z|x_n) || p(z)), in closed form when the prior
  has a Gaussian cross-entropy, else by Monte Carlo;
* ``index_code_mi`` = E_{q(n,z)}[log q(z|x_n) - log q(z)];
* ``marginal_kl`` = E_{q(z)}[log q(z) - log p(z)];
* ``total_correlation`` = E_{q(z)}[log q(z) - sum_j log q(z_j)];
* ``dimwise_kl`` = E_{q(z)}[sum_j log q(z_j) - log p_j(z_j)] (factorised priors);
* ``decomposition_residual`` = avg_kl - index_code_mi - marginal_kl.

log q(z) and log q(z_j) are computed EXACTLY over all N mixture components by
the blocked pass of :mod:`elbo_audit._kernels.numpy_backend`; only z is sampled. Each
sample z ~ q(z | x_n) satisfies log q(z) >= log q(z | x_n) - log N, so every
per-sample term of ``index_code_mi`` is at most log N and so is the estimate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import final

import numpy as np
from numpy.typing import NDArray

from .._errors import ModelError, UsageError
from .._model.families import DiagonalGaussian
from .mc import TermEstimate, stratified_estimate, subset_estimate
from .._kernels.numpy_backend import Form, log_mixture_density, log_mixture_marginals
from .._model.protocols import Prior

__all__ = [
    "KLDecomposition",
    "decompose_kl",
    "avg_kl",
    "index_code_mi",
    "marginal_kl",
    "total_correlation",
    "dimwise_kl",
]

_REFERENCES = """
    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery: yet another way to
       carve up the variational evidence lower bound", NIPS Workshop on
       Advances in Approximate Bayesian Inference, 2016.
    .. [2] R. T. Q. Chen, X. Li, R. Grosse and D. Duvenaud, "Isolating sources
       of disentanglement in variational autoencoders", NeurIPS 2018.
"""


@final
@dataclass(frozen=True)
class KLDecomposition:
    """Every KL-side term of one model under one prior, in nats per data point."""

    avg_kl: TermEstimate
    index_code_mi: TermEstimate
    marginal_kl: TermEstimate
    total_correlation: TermEstimate
    dimwise_kl: TermEstimate
    decomposition_residual: TermEstimate
    log_n: float
    n_points: int
    samples_per_point: int
    marginal_samples: int

    def terms(self) -> dict[str, TermEstimate]:
        """The terms by their DESIGN.md names."""
        return {
            "avg_kl": self.avg_kl,
            "index_code_mi": self.index_code_mi,
            "marginal_kl": self.marginal_kl,
            "total_correlation": self.total_correlation,
            "dimwise_kl": self.dimwise_kl,
            "decomposition_residual": self.decomposition_residual,
        }


def _draw(
    q: DiagonalGaussian, prior: Prior, rng: np.random.Generator, index: NDArray[np.intp], form: Form
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """One z per entry of ``index``; returns z, log q(z|x_n), log q(z), log p(z)."""
    eps = rng.standard_normal((index.size, q.n_latent))
    z = q.sample(eps, index)
    log_qzx = q.log_prob_own(z, index)
    log_qz = log_mixture_density(z, q.mean, q.std, form=form)
    log_pz = np.asarray(prior.log_prob(z), dtype=np.float64)
    return z, log_qzx, log_qz, log_pz


def decompose_kl(
    posteriors: DiagonalGaussian,
    prior: Prior,
    *,
    rng: np.random.Generator | int | None = None,
    samples_per_point: int = 1,
    variance_points: int = 1024,
    marginal_samples: int = 2048,
    form: Form = "gemm64",
) -> KLDecomposition:
    """Estimate every KL-side term of the ELBO-surgery decomposition.

    Parameters
    ----------
    posteriors : DiagonalGaussian
        q(z | x_n) for all N data points; together they define q(z) exactly.
    prior : Prior
        p(z).
    rng : numpy Generator or int, optional
        Source of the Monte Carlo draws of z.
    samples_per_point : int
        Draws of z per data point for ``index_code_mi``, ``marginal_kl`` and a
        Monte Carlo ``avg_kl``: S = N * samples_per_point outer samples, each
        evaluated against all N components.
    variance_points : int
        With one draw per point, the number of points given a second draw to
        estimate the Monte Carlo variance (see :mod:`elbo_audit._estimation.mc`); with
        several, at most this many points of the ``marginal_samples`` subset
        whose second draw estimates the within-point variance of
        ``total_correlation`` and ``dimwise_kl``.
    marginal_samples : int
        Outer samples (at most N, one per data point, chosen at random) for
        ``total_correlation`` and ``dimwise_kl``, whose per-dimension pass costs
        D times the full one. Their standard error counts both the choice of
        points and the draws (:func:`elbo_audit._estimation.mc.subset_estimate`).
    form : {"gemm64", "direct"}
        Form of the pairwise pass.

    Returns
    -------
    KLDecomposition
    """
    rng = np.random.default_rng(rng)
    q = posteriors.require_mixture()
    n, k = q.n_points, int(samples_per_point)
    if k < 1:
        raise UsageError(f"samples_per_point must be at least 1, got {k}")
    if prior.n_latent != q.n_latent:
        raise ModelError(
            f"prior {prior.name!r} has {prior.n_latent} latents, posteriors have {q.n_latent}"
        )
    log_n = math.log(n)
    index = np.repeat(np.arange(n), k)
    z, log_qzx, log_qz, log_pz = _draw(q, prior, rng, index, form)
    f_mi = np.minimum(log_qzx - log_qz, log_n).reshape(n, k)
    f_mkl = (log_qz - log_pz).reshape(n, k)
    f_kl = (log_qzx - log_pz).reshape(n, k)

    pilot_mi = pilot_mkl = pilot_kl = None
    if k == 1:
        sub = np.sort(rng.choice(n, size=min(n, variance_points), replace=False))
        a_z, a_qzx, a_qz, a_pz = _draw(q, prior, rng, sub, form)
        first = (f_mi[sub, 0], f_mkl[sub, 0], f_kl[sub, 0])
        pilot_mi = (first[0], np.minimum(a_qzx - a_qz, log_n))
        pilot_mkl = (first[1], a_qz - a_pz)
        pilot_kl = (first[2], a_qzx - a_pz)

    mi = stratified_estimate(f_mi, pilot_mi, "exact aggregate posterior, Monte Carlo over z")
    # Every per-sample term is at most log N, so every mean of them is too; only
    # the rounding of the summation can push a mean above it (by an ulp).
    mi = dataclasses.replace(
        mi, value=min(mi.value, log_n), pointwise=np.minimum(mi.pointwise, log_n)
    )
    mkl = stratified_estimate(f_mkl, pilot_mkl, "exact aggregate posterior, Monte Carlo over z")
    cross_entropy = getattr(prior, "cross_entropy", None)
    if cross_entropy is not None:
        kl_n = np.asarray(cross_entropy(q)) - q.entropy()
        kl = TermEstimate(float(kl_n.mean()), 0.0, kl_n, "closed form")
        f_res = kl_n[:, None] - f_kl
        pilot_res = None if pilot_kl is None else (kl_n[sub] - pilot_kl[0], kl_n[sub] - pilot_kl[1])
        residual = stratified_estimate(
            f_res, pilot_res, "closed-form avg_kl minus Monte Carlo index_code_mi and marginal_kl"
        )
    else:
        kl = stratified_estimate(f_kl, pilot_kl, "Monte Carlo over z (same draws)")
        res_n = kl.pointwise - mi.pointwise - mkl.pointwise  # type: ignore[operator]
        residual = TermEstimate(
            float(res_n.mean()), 0.0, res_n, "zero by construction: avg_kl uses the same draws"
        )

    # total correlation and dimension-wise KL on a random subset of outer samples
    m = min(n, int(marginal_samples))
    sub_m = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    z_m = z.reshape(n, k, -1)[sub_m, 0]
    log_marg = log_mixture_marginals(z_m, q.mean, q.std)
    lqz_m = log_qz.reshape(n, k)[sub_m, 0]
    tc_s = lqz_m - log_marg.sum(axis=1)
    dw_s = (
        np.sum(log_marg - prior.marginal_log_prob(z_m), axis=1) if prior.factorised else None
    )

    # second draws on some of those points for the within-point variance: the
    # pilot draws when k == 1, the second of the k draws otherwise
    if k == 1:
        pil, at_pilot, at_m = np.intersect1d(sub, sub_m, assume_unique=True, return_indices=True)
        z2, lqz2 = a_z[at_pilot], a_qz[at_pilot]
    else:
        at_m = np.arange(m)
        if m > variance_points:
            at_m = np.sort(rng.choice(m, size=variance_points, replace=False))
        pil = sub_m[at_m]
        z2, lqz2 = z.reshape(n, k, -1)[pil, 1], log_qz.reshape(n, k)[pil, 1]
    pilot_tc = pilot_dw = None
    if pil.size:
        marg2 = log_mixture_marginals(z2, q.mean, q.std)
        pilot_tc = (tc_s[at_m], lqz2 - marg2.sum(axis=1))
        if dw_s is not None:
            pilot_dw = (dw_s[at_m], np.sum(marg2 - prior.marginal_log_prob(z2), axis=1))

    how = f"exact marginals q(z_j), Monte Carlo over {m} outer samples"
    tc = subset_estimate(tc_s, pilot_tc, how, sub_m, n)
    if dw_s is not None:
        dwkl = subset_estimate(dw_s, pilot_dw, how, sub_m, n)
    else:
        dwkl = TermEstimate.not_evaluated(f"prior {prior.name!r} is not factorised")
    return KLDecomposition(kl, mi, mkl, tc, dwkl, residual, log_n, n, k, m)


def _one(term: str):  # noqa: ANN202 - builds documented public functions
    def estimate(
        posteriors: DiagonalGaussian, prior: Prior, *, rng: np.random.Generator | int | None = None, **kwargs: int
    ) -> TermEstimate:
        return getattr(decompose_kl(posteriors, prior, rng=rng, **kwargs), term)

    estimate.__name__ = estimate.__qualname__ = term
    return estimate


avg_kl = _one("avg_kl")
avg_kl.__doc__ = """Average KL (1/N) sum_n KL(q(z|x_n) || p(z)), nats per data point.

    Closed form for Gaussian priors; Monte Carlo otherwise. Keyword arguments
    are those of :func:`decompose_kl`.
""" + _REFERENCES
index_code_mi = _one("index_code_mi")
index_code_mi.__doc__ = """Index-code mutual information I[n; z], within [0, log N].

    Uses the exact aggregate posterior over all N data points. Keyword
    arguments are those of :func:`decompose_kl`.
""" + _REFERENCES
marginal_kl = _one("marginal_kl")
marginal_kl.__doc__ = """Marginal KL(q(z) || p(z)) from the aggregate posterior to the prior.

    Uses the exact aggregate posterior over all N data points. Keyword
    arguments are those of :func:`decompose_kl`.
""" + _REFERENCES
total_correlation = _one("total_correlation")
total_correlation.__doc__ = """Total correlation KL(q(z) || prod_j q(z_j)).

    Exact joint and marginal aggregate densities, Monte Carlo over outer
    samples. Keyword arguments are those of :func:`decompose_kl`.
""" + _REFERENCES
dimwise_kl = _one("dimwise_kl")
dimwise_kl.__doc__ = """Dimension-wise KL sum_j KL(q(z_j) || p(z_j)), for factorised priors.

    Keyword arguments are those of :func:`decompose_kl`.
""" + _REFERENCES
