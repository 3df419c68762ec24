"""Adaptive Monte Carlo to a target standard error, and the pooling of sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from elbo_audit._estimation.adaptive import (
    AdaptiveRecord,
    decompose_kl_to_target,
    decompose_priors_to_target,
    estimate_to_target,
    merge_decompositions,
    pool_stratified,
    pool_subsets,
    sweep_rng,
)
from elbo_audit._estimation.estimators import decompose_kl
from elbo_audit._estimation.mc import TermEstimate, stratified_estimate
from elbo_audit._model.families import DiagonalGaussian
from elbo_audit._model.priors import DiagonalGaussianPrior, StandardNormal


def _posteriors(n: int, d: int, sigma: float, seed: int = 0) -> DiagonalGaussian:
    rng = np.random.default_rng(seed)
    return DiagonalGaussian(rng.standard_normal((n, d)), np.full((n, d), sigma))


def _exact_mi_1d(mu: np.ndarray, s: np.ndarray, nodes: int = 60) -> float:
    """I[n; z] of 1-D Gaussian posteriors by Gauss-Hermite quadrature (independent of the code)."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    x, w = x * math.sqrt(2.0), w / math.sqrt(math.pi)
    z = (mu[:, None] + s[:, None] * x[None, :]).ravel()
    log_comp = -0.5 * ((z[:, None] - mu[None, :]) / s[None, :]) ** 2 - np.log(s)[None, :] - 0.5 * math.log(2 * math.pi)
    log_q = (logsumexp(log_comp, axis=1) - math.log(mu.size)).reshape(mu.size, nodes)
    entropy = np.log(s) + 0.5 * (1.0 + math.log(2 * math.pi))
    return float(np.mean(-entropy - log_q @ w))


# --- pooling ------------------------------------------------------------------


def test_pooling_sweeps_equals_one_stratified_estimate_of_all_draws() -> None:
    rng = np.random.default_rng(0)
    n = 150
    a, sd = rng.normal(size=n), rng.uniform(0.2, 2.0, size=n)
    for ks in ((3, 3), (2, 1, 4), (1, 1, 1, 1)):
        blocks = [a[:, None] + sd[:, None] * rng.standard_normal((n, k)) for k in ks]
        # a single-draw sweep carries a pilot-based se, which pooling must supersede
        parts = [
            stratified_estimate(f, (f[:20, 0], f[:20, 0] + 1.0) if f.shape[1] == 1 else None, "t")
            for f in blocks
        ]
        pooled = pool_stratified(parts, list(ks))
        direct = stratified_estimate(np.concatenate(blocks, axis=1), None, "t")
        assert pooled.value == pytest.approx(direct.value, abs=1e-13)
        assert pooled.se == pytest.approx(direct.se, rel=1e-12)
        np.testing.assert_allclose(pooled.pointwise, direct.pointwise, rtol=0, atol=1e-13)
        assert pooled.index is None


def test_pooled_se_matches_the_theoretical_standard_error() -> None:
    # f_nk = a_n + sd_n * eps: the Monte Carlo sd of the mean is sqrt(sum sd_n^2 / K) / N
    rng = np.random.default_rng(1)
    n, ks = 2000, (1, 1, 2)
    a, sd = rng.normal(size=n), rng.uniform(0.1, 3.0, size=n)
    theory = math.sqrt(np.sum(sd**2) / sum(ks)) / n
    parts = [stratified_estimate(a[:, None] + sd[:, None] * rng.standard_normal((n, k)), None, "t") for k in ks]
    pooled = pool_stratified(parts, list(ks))
    # the estimate of sum sd_n^2 has relative sd about sqrt(2 / (N (K - 1))) here (~2%)
    assert pooled.se == pytest.approx(theory, rel=0.08)
    # and the realised errors over repetitions have that spread
    errors = []
    for _ in range(300):
        parts = [stratified_estimate(a[:, None] + sd[:, None] * rng.standard_normal((n, k)), None, "t") for k in ks]
        errors.append(pool_stratified(parts, list(ks)).value - a.mean())
    assert np.std(errors, ddof=1) == pytest.approx(theory, rel=5 / math.sqrt(2 * 300))


def test_closed_form_terms_keep_zero_se() -> None:
    c = np.linspace(0, 1, 10)
    parts = [TermEstimate(float(c.mean()), 0.0, c, "closed form")] * 3
    pooled = pool_stratified(parts, [1, 2, 3])
    assert pooled.se == 0.0
    assert pooled.value == pytest.approx(c.mean())


def test_pool_subsets_concatenates_draws() -> None:
    p1 = TermEstimate(2.0, 0.5, np.array([1.0, 3.0]), "sub", np.array([4, 1]))
    p2 = TermEstimate(4.0, 0.25, np.array([5.0, 2.0, 5.0]), "sub", np.array([1, 0, 7]))
    pooled = pool_subsets([p1, p2], n_points=8)
    assert pooled.value == pytest.approx((1 + 3 + 5 + 2 + 5) / 5)
    assert pooled.se == pytest.approx(math.sqrt((2 * 0.5) ** 2 + (3 * 0.25) ** 2) / 5)
    np.testing.assert_array_equal(pooled.index, [0, 1, 1, 4, 7])
    assert sorted(pooled.pointwise.tolist()) == [1.0, 2.0, 3.0, 5.0, 5.0]
    assert pooled.value == pytest.approx(pooled.pointwise.mean())


