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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

from .._errors import ModelError
from .._kernels.mixture import Engine, Mixture
from .._kernels.numpy_backend import Form, NumpyBackend
from .._model.families import DiagonalGaussian
from .._model.priors import MixtureOfGaussians
from .._model.protocols import Prior
from .mc import TermEstimate, stratified_estimate, subset_estimate
from .sweep import Draws, Sweep, draw_sweep

__all__ = [
    "KLDecomposition",
    "avg_kl",
    "decompose_from_sweep",
    "decompose_kl",
    "dimwise_kl",
    "index_code_mi",
    "marginal_kl",
    "total_correlation",
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
    #: Per latent j, KL(q(z_j) || p(z_j)) (the summands of ``dimwise_kl``) and
    #: their Monte Carlo standard errors, each shape (D,); None unless factorised.
    latent_marginal_kl: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

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


class _PriorDensities:
    """log p(z) and log p_j(z_j) of one prior at the sweep's draws, on the sweep's engine.

    A mixture prior is evaluated by the kernels (its log p(z) is a pass like
    log q(z)); the aggregate posterior of the audited posteriors themselves
    reuses the sweep's log q(z) exactly.
    """

    def __init__(self, prior: Prior, q: DiagonalGaussian, engine: Engine) -> None:
        self.prior = prior
        self.is_aggregate = _is_aggregate_of(prior, q)
        self.mixture: Mixture | None = None
        if isinstance(prior, MixtureOfGaussians) and not self.is_aggregate:
            self.mixture = engine.mixture(prior.mean, prior.std, prior.log_weights)

    def log_prob(self, draws: Draws) -> NDArray[np.float64]:
        if self.is_aggregate:
            return draws.log_qz
        if self.mixture is not None:
            return self.mixture.log_density(draws.z)
        return np.asarray(self.prior.log_prob(draws.z), dtype=np.float64)

    def marginal_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.mixture is not None:
            return self.mixture.log_marginals(z)
        # optional in the Prior protocol, required of factorised priors
        marginal: Callable[[NDArray[np.float64]], Any] = getattr(self.prior, "marginal_log_prob")  # noqa: B009
        return np.asarray(marginal(z), dtype=np.float64)


def _is_aggregate_of(prior: Prior, q: DiagonalGaussian) -> bool:
    if not isinstance(prior, MixtureOfGaussians) or prior.mean.shape != q.mean.shape:
        return False
    uniform = np.allclose(prior.log_weights, -math.log(q.n_points), rtol=0.0, atol=1e-12)
    return bool(uniform and np.array_equal(prior.mean, q.mean) and np.array_equal(prior.std, q.std))


def decompose_from_sweep(
    sweep: Sweep, posteriors: DiagonalGaussian, prior: Prior, engine: Engine | None = None
) -> KLDecomposition:
    """Every KL-side term under ``prior``, from a sweep of the posteriors.

    Parameters
    ----------
    sweep : Sweep
        From :func:`elbo_audit._estimation.sweep.draw_sweep` on ``posteriors``.
    posteriors : DiagonalGaussian
    prior : Prior
    engine : Engine, optional
        Where a mixture prior's densities are computed (the numpy reference
        when omitted).

    Returns
    -------
    KLDecomposition
    """
    q = posteriors.require_mixture()
    engine = engine or Engine(NumpyBackend())
    if prior.n_latent != q.n_latent:
        raise ModelError(
            f"prior {prior.name!r} has {prior.n_latent} latents, posteriors have {q.n_latent}"
        )
    n, k = q.n_points, sweep.samples_per_point
    log_n = math.log(n)
    dens = _PriorDensities(prior, q, engine)
    main = sweep.main
    log_pz = dens.log_prob(main)
    f_mi = np.minimum(main.log_qzx - main.log_qz, log_n).reshape(n, k)
    f_mkl = (main.log_qz - log_pz).reshape(n, k)
    f_kl = (main.log_qzx - log_pz).reshape(n, k)

    pilot_mi = pilot_mkl = pilot_kl = None
    pilot = sweep.pilot
    if pilot is not None:
        sub = pilot.index
        a_pz = dens.log_prob(pilot)
        first = (f_mi[sub, 0], f_mkl[sub, 0], f_kl[sub, 0])
        pilot_mi = (first[0], np.minimum(pilot.log_qzx - pilot.log_qz, log_n))
        pilot_mkl = (first[1], pilot.log_qz - a_pz)
        pilot_kl = (first[2], pilot.log_qzx - a_pz)

    mi = stratified_estimate(f_mi, pilot_mi, "exact aggregate posterior, Monte Carlo over z")
    # Every per-sample term is at most log N, so every mean of them is too; only
    # the rounding of the summation can push a mean above it (by an ulp).
    assert mi.pointwise is not None
    mi = dataclasses.replace(
        mi, value=min(mi.value, log_n), pointwise=np.minimum(mi.pointwise, log_n)
    )
    mkl = stratified_estimate(f_mkl, pilot_mkl, "exact aggregate posterior, Monte Carlo over z")
    cross_entropy = getattr(prior, "cross_entropy", None)
    if cross_entropy is not None:
        kl_n = np.asarray(cross_entropy(q)) - q.entropy()
        kl = TermEstimate(float(kl_n.mean()), 0.0, kl_n, "closed form")
        f_res = kl_n[:, None] - f_kl
        pilot_res = (
            None
            if pilot_kl is None or pilot is None
            else (kl_n[pilot.index] - pilot_kl[0], kl_n[pilot.index] - pilot_kl[1])
        )
        residual = stratified_estimate(
            f_res, pilot_res, "closed-form avg_kl minus Monte Carlo index_code_mi and marginal_kl"
        )
    else:
        kl = stratified_estimate(f_kl, pilot_kl, "Monte Carlo over z (same draws)")
        assert kl.pointwise is not None and mi.pointwise is not None and mkl.pointwise is not None
        res_n = kl.pointwise - mi.pointwise - mkl.pointwise
        residual = TermEstimate(
            float(res_n.mean()), 0.0, res_n, "zero by construction: avg_kl uses the same draws"
        )

    # total correlation and dimension-wise KL on a random subset of outer samples
    sub_m = sweep.marginal_index
    m = sub_m.size
    z_m = main.z.reshape(n, k, -1)[sub_m, 0]
    lqz_m = main.log_qz.reshape(n, k)[sub_m, 0]
    log_marg = sweep.log_marginals
    tc_s = lqz_m - log_marg.sum(axis=1)
    dw_s = (
        np.sum(log_marg - dens.marginal_log_prob(z_m), axis=1) if prior.factorised else None
    )
    at_m, second, marg2 = sweep.second_at, sweep.second, sweep.second_log_marginals
    pilot_tc = pilot_dw = None
    if at_m.size:
        pilot_tc = (tc_s[at_m], second.log_qz - marg2.sum(axis=1))
        if dw_s is not None:
            pilot_dw = (dw_s[at_m], np.sum(marg2 - dens.marginal_log_prob(second.z), axis=1))

    how = f"exact marginals q(z_j), Monte Carlo over {m} outer samples"
    tc = subset_estimate(tc_s, pilot_tc, how, sub_m, n)
    per_latent = None
    if dw_s is not None:
        dwkl = subset_estimate(dw_s, pilot_dw, how, sub_m, n)
        dw_j = log_marg - dens.marginal_log_prob(z_m)
        dw2_j = marg2 - dens.marginal_log_prob(second.z) if at_m.size else None
        cols = [
            subset_estimate(
                dw_j[:, j], None if dw2_j is None else (dw_j[at_m, j], dw2_j[:, j]), how, sub_m, n
            )
            for j in range(dw_j.shape[1])
        ]
        per_latent = (np.array([c.value for c in cols]), np.array([c.se for c in cols]))
    else:
        dwkl = TermEstimate.not_evaluated(f"prior {prior.name!r} is not factorised")
    return KLDecomposition(kl, mi, mkl, tc, dwkl, residual, log_n, n, k, m, per_latent)


def decompose_kl(
    posteriors: DiagonalGaussian,
    prior: Prior,
    *,
    rng: np.random.Generator | int | None = None,
    samples_per_point: int = 1,
    variance_points: int = 1024,
    marginal_samples: int = 2048,
    form: Form = "gemm64",
    engine: Engine | None = None,
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
        Form of the pairwise pass of the numpy reference (ignored with ``engine``).
    engine : Engine, optional
        The compute backend, precision and device of the kernels; the numpy
        float64 reference when omitted.

    Returns
    -------
    KLDecomposition
    """
    rng = np.random.default_rng(rng)
    engine = engine or Engine(NumpyBackend(form))
    if prior.n_latent != posteriors.n_latent:
        raise ModelError(
            f"prior {prior.name!r} has {prior.n_latent} latents, posteriors have {posteriors.n_latent}"
        )
    sweep = draw_sweep(
        posteriors, rng, engine=engine, samples_per_point=samples_per_point,
        variance_points=variance_points, marginal_samples=marginal_samples,
    )
    return decompose_from_sweep(sweep, posteriors, prior, engine)


def _one(term: str) -> Callable[..., TermEstimate]:
    def estimate(
        posteriors: DiagonalGaussian,
        prior: Prior,
        *,
        rng: np.random.Generator | int | None = None,
        **kwargs: Any,
    ) -> TermEstimate:
        found: TermEstimate = getattr(decompose_kl(posteriors, prior, rng=rng, **kwargs), term)
        return found

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
