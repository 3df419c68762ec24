"""The paired bootstrap over per-datapoint contributions, and its intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from elbo_audit._estimation.bootstrap import (
    CI_METHODS,
    BootstrapPlan,
    acceleration,
    bca_interval,
    interval_from_replicates,
    jackknife_means,
    mc_interval,
    percentile_interval,
    replicates,
    replicates_many,
    term_acceleration,
    term_interval,
    term_jackknife,
)
from elbo_audit._estimation.mc import TermEstimate


def _term(c: np.ndarray, index: np.ndarray | None = None) -> TermEstimate:
    return TermEstimate(float(np.mean(c)), 0.01, np.asarray(c, dtype=float), "test", index)


# --- the plan ---------------------------------------------------------------


def test_plan_rows_are_resamples_of_n_points() -> None:
    plan = BootstrapPlan.draw(37, 70, seed=3)
    counts = plan.counts
    assert counts.shape == (70, 37)
    assert counts.dtype == np.int32
    assert np.all(counts >= 0)
    assert np.all(counts.sum(axis=1) == 37)


def test_plan_is_deterministic_and_depends_on_seed() -> None:
    a = BootstrapPlan.draw(50, 40, seed=7).counts
    b = BootstrapPlan.draw(50, 40, seed=7).counts
    c = BootstrapPlan.draw(50, 40, seed=8).counts
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_plan_prefix_is_stable_across_sizes() -> None:
    # replicate b never depends on how many replicates were asked for
    small = BootstrapPlan.draw(20, 45, seed=1).counts
    large = BootstrapPlan.draw(20, 130, seed=1).counts
    np.testing.assert_array_equal(small, large[:45])


def test_plan_blocks_match_counts() -> None:
    plan = BootstrapPlan.draw(11, 75, seed=2)
    stacked = np.concatenate([c for _, c in plan.blocks()])
    starts = [s for s, _ in plan.blocks()]
    assert starts == sorted(starts) and starts[0] == 0
    np.testing.assert_array_equal(stacked, plan.counts)


def test_plan_counts_have_multinomial_moments() -> None:
    # each count is Binomial(N, 1/N): mean 1, variance 1 - 1/N; pairs covary -1/N
    n, b = 8, 20000
    counts = BootstrapPlan.draw(n, b, seed=0).counts.astype(float)
    se_mean = np.sqrt((1 - 1 / n) / b)
    assert abs(counts[:, 0].mean() - 1.0) < 5 * se_mean
    var = counts[:, 0].var(ddof=1)
    # sd of a sample variance ~ sqrt((mu4 - sigma^4) / b); mu4 <= 3 sigma^4 + sigma^2 here
    assert abs(var - (1 - 1 / n)) < 5 * np.sqrt(4.0 / b)
    cov = np.cov(counts[:, 0], counts[:, 1])[0, 1]
    assert abs(cov - (-1 / n)) < 5 * np.sqrt(2.0 / b)


# --- replicates -------------------------------------------------------------


def test_replicates_are_resampled_means() -> None:
    rng = np.random.default_rng(0)
    c = rng.standard_normal(30)
    plan = BootstrapPlan.draw(30, 50, seed=4)
    reps = replicates(_term(c), plan)
    for b, row in enumerate(plan.counts):
        resample = np.repeat(c, row)  # the explicit resample
        assert reps[b] == pytest.approx(resample.mean(), abs=1e-13)


def test_replicates_on_a_subset_with_repeats() -> None:
    rng = np.random.default_rng(1)
    n = 25
    index = np.array([0, 3, 3, 7, 12, 24, 24, 24])
    values = rng.standard_normal(index.size)
    plan = BootstrapPlan.draw(n, 60, seed=5)
    reps = replicates(_term(values, index), plan)
    for b, row in enumerate(plan.counts):
        w = np.array([row[i] for i in index], dtype=float)
        expect = np.nan if w.sum() == 0 else float(np.dot(w, values) / w.sum())
        if np.isnan(expect):
            assert np.isnan(reps[b])
        else:
            assert reps[b] == pytest.approx(expect, abs=1e-13)


def test_pairing_difference_of_replicates_is_replicate_of_difference() -> None:
    rng = np.random.default_rng(2)
    n = 200
    c_native = rng.gamma(2.0, size=n)
    c_alt = c_native + rng.normal(0.1, 0.05, size=n)
    plan = BootstrapPlan.draw(n, 300, seed=9)
    r_native, r_alt, r_diff = replicates_many(
        [_term(c_native), _term(c_alt), _term(c_alt - c_native)], plan
    )
    np.testing.assert_allclose(r_alt - r_native, r_diff, rtol=0, atol=1e-12)
    # the paired spread is that of the differences, far below the unpaired spread
    assert np.std(r_diff) < 0.2 * np.hypot(np.std(r_native), np.std(r_alt))
    # the same holds on a shared subset
    idx = np.sort(rng.choice(n, size=50, replace=False))
    a, b, d = replicates_many(
        [_term(c_native[idx], idx), _term(c_alt[idx], idx), _term((c_alt - c_native)[idx], idx)], plan
    )
    np.testing.assert_allclose(b - a, d, rtol=0, atol=1e-12)


def test_replicates_many_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    n = 40
    idx = np.array([1, 5, 9, 30])
    terms = [_term(rng.normal(size=n)), _term(rng.normal(size=4), idx), _term(rng.normal(size=n))]
    terms.append(TermEstimate.not_evaluated("test"))
    plan = BootstrapPlan.draw(n, 70, seed=0)
    many = replicates_many(terms, plan)
    assert many.shape == (4, 70)
    for t, term in enumerate(terms[:3]):
        np.testing.assert_array_equal(many[t], replicates(term, plan))
    assert np.all(np.isnan(many[3]))


def test_replicates_reject_mismatched_sizes() -> None:
    plan = BootstrapPlan.draw(10, 5, seed=0)
    with pytest.raises(ValueError):
        replicates(_term(np.ones(9)), plan)
    with pytest.raises(ValueError):
        replicates(_term(np.ones(2), np.array([0, 10])), plan)


def test_replicate_spread_matches_standard_error_of_mean() -> None:
    # the bootstrap sd of a mean is sd(c) * sqrt((N - 1) / N) / sqrt(N) in expectation
    rng = np.random.default_rng(4)
    n, b = 400, 4000
    c = rng.exponential(size=n)
    reps = replicates(_term(c), BootstrapPlan.draw(n, b, seed=1))
    expect = c.std(ddof=0) / np.sqrt(n)
    assert reps.std(ddof=1) == pytest.approx(expect, rel=5 / np.sqrt(2 * b))
    assert reps.mean() == pytest.approx(c.mean(), abs=5 * expect / np.sqrt(b))


# --- jackknife and acceleration ---------------------------------------------


def test_jackknife_means_are_leave_one_out_means() -> None:
    c = np.random.default_rng(5).normal(size=17)
    brute = np.array([np.delete(c, i).mean() for i in range(c.size)])
    np.testing.assert_allclose(jackknife_means(c), brute, rtol=0, atol=1e-14)


def test_term_jackknife_on_a_subset_removes_every_copy() -> None:
    n = 12
    index = np.array([0, 2, 2, 5, 11])
    values = np.array([1.0, 4.0, 6.0, -2.0, 3.0])
    jk = term_jackknife(_term(values, index), n)
    for point in range(n):
        keep = index != point
        assert jk[point] == pytest.approx(values[keep].mean(), abs=1e-14)


def test_acceleration_matches_textbook_formula() -> None:
    c = np.random.default_rng(6).lognormal(size=60)
    brute = np.array([np.delete(c, i).mean() for i in range(c.size)])
    d = brute.mean() - brute
    expect = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    assert acceleration(brute) == pytest.approx(expect, rel=1e-10)
    assert term_acceleration(_term(c)) == pytest.approx(expect, rel=1e-10)
    assert expect > 0  # right-skewed contributions accelerate upwards
    assert acceleration(np.ones(5)) == 0.0


# --- intervals ----------------------------------------------------------------


def test_intervals_are_ordered_and_nested() -> None:
    rng = np.random.default_rng(7)
    c = rng.gamma(1.5, size=300)
    term = _term(c)
    reps = replicates(term, BootstrapPlan.draw(300, 1000, seed=0))
    for method in CI_METHODS:
        lo90, hi90 = term_interval(term, reps, 0.90, method)
        lo, hi = term_interval(term, reps, 0.95, method)
        lo99, hi99 = term_interval(term, reps, 0.99, method)
        assert isinstance(lo, float) and isinstance(hi, float)
        assert lo < term.value < hi, method
        assert lo99 <= lo <= lo90 < hi90 <= hi <= hi99, method


def test_bca_and_percentile_match_scipy_on_its_own_replicates() -> None:
    # scipy's replicates fed to our formulas must give scipy's intervals exactly
    x = np.random.default_rng(8).lognormal(sigma=0.8, size=80)
    for method, ours in (("BCa", "bca"), ("percentile", "percentile"), ("basic", "basic")):
        res = stats.bootstrap((x,), np.mean, method=method, n_resamples=2000, confidence_level=0.9, rng=1)
        lo, hi = interval_from_replicates(
            res.bootstrap_distribution, float(x.mean()), 0.9, ours, jackknife=jackknife_means(x)
        )
        assert lo == pytest.approx(res.confidence_interval.low, rel=1e-12)
        assert hi == pytest.approx(res.confidence_interval.high, rel=1e-12)


def test_bca_agrees_with_scipy_within_resampling_error() -> None:
    # independent replicates (ours vs scipy's): endpoints differ only by the Monte
    # Carlo error of a bootstrap quantile, sd ~ sqrt(p(1-p)/B)/phi(z_p) * sd_boot each
    x = np.random.default_rng(9).lognormal(sigma=0.8, size=150)
    b = 8000
    res = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=b, rng=2)
    reps = replicates(_term(x), BootstrapPlan.draw(x.size, b, seed=3))
    lo, hi = interval_from_replicates(reps, float(x.mean()), 0.95, "bca", jackknife=jackknife_means(x))
    sd_boot = np.std(res.bootstrap_distribution, ddof=1)
    p = 0.025
    q_err = np.sqrt(p * (1 - p) / b) / stats.norm.pdf(stats.norm.ppf(p)) * sd_boot
    tol = 5 * np.sqrt(2) * q_err
    assert abs(lo - res.confidence_interval.low) < tol
    assert abs(hi - res.confidence_interval.high) < tol
    # and the BCa shift is real for skewed data: not the percentile interval
    plo, phi = percentile_interval(reps, 0.95)
    assert hi - phi > 0 and lo - plo > 0


def test_bca_without_acceleration_is_bias_corrected_percentile() -> None:
    reps = np.linspace(-1, 1, 1001)
    # estimate at the median: z0 = 0 and a = 0 give the percentile interval
    assert bca_interval(reps, 0.0, 0.95, 0.0) == pytest.approx(percentile_interval(reps, 0.95))
    lo, hi = interval_from_replicates(reps, 0.0, 0.95, "bca")
    assert (lo, hi) == pytest.approx(percentile_interval(reps, 0.95))


def test_degenerate_and_missing_cases() -> None:
    const = np.full(100, 2.5)
    assert bca_interval(const, 2.5, 0.95, 0.0) == (2.5, 2.5)
    assert percentile_interval(np.full(10, np.nan), 0.95) == pytest.approx((np.nan, np.nan), nan_ok=True)
    with pytest.warns(RuntimeWarning):
        lo, hi = bca_interval(np.linspace(0, 1, 50), 5.0, 0.95, 0.0)
    assert (lo, hi) == pytest.approx(percentile_interval(np.linspace(0, 1, 50), 0.95))
    with pytest.raises(ValueError):
        interval_from_replicates(np.ones(3), 1.0, 0.95, "studentized")
    with pytest.raises(ValueError):
        percentile_interval(np.ones(3), 1.5)
    assert term_interval(TermEstimate.not_evaluated("x"), np.full(5, np.nan)) == pytest.approx(
        (np.nan, np.nan), nan_ok=True
    )


def test_normal_and_mc_intervals() -> None:
    reps = np.random.default_rng(10).normal(3.0, 0.5, size=5000)
    lo, hi = interval_from_replicates(reps, 3.0, 0.95, "normal")
    sd = reps.std(ddof=1)
    assert (lo, hi) == pytest.approx((3.0 - 1.959963984540054 * sd, 3.0 + 1.959963984540054 * sd))
    term = TermEstimate(1.0, 0.1, None, "mc")
    assert mc_interval(term, 0.95) == pytest.approx((1.0 - 0.1959963984540054, 1.0 + 0.1959963984540054))
    assert mc_interval(term, 0.5) == pytest.approx((1.0 - 0.0674489750196082, 1.0 + 0.0674489750196082))


# --- the pairwise-interaction adjustment ------------------------------------------


def test_mixture_interaction_exact_for_coincident_clusters() -> None:
    # components that coincide share every draw equally: r = 1/m inside a cluster of
    # m points and 0 between far clusters, so R_i = (m - 1) log(m / (m - 1)) exactly
    from elbo_audit._estimation.interaction import mixture_interaction
    from elbo_audit._model.families import DiagonalGaussian

    mean = np.array([[0.0]] * 2 + [[1000.0]] * 4 + [[-1000.0]])
    q = DiagonalGaussian(mean, np.ones_like(mean))
    r = mixture_interaction(q, rng=0, samples_per_point=3, form="direct")
    expect = np.array([np.log(2.0)] * 2 + [3 * np.log(4 / 3)] * 4 + [0.0])
    # rounding only: (z - mu) at |mu| = 1000 carries about 1e-13 absolute error
    np.testing.assert_allclose(r, expect, rtol=0, atol=1e-9)


def test_mixture_interaction_is_the_jackknife_effect_on_the_others() -> None:
    # R_i is the drop of the other points' sum of log q(z) when point i leaves the
    # mixture, up to the constant log(N/(N-1)); check against quadrature
    from scipy.special import logsumexp

    from elbo_audit._estimation.interaction import mixture_interaction
    from elbo_audit._model.families import DiagonalGaussian

    rng = np.random.default_rng(11)
    n = 30
    # posteriors that overlap their neighbours: for an isolated point R_i is driven by
    # rare tail draws and its Monte Carlo mean converges too slowly for a z-test
    mu, s = rng.normal(size=n), np.full(n, 0.1)
    x, w = np.polynomial.hermite.hermgauss(80)
    x, w = x * np.sqrt(2.0), w / np.sqrt(np.pi)
    z = (mu[:, None] + s[:, None] * x[None, :]).ravel()
    log_comp = -0.5 * ((z[:, None] - mu[None, :]) / s[None, :]) ** 2 - np.log(s)[None, :]
    owner = np.repeat(np.arange(n), x.size)
    exact = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        drop = logsumexp(log_comp, axis=1) - logsumexp(log_comp[:, keep], axis=1)  # -log(1 - r_i)
        exact[i] = np.sum((drop * np.tile(w, n))[owner != i])
    q = DiagonalGaussian(mu[:, None], s[:, None])
    runs = np.array([mixture_interaction(q, rng=seed, samples_per_point=50) for seed in range(20)])
    z_scores = (runs.mean(axis=0) - exact) / (runs.std(axis=0, ddof=1) / np.sqrt(runs.shape[0]) + 1e-15)
    assert np.max(np.abs(z_scores)) < 4.5


def test_interaction_adjustment_preserves_values_and_avg_kl() -> None:
    from elbo_audit._estimation.interaction import HOEFFDING_GAMMA, interaction_adjusted_terms

    rng = np.random.default_rng(12)
    n = 50
    mi, mkl = rng.normal(2.0, 0.3, n), rng.normal(0.5, 0.1, n)
    tc = _term(rng.normal(size=10), np.arange(10))
    terms = {"index_code_mi": _term(mi), "marginal_kl": _term(mkl), "total_correlation": tc}
    r = rng.exponential(size=n)
    adj = interaction_adjusted_terms(terms, r)
    assert adj["total_correlation"] is tc
    for name in ("index_code_mi", "marginal_kl"):
        assert adj[name].value == terms[name].value and adj[name].se == terms[name].se
        assert adj[name].pointwise.mean() == pytest.approx(terms[name].value, abs=1e-12)
    np.testing.assert_allclose(adj["index_code_mi"].pointwise + adj["marginal_kl"].pointwise, mi + mkl, atol=1e-12)
    np.testing.assert_allclose(
        adj["index_code_mi"].pointwise, mi - HOEFFDING_GAMMA * (r - r.mean()), atol=1e-12
    )


def test_interaction_adjustment_under_the_aggregate_posterior_prior() -> None:
    # log p = log q: avg_kl is index_code_mi, marginal_kl is 0, and the ELBO gain over
    # another prior must still equal that prior's marginal_kl + residual, replicate by replicate
    from elbo_audit._estimation.interaction import interaction_adjusted_terms

    rng = np.random.default_rng(13)
    n = 60
    recon, mi = rng.normal(-50, 3, n), rng.normal(3.0, 0.4, n)
    kl_native, mkl_native = mi + rng.normal(0.8, 0.2, n), rng.normal(0.8, 0.2, n)
    res_native = kl_native - mi - mkl_native
    r = rng.exponential(size=n)
    native = interaction_adjusted_terms(
        {"index_code_mi": _term(mi), "marginal_kl": _term(mkl_native), "avg_kl": _term(kl_native),
         "elbo": _term(recon - kl_native), "decomposition_residual": _term(res_native)}, r)
    agg = interaction_adjusted_terms(
        {"index_code_mi": _term(mi), "marginal_kl": _term(np.zeros(n)), "avg_kl": _term(mi),
         "elbo": _term(recon - mi)}, r, prior_is_aggregate=True)
    np.testing.assert_array_equal(agg["marginal_kl"].pointwise, np.zeros(n))
    np.testing.assert_allclose(agg["avg_kl"].pointwise, agg["index_code_mi"].pointwise, atol=1e-12)
    plan = BootstrapPlan.draw(n, 100, seed=1)
    gain = replicates(agg["elbo"], plan) - replicates(native["elbo"], plan)
    expect = replicates(native["marginal_kl"], plan) + replicates(native["decomposition_residual"], plan)
    np.testing.assert_allclose(gain, expect, atol=1e-9)