def test_merge_decompositions_of_real_sweeps() -> None:
    q = _posteriors(120, 2, 0.4)
    prior = StandardNormal(2)
    parts = [decompose_kl(q, prior, rng=sweep_rng(5, j), samples_per_point=k) for j, k in enumerate((2, 3))]
    merged = merge_decompositions(parts)
    assert merged.samples_per_point == 5
    assert merged.avg_kl.se == 0.0
    np.testing.assert_allclose(merged.avg_kl.pointwise, parts[0].avg_kl.pointwise)
    expect = (2 * parts[0].index_code_mi.value + 3 * parts[1].index_code_mi.value) / 5
    assert merged.index_code_mi.value == pytest.approx(expect, abs=1e-13)
    # total correlation: one draw per point per sweep, all points used
    expect_tc = (parts[0].total_correlation.value + parts[1].total_correlation.value) / 2
    assert merged.total_correlation.value == pytest.approx(expect_tc, abs=1e-13)
    assert merged.index_code_mi.se < min(p.index_code_mi.se for p in parts)


# --- the adaptive loop ----------------------------------------------------------


def test_one_sweep_reproduces_the_non_adaptive_run() -> None:
    q = _posteriors(80, 2, 0.3)
    prior = StandardNormal(2)
    kl, record = decompose_kl_to_target(q, prior, target_se=50.0, seed=11, max_samples_per_point=10)
    plain = decompose_kl(q, prior, rng=np.random.default_rng(np.random.SeedSequence(11, spawn_key=(0,))))
    assert record.sweeps == 1 and record.reached and record.stopped_by == "target"
    for name, term in plain.terms().items():
        assert kl.terms()[name].value == term.value


def test_reaches_target_and_is_honest_about_it() -> None:
    rng = np.random.default_rng(2)
    n = 150
    mu, s = rng.standard_normal(n), np.full(n, 0.2)
    q = DiagonalGaussian(mu[:, None], s[:, None])
    target = 0.01
    kl, record = decompose_kl_to_target(q, StandardNormal(1), target_se=target, seed=0, max_samples_per_point=500)
    assert record.reached and record.stopped_by == "target"
    assert record.sweeps >= 2
    assert all(se <= target for se in record.achieved_se["prior"].values())
    assert kl.index_code_mi.se <= target
    assert kl.samples_per_point == record.samples_per_point
    # the estimate is within a few standard errors of the quadrature value
    exact = _exact_mi_1d(mu, s)
    assert abs(kl.index_code_mi.value - exact) < 4 * kl.index_code_mi.se


def test_stops_at_the_sample_budget() -> None:
    q = _posteriors(60, 2, 0.5)
    kl, record = decompose_kl_to_target(q, StandardNormal(2), target_se=1e-6, seed=0, max_samples_per_point=7)
    assert not record.reached
    assert record.stopped_by == "max_samples_per_point"
    assert record.samples_per_point == 7 == kl.samples_per_point


def test_stops_at_the_time_budget() -> None:
    ticks = iter(range(10**6))

    def clock() -> float:  # every call advances one "second"
        return float(next(ticks))

    q = _posteriors(60, 2, 0.5)
    _, record = decompose_kl_to_target(q, StandardNormal(2), target_se=1e-6, seed=0, max_seconds=20.0, clock=clock)
    assert not record.reached
    assert record.stopped_by == "max_seconds"
    assert record.seconds <= 20.0 + 2.0  # no sweep started that the clock said would not fit
    with pytest.raises(ValueError):
        decompose_kl_to_target(q, StandardNormal(2), target_se=0.1)  # no budget at all


def test_priors_share_draws() -> None:
    q = _posteriors(100, 2, 0.3)
    priors = {"native": StandardNormal(2), "wide": DiagonalGaussianPrior(np.zeros(2), np.full(2, 2.0))}
    merged, record = decompose_priors_to_target(q, priors, target_se=0.02, seed=3, max_samples_per_point=64)
    # index_code_mi does not involve the prior: with common draws it is identical
    assert merged["native"].index_code_mi.value == merged["wide"].index_code_mi.value
    assert merged["native"].marginal_kl.value != merged["wide"].marginal_kl.value
    assert set(record.achieved_se) == {"native", "wide"}
    attrs = record.as_attrs()
    assert attrs["adaptive_reached"] in (0, 1) and isinstance(attrs["adaptive_achieved_se"], str)


def test_estimate_to_target_for_a_reconstruction_like_term() -> None:
    rng0 = np.random.default_rng(4)
    n = 500
    a, sd = rng0.normal(size=n), rng0.uniform(0.5, 1.5, size=n)

    def sweep(rng: np.random.Generator, k: int) -> TermEstimate:
        return stratified_estimate(a[:, None] + sd[:, None] * rng.standard_normal((n, k)), None, "recon")

    term, record = estimate_to_target(sweep, target_se=0.005, seed=0, max_samples_per_point=1000)
    assert isinstance(record, AdaptiveRecord)
    assert record.reached and term.se <= 0.005
    theory = math.sqrt(np.sum(sd**2) / record.samples_per_point) / n
    assert term.se == pytest.approx(theory, rel=0.1)
    assert abs(term.value - a.mean()) < 4 * theory
