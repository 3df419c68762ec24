"""The estimators against numerical quadrature of the exact mixture densities.

For a handful of overlapping Gaussian posteriors, the true index-code MI,
marginal KL, total correlation and dimension-wise KL are integrals of the
exact aggregate density q(z) = (1/N) sum_n q(z|x_n). They are computed here by
scipy.integrate.quad (1-D) and by a trapezoid grid (2-D; trapezoid sums of
smooth, rapidly decaying integrands converge spectrally, and the grid error
is checked against a second, finer grid). The estimates must agree within
4.5 of their own standard errors, which are checked to be small.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from elbo_audit import DiagonalGaussian, DiagonalGaussianPrior, decompose_kl

Z = 4.5


def _log_mix_1d(x, mean, std):
    x = np.atleast_1d(np.asarray(x, np.float64))
    comp = stats.norm.logpdf(x[:, None], mean[None], std[None])
    return special.logsumexp(comp, axis=1) - math.log(mean.size)


def _quad(f, lo, hi, breaks):
    val, err = integrate.quad(f, lo, hi, points=breaks, epsabs=1e-13, epsrel=1e-13, limit=500)
    assert err < 1e-9
    return val


def _neg_entropy_1d(mean, std):
    """int q log q for a 1-D uniform Gaussian mixture, by adaptive quadrature."""
    lo, hi = float(np.min(mean - 14 * std)), float(np.max(mean + 14 * std))

    def f(x):
        lq = _log_mix_1d(x, mean, std)[0]
        return math.exp(lq) * lq

    return _quad(f, lo, hi, sorted(set(np.round(mean, 12))))


def _cross_entropy_gauss_1d(mean, std, m, s):
    """-int q log N(m, s^2) for the mixture q, by adaptive quadrature."""
    lo, hi = float(np.min(mean - 14 * std)), float(np.max(mean + 14 * std))

    def f(x):
        return -math.exp(_log_mix_1d(x, mean, std)[0]) * stats.norm.logpdf(x, m, s)

    return _quad(f, lo, hi, sorted(set(np.round(mean, 12))))


def _entropy_gauss(std):
    return float(np.sum(0.5 * np.log(2 * np.pi * np.e * std**2), axis=-1).mean())


# ------------------------------------------------------------------ 1-D


MEAN_1D = np.array([-1.0, -0.2, 0.5, 1.6])
STD_1D = np.array([0.5, 0.8, 0.3, 0.6])


def test_one_dimensional_mixture_against_quadrature():
    prior = DiagonalGaussianPrior(np.array([0.3]), np.array([1.3]))
    neg_h = _neg_entropy_1d(MEAN_1D, STD_1D)
    mi_true = -neg_h - _entropy_gauss(STD_1D[:, None])
    mkl_true = neg_h + _cross_entropy_gauss_1d(MEAN_1D, STD_1D, 0.3, 1.3)
    assert 0.3 < mi_true < math.log(4)  # overlapping, not separated
    assert mkl_true > 0.02

    q = DiagonalGaussian(MEAN_1D[:, None], STD_1D[:, None])
    dec = decompose_kl(q, prior, rng=2024, samples_per_point=20_000)
    for name, truth in (("index_code_mi", mi_true), ("marginal_kl", mkl_true)):
        term = getattr(dec, name)
        assert 0 < term.se < 0.006, name
        assert abs(term.value - truth) <= Z * term.se + 1e-9, (name, term.value, truth, term.se)
    # in one dimension q(z) is its own marginal: TC = 0 per sample
    assert np.max(np.abs(dec.total_correlation.pointwise)) < 1e-10


# ------------------------------------------------------------------ 2-D


MEAN_2D = np.array([[-1.0, 0.4], [0.3, 1.1], [1.2, -0.5], [0.0, -1.3], [-0.6, -0.2]])
STD_2D = np.array([[0.5, 0.9], [0.7, 0.4], [0.6, 0.6], [1.0, 0.5], [0.4, 0.7]])
PRIOR_M = np.array([0.1, -0.2])
PRIOR_S = np.array([1.2, 0.9])


def _grid_truths(h):
    """Quadrature truths for the 2-D mixture on a trapezoid grid of spacing h."""
    lo = np.min(MEAN_2D - 12 * STD_2D, axis=0)
    hi = np.max(MEAN_2D + 12 * STD_2D, axis=0)
    x = np.arange(lo[0], hi[0] + h, h)
    y = np.arange(lo[1], hi[1] + h, h)
    gx, gy = np.meshgrid(x, y, indexing="ij")
    comp = stats.norm.logpdf(gx[..., None], MEAN_2D[:, 0], STD_2D[:, 0]) + stats.norm.logpdf(
        gy[..., None], MEAN_2D[:, 1], STD_2D[:, 1]
    )
    log_q = special.logsumexp(comp, axis=-1) - math.log(MEAN_2D.shape[0])
    q = np.exp(log_q)
    lq1 = _log_mix_1d(x, MEAN_2D[:, 0], STD_2D[:, 0])
    lq2 = _log_mix_1d(y, MEAN_2D[:, 1], STD_2D[:, 1])
    log_p = stats.norm.logpdf(gx, PRIOR_M[0], PRIOR_S[0])
    log_p = log_p + stats.norm.logpdf(gy, PRIOR_M[1], PRIOR_S[1])

    def integral(f):
        return float(integrate.trapezoid(integrate.trapezoid(f, y, axis=1), x))

    mass = integral(q)
    neg_h = integral(q * log_q)
    tc = neg_h - integral(q * (lq1[:, None] + lq2[None, :]))
    mkl = neg_h - integral(q * log_p)
    return mass, neg_h, tc, mkl


def _dimwise_truth():
    total = 0.0
    for j in range(2):
        mean, std = MEAN_2D[:, j], STD_2D[:, j]
        cross = _cross_entropy_gauss_1d(mean, std, PRIOR_M[j], PRIOR_S[j])
        total += _neg_entropy_1d(mean, std) + cross
    return total


@pytest.fixture(scope="module")
def truths_2d():
    mass, neg_h, tc, mkl = _grid_truths(0.05)
    _, neg_h_f, tc_f, mkl_f = _grid_truths(0.035)
    # grid error is far below any Monte Carlo error used here
    assert abs(mass - 1.0) < 1e-10
    assert max(abs(neg_h - neg_h_f), abs(tc - tc_f), abs(mkl - mkl_f)) < 1e-9
    mi = -neg_h - _entropy_gauss(STD_2D)
    dw = _dimwise_truth()
    # identities of the truths themselves (quadrature vs quadrature)
    assert abs(mkl - (tc + dw)) < 1e-8
    assert 0.2 < mi < math.log(5) - 0.2 and tc > 0.02 and dw > 0.1
    return {"index_code_mi": mi, "marginal_kl": mkl, "total_correlation": tc, "dimwise_kl": dw}


def _prior():
    return DiagonalGaussianPrior(PRIOR_M, PRIOR_S)


def test_two_dimensional_mi_and_marginal_kl_against_quadrature(truths_2d):
    q = DiagonalGaussian(MEAN_2D, STD_2D)
    dec = decompose_kl(q, _prior(), rng=77, samples_per_point=12_000)
    for name in ("index_code_mi", "marginal_kl"):
        term = getattr(dec, name)
        assert 0 < term.se < 0.006, name
        truth = truths_2d[name]
        assert abs(term.value - truth) <= Z * term.se + 1e-9, (name, term.value, truth, term.se)


def test_two_dimensional_tc_and_dimwise_against_quadrature(truths_2d):
    # total correlation and dimwise KL use one outer sample per data point, so
    # the 5 components are each repeated 600 times: q(z), and therefore every
    # term including I[n; z] (duplicates carry no information), are unchanged.
    copies = 600
    q = DiagonalGaussian(np.repeat(MEAN_2D, copies, 0), np.repeat(STD_2D, copies, 0))
    dec = decompose_kl(q, _prior(), rng=78, samples_per_point=1, marginal_samples=q.n_points)
    assert dec.marginal_samples == 5 * copies
    for name, max_se in (
        ("total_correlation", 0.01),
        ("dimwise_kl", 0.015),
        ("index_code_mi", 0.015),
        ("marginal_kl", 0.015),
    ):
        term = getattr(dec, name)
        assert 0 < term.se < max_se, (name, term.se)
        truth = truths_2d[name]
        assert abs(term.value - truth) <= Z * term.se + 1e-9, (name, term.value, truth, term.se)
