"""decompose_kl against truths it did not produce.

Truths: closed-form Gaussian KLs written out here, Gauss-Hermite quadrature,
exact algebra (a mixture of one repeated component, or a product mixture, has
known MI / total correlation), and Monte Carlo written in this file with
scipy.stats. Monte Carlo comparisons are in units of the reported standard
error, and each such test also checks that the se is small enough to matter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import elbo_audit
from elbo_audit import (
    DataError,
    DiagonalGaussian,
    DiagonalGaussianPrior,
    MixtureOfGaussians,
    StandardNormal,
    aggregate_posterior_prior,
    decompose_kl,
)

Z = 4.5  # tolerance in standard errors


def kl_diag_gauss(m, s, a, b):
    """KL(N(m, diag s^2) || N(a, diag b^2)), summed over the last axis."""
    m, s, a, b = (np.asarray(x, np.float64) for x in (m, s, a, b))
    return np.sum(np.log(b / s) + (s**2 + (m - a) ** 2) / (2 * b**2) - 0.5, axis=-1)


def within(est, truth, se, slack=1e-9):
    return abs(est - truth) <= Z * se + slack


# ---------------------------------------------------------------- (a) q = p


def test_posteriors_equal_to_the_prior_give_zero_everywhere():
    n, d = 50, 3
    q = DiagonalGaussian(np.zeros((n, d)), np.ones((n, d)))
    dec = decompose_kl(q, StandardNormal(d), rng=0)
    # with every posterior identical, log q(z|x_n) - log q(z) is 0 per sample,
    # and q(z) = p(z), so every term is zero up to rounding, not just MC error
    for name, term in dec.terms().items():
        assert abs(term.value) < 1e-12, name
        assert np.all(np.abs(term.pointwise) < 1e-12), name
    assert dec.log_n == pytest.approx(math.log(n), abs=0)


# -------------------------------------------------- (b) identical posteriors


@pytest.mark.parametrize("n, k", [(1500, 1), (40, 60)])
def test_identical_posteriors_have_zero_mi_and_closed_form_marginal_kl(n, k):
    m = np.array([0.7, -1.2, 0.1])
    s = np.array([0.4, 1.5, 0.8])
    prior = DiagonalGaussianPrior(np.array([0.2, 0.0, -0.3]), np.array([1.0, 2.0, 0.7]))
    q = DiagonalGaussian(np.tile(m, (n, 1)), np.tile(s, (n, 1)))
    dec = decompose_kl(q, prior, rng=1, samples_per_point=k)
    truth = float(kl_diag_gauss(m, s, prior.mean, prior.std))
    assert abs(dec.index_code_mi.value) < 1e-10
    assert dec.avg_kl.value == pytest.approx(truth, rel=1e-12)
    mkl = dec.marginal_kl
    assert 0 < mkl.se < 0.05 * truth
    assert within(mkl.value, truth, mkl.se)
    # q(z) is one Gaussian: it factorises, so TC is zero per sample
    assert np.max(np.abs(dec.total_correlation.pointwise)) < 1e-10


# ------------------------------------------------ (c) separated posteriors


@pytest.mark.parametrize("form", ["gemm64", "direct"])
def test_well_separated_sharp_posteriors_have_mi_log_n(form):
    rng = np.random.default_rng(7)
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(3)), -1).reshape(-1, 2) * 40.0 - 50.0
    n = grid.shape[0]
    std = np.exp(rng.uniform(np.log(0.05), np.log(0.3), (n, 2)))
    mean = grid + rng.uniform(-1, 1, (n, 2))
    prior = DiagonalGaussianPrior(np.zeros(2), np.full(2, 30.0))
    dec = decompose_kl(DiagonalGaussian(mean, std), prior, rng=3, samples_per_point=300, form=form)
    # overlaps are below exp(-1000): the true MI is log N to double precision.
    # "direct" evaluates log q(z|x_n) and its own mixture term identically; the
    # expanded "gemm64" form is accurate to its documented 1e-7 nats per point.
    tol = 1e-12 if form == "direct" else 1e-7
    assert np.max(np.abs(dec.index_code_mi.pointwise - math.log(n))) < tol
    assert abs(dec.index_code_mi.value - math.log(n)) < tol
    avg_truth = float(np.mean(kl_diag_gauss(mean, std, prior.mean, prior.std)))
    assert dec.avg_kl.value == pytest.approx(avg_truth, rel=1e-12)
    mkl = dec.marginal_kl
    assert 0 < mkl.se < 0.02
    assert within(mkl.value, avg_truth - math.log(n), mkl.se)


# ---------------------------------------------------- (d) MI never > log N


def _adversarial_cases():
    rng = np.random.default_rng(99)
    cases = []
    for n in (2, 3, 7, 97, 197):  # n where the mean of n copies of log n rounds up
        mean = np.arange(n)[:, None] * np.array([[50.0, -30.0]])
        cases.append((mean, np.full((n, 2), 0.01)))
    # extremely sharp, far from the origin and far apart
    n = 13
    mean = 1e5 + rng.uniform(-1, 1, (n, 4)) * 1e4
    cases.append((mean, np.full((n, 4), 1e-6)))
    # two exact duplicates among separated points
    mean = np.concatenate([np.zeros((2, 3)), 100.0 * np.eye(3)])
    cases.append((mean, np.full((5, 3), 0.1)))
    # broad, heavily overlapping
    cases.append((rng.normal(size=(30, 2)), np.exp(rng.normal(0, 1, (30, 2)))))
    return cases


@pytest.mark.parametrize("form", ["gemm64", "direct"])
@pytest.mark.parametrize("k", [1, 3])
def test_mi_never_exceeds_log_n(form, k):
    for i, (mean, std) in enumerate(_adversarial_cases()):
        q = DiagonalGaussian(mean, std)
        dec = decompose_kl(q, StandardNormal(mean.shape[1]), rng=i, samples_per_point=k, form=form)
        mi = dec.index_code_mi
        assert dec.log_n == math.log(mean.shape[0])
        assert mi.value <= dec.log_n, (i, mi.value - dec.log_n)
        assert np.all(mi.pointwise <= dec.log_n), i


# ------------------------------------ (e) avg_kl closed form and residual


def _random_posteriors(rng, n, d, spread=1.0):
    mean = rng.normal(0.0, spread, (n, d))
    std = np.exp(rng.uniform(-1.2, 0.3, (n, d)))
    return DiagonalGaussian(mean, std)


@pytest.mark.parametrize("n, k", [(3000, 1), (6, 500)])
def test_avg_kl_closed_form_against_test_monte_carlo_and_residual(n, k):
    rng = np.random.default_rng(31)
    q = _random_posteriors(rng, n, 3)
    prior = DiagonalGaussianPrior(np.array([0.5, -1.0, 0.0]), np.array([2.0, 0.5, 1.0]))
    dec = decompose_kl(q, prior, rng=5, samples_per_point=k)
    assert dec.avg_kl.se == 0.0 and dec.avg_kl.estimator == "closed form"
    closed = kl_diag_gauss(q.mean, q.std, prior.mean, prior.std)
    np.testing.assert_allclose(dec.avg_kl.pointwise, closed, rtol=1e-12)
    # independent Monte Carlo with scipy.stats, 120000 draws in all
    draws = 120_000 // n
    z = q.mean[:, None] + q.std[:, None] * rng.standard_normal((n, draws, 3))
    f = stats.norm.logpdf(z, q.mean[:, None], q.std[:, None]).sum(-1) - stats.norm.logpdf(
        z, prior.mean, prior.std
    ).sum(-1)
    mc = f.mean()
    mc_se = math.sqrt(np.sum(f.var(axis=1, ddof=1) / draws)) / n
    assert mc_se < 0.02
    assert within(dec.avg_kl.value, mc, mc_se)
    res = dec.decomposition_residual
    assert 0 < res.se < 0.3
    assert within(res.value, 0.0, res.se)


def test_residual_is_small_with_many_samples():
    rng = np.random.default_rng(32)
    q = _random_posteriors(rng, 25, 2)
    dec = decompose_kl(q, StandardNormal(2), rng=6, samples_per_point=1000)
    res = dec.decomposition_residual
    assert 0 < res.se < 0.01
    assert within(res.value, 0.0, res.se)


# --------------------------------------------- (f) mixture-of-Gaussians prior


def _mog_prior():
    weights = np.array([0.5, 0.3, 0.2])
    mean = np.array([[-1.5, 0.5], [1.0, 1.0], [0.5, -2.0]])
    std = np.array([[0.6, 1.2], [0.8, 0.5], [1.0, 0.7]])
    return MixtureOfGaussians(weights, mean, std)


def _mog_log_prob_reference(prior, z):
    comp = stats.norm.logpdf(z[..., None, :], prior.mean, prior.std).sum(-1)
    return special.logsumexp(comp + np.log(prior.weights), axis=-1)


def _avg_kl_grid(q, prior, h=0.1, half_width=12.0):
    """(1/N) sum_n [E_qn log q_n - E_qn log p] by a trapezoid grid in each posterior's
    standardised coordinates (+-12 sd; spectrally accurate for these smooth integrands)."""
    t = np.arange(-half_width, half_width + h / 2, h)
    out = []
    for m, s in zip(q.mean, q.std):
        x, y = m[0] + s[0] * t, m[1] + s[1] * t
        gx, gy = np.meshgrid(x, y, indexing="ij")
        dens = stats.norm.pdf(gx, m[0], s[0]) * stats.norm.pdf(gy, m[1], s[1])
        log_p = _mog_log_prob_reference(prior, np.stack([gx, gy], -1))
        cross = -integrate.trapezoid(integrate.trapezoid(dens * log_p, y, axis=1), x)
        neg_entropy = -np.sum(0.5 * np.log(2 * np.pi * np.e * s**2))
        out.append(neg_entropy + cross)
    return float(np.mean(out))


def test_mixture_prior_is_not_factorised_and_uses_monte_carlo_avg_kl():
    rng = np.random.default_rng(41)
    q = _random_posteriors(rng, 8, 2)
    prior = _mog_prior()
    dec = decompose_kl(q, prior, rng=7, samples_per_point=400)
    assert not dec.dimwise_kl.evaluated and math.isnan(dec.dimwise_kl.value)
    assert dec.total_correlation.evaluated
    kl = dec.avg_kl
    assert kl.estimator != "closed form"
    truth = _avg_kl_grid(q, prior)
    # the quadrature itself is converged
    assert abs(truth - _avg_kl_grid(q, prior, h=0.07, half_width=14.0)) < 1e-8
    assert 0 < kl.se < 0.03
    assert within(kl.value, truth, kl.se)
    # same draws: the residual is exact algebra
    algebra = kl.value - dec.index_code_mi.value - dec.marginal_kl.value
    assert abs(dec.decomposition_residual.value - algebra) < 1e-12


def test_aggregate_posterior_as_prior_gives_zero_marginal_kl():
    rng = np.random.default_rng(42)
    q = _random_posteriors(rng, 20, 3)
    dec = decompose_kl(q, aggregate_posterior_prior(q), rng=8)
    assert np.max(np.abs(dec.marginal_kl.pointwise)) < 1e-10
    assert abs(dec.avg_kl.value - dec.index_code_mi.value) < 1e-10


# ------------------------------ (g) total correlation and dimension-wise KL


def test_tc_plus_dimwise_is_marginal_kl_on_the_subset():
    rng = np.random.default_rng(51)
    n, m = 800, 250
    q = _random_posteriors(rng, n, 3)
    prior = DiagonalGaussianPrior(np.array([0.0, 0.3, -0.2]), np.array([1.0, 1.5, 0.8]))
    dec = decompose_kl(q, prior, rng=9, samples_per_point=1, marginal_samples=m)
    tc, dw, mkl = dec.total_correlation, dec.dimwise_kl, dec.marginal_kl
    assert dec.marginal_samples == m
    assert tc.index is not None and np.array_equal(tc.index, dw.index)
    assert tc.index.size == m and np.unique(tc.index).size == m
    # per sample, TC + dimwise KL is exactly log q(z) - log p(z) of the same draw
    np.testing.assert_allclose(
        tc.pointwise + dw.pointwise, mkl.pointwise[tc.index], rtol=0, atol=1e-10
    )
    # the subset mean is a simple random sample (without replacement) of the
    # full per-point values: its exact error has sd sqrt((1 - m/n) S^2 / m)
    sd = math.sqrt((1 - m / n) * mkl.pointwise.var(ddof=1) / m)
    assert sd < 0.1
    assert abs(tc.value + dw.value - mkl.value) <= Z * sd + 1e-12


def test_tc_plus_dimwise_equals_marginal_kl_when_all_points_are_used():
    rng = np.random.default_rng(52)
    q = _random_posteriors(rng, 60, 4)
    dec = decompose_kl(q, StandardNormal(4), rng=10, samples_per_point=1, marginal_samples=10_000)
    assert dec.total_correlation.index is None and dec.marginal_samples == 60
    total = dec.total_correlation.value + dec.dimwise_kl.value
    assert total == pytest.approx(dec.marginal_kl.value, abs=1e-10)


def _grid_mixture(rng, sizes, copies=1):
    """Components on a grid whose dim-j parameters depend only on the j-th index."""
    d = len(sizes)
    locs = [rng.normal(0, 2, size=k) for k in sizes]
    scales = [np.exp(rng.uniform(-1, 0.5, size=k)) for k in sizes]
    idx = np.stack(np.meshgrid(*[np.arange(k) for k in sizes], indexing="ij"), -1).reshape(-1, d)
    mean = np.stack([locs[j][idx[:, j]] for j in range(d)], 1)
    std = np.stack([scales[j][idx[:, j]] for j in range(d)], 1)
    return np.repeat(mean, copies, axis=0), np.repeat(std, copies, axis=0)


@pytest.mark.parametrize("sizes", [(3, 4), (3, 4, 2)])
def test_total_correlation_is_zero_for_a_product_mixture(sizes):
    # q(z) = (1/N) sum over the grid = prod_j q(z_j) exactly: TC = 0 per sample
    # (a uniform mixture of arbitrary components would not factorise).
    rng = np.random.default_rng(60 + len(sizes))
    mean, std = _grid_mixture(rng, sizes)
    d = len(sizes)
    dec = decompose_kl(DiagonalGaussian(mean, std), StandardNormal(d), rng=11, samples_per_point=1)
    tc = dec.total_correlation
    assert tc.index is None and tc.pointwise.size == mean.shape[0]
    assert np.max(np.abs(tc.pointwise)) < 1e-10
    # so the dimension-wise KL carries all of the marginal KL, sample by sample
    np.testing.assert_allclose(
        dec.dimwise_kl.pointwise, dec.marginal_kl.pointwise, rtol=0, atol=1e-10
    )


def test_total_correlation_detects_a_broken_product():
    # the same grid with the dim-0 location shifted by the dim-1 location no
    # longer factorises; the test above would fail for it
    rng = np.random.default_rng(64)
    mean, std = _grid_mixture(rng, (3, 4), copies=1)
    mean[:, 0] += 2.0 * mean[:, 1]
    copies = 50  # duplicates keep q(z) but give many outer samples
    q = DiagonalGaussian(np.repeat(mean, copies, 0), np.repeat(std, copies, 0))
    tc = decompose_kl(q, StandardNormal(2), rng=11).total_correlation
    assert tc.value > 10 * tc.se > 0


def test_total_correlation_of_two_diagonal_clusters_is_log_2():
    # components at (-c, -c) and (c, c): knowing z_1 tells z_2, TC -> log 2
    n, c = 40, 6.0
    mean = np.where((np.arange(n) % 2 == 0)[:, None], -c, c) * np.ones((1, 2))
    std = np.full((n, 2), 0.5)
    dec = decompose_kl(DiagonalGaussian(mean, std), StandardNormal(2), rng=12)
    tc = dec.total_correlation
    # overlap of the clusters along each axis is below 1e-30
    assert abs(tc.value - math.log(2)) < 1e-10


# -------------------------------------------- (h) honest standard errors


def _honesty_posteriors():
    rng = np.random.default_rng(70)
    mean = rng.normal(0, 3.0, (16, 2))
    std = np.exp(rng.uniform(-2.5, 0.5, (16, 2)))
    return DiagonalGaussian(mean, std)


@pytest.mark.parametrize("k", [1, 3])
def test_standard_errors_match_the_spread_over_seeds(k):
    # Dataset held fixed, only z resampled: the reported se must match the
    # spread of the estimates over seeds. RMS of the se is compared (the mean
    # of a noisy se is biased low by Jensen's inequality).
    q = _honesty_posteriors()
    prior = StandardNormal(2)
    reps = 200
    names = ("index_code_mi", "marginal_kl", "decomposition_residual")
    vals = {t: np.empty(reps) for t in names}
    ses = {t: np.empty(reps) for t in names}
    naive = {t: np.empty(reps) for t in names}
    for r in range(reps):
        dec = decompose_kl(q, prior, rng=1000 + r, samples_per_point=k)
        for t in names:
            term = getattr(dec, t)
            vals[t][r], ses[t][r] = term.value, term.se
            # the naive se treats the between-point spread as Monte Carlo error
            naive[t][r] = term.pointwise.std(ddof=1) / math.sqrt(q.n_points)
    for t in names:
        emp = vals[t].std(ddof=1)
        rms_se = math.sqrt(np.mean(ses[t] ** 2))
        assert emp > 1e-3, t  # a real Monte Carlo spread, not rounding
        # 200 replicates estimate the sd to about 5 %; 25 % is a 5-sigma band
        assert 0.75 < rms_se / emp < 1.25, (t, rms_se, emp)
    # the check has power: the naive se, which counts the between-point spread
    # as Monte Carlo error, is off by far more than 25 % here
    for t in ("marginal_kl",):
        assert math.sqrt(np.mean(naive[t] ** 2)) / vals[t].std(ddof=1) > 1.5, t


def test_mixture_prior_avg_kl_se_is_honest():
    q = _honesty_posteriors()
    prior = _mog_prior()
    reps = 150
    vals, ses = np.empty(reps), np.empty(reps)
    for r in range(reps):
        kl = decompose_kl(q, prior, rng=2000 + r).avg_kl
        vals[r], ses[r] = kl.value, kl.se
    emp = vals.std(ddof=1)
    assert emp > 1e-3
    assert 0.75 < math.sqrt(np.mean(ses**2)) / emp < 1.25


@pytest.mark.parametrize(
    "n, m, k",
    [
        (400, 20, 1),  # small subset: close to i.i.d. sampling of points
        (16, 16, 1),  # every point once: only the draws are random (pilot second draws)
        (16, 16, 3),  # every point once, second draws from the k draws
        (60, 30, 2),  # half the points
    ],
)
def test_total_correlation_and_dimwise_se_are_honest(n, m, k):
    rng = np.random.default_rng(71)
    if n == 16:
        q = _honesty_posteriors()
    else:
        q = DiagonalGaussian(rng.normal(0, 1.5, (n, 2)), np.exp(rng.uniform(-1.5, 0.0, (n, 2))))
    reps = 200
    vals, ses = np.empty((2, reps)), np.empty((2, reps))
    for r in range(reps):
        dec = decompose_kl(
            q, StandardNormal(2), rng=3000 + r, samples_per_point=k, marginal_samples=m
        )
        for i, term in enumerate((dec.total_correlation, dec.dimwise_kl)):
            vals[i, r], ses[i, r] = term.value, term.se
    for i in range(2):
        emp = vals[i].std(ddof=1)
        assert emp > 1e-3
        rms_se = math.sqrt(np.mean(ses[i] ** 2))
        assert 0.75 < rms_se / emp < 1.25, (i, rms_se, emp)


# ------------------------------------------------------------- validation


def test_validation_errors():
    ok_mean, ok_std = np.zeros((5, 2)), np.ones((5, 2))
    assert issubclass(DataError, elbo_audit.AuditError) and DataError.exit_code == 2
    # one data point is a valid posterior but not an aggregate posterior
    with pytest.raises(DataError, match="N >= 2"):
        decompose_kl(DiagonalGaussian(np.zeros((1, 2)), np.ones((1, 2))), StandardNormal(2), rng=0)
    with pytest.raises(DataError, match="N >= 2"):
        aggregate_posterior_prior(DiagonalGaussian(np.zeros((1, 2)), np.ones((1, 2))))
    with pytest.raises(DataError):
        DiagonalGaussian(np.zeros((0, 2)), np.ones((0, 2)))
    with pytest.raises(DataError, match="latent"):
        DiagonalGaussian(np.zeros((5, 0)), np.ones((5, 0)))
    with pytest.raises(DataError, match="shape"):
        DiagonalGaussian(ok_mean, np.ones((5, 3)))
    mean = ok_mean.copy()
    mean[2, 1] = np.nan
    mean[7 % 5 + 2, 0] = np.nan  # row 4
    with pytest.raises(DataError, match=r"'mean' has NaN .* data points 2, 4\b"):
        DiagonalGaussian(mean, ok_std)
    std = ok_std.copy()
    std[3, 0] = np.inf
    with pytest.raises(DataError, match=r"'std' has NaN .* data points 3\b"):
        DiagonalGaussian(ok_mean, std)
    for bad in (0.0, -0.5):
        std = ok_std.copy()
        std[1, 1] = bad
        with pytest.raises(DataError, match=r"positive.* data points 1\b"):
            DiagonalGaussian(ok_mean, std)
    log_var = np.zeros((5, 2))
    log_var[0, 0] = np.nan
    with pytest.raises(DataError, match=r"data points 0\b"):
        DiagonalGaussian.from_log_var(ok_mean, log_var)
    many = np.zeros((12, 2))
    many[[1, 3, 5, 7, 9, 11], 0] = np.nan
    with pytest.raises(DataError, match=r"1, 3, 5, 7, 9 and 1 more"):
        DiagonalGaussian(many, np.ones((12, 2)))
    with pytest.raises(DataError):
        StandardNormal(0)
    with pytest.raises(DataError):
        DiagonalGaussianPrior(np.zeros(2), np.array([1.0, 0.0]))
