"""The pairwise pass against an independent brute-force reference.

Truth here is never produced by ``elbo_audit``: it is scipy.stats log-densities
combined by scipy.special.logsumexp over a dense S x M matrix (``brute`` from
conftest), or a hand-written float64 direct form.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from elbo_audit import log_mixture_density, log_mixture_marginals

FORMS = ["gemm64", "direct"]


def _mixture(rng, m, d, mean_scale=1.5, log_std_range=(-1.0, 0.5)):
    mean = rng.normal(0.0, mean_scale, (m, d))
    std = np.exp(rng.uniform(*log_std_range, (m, d)))
    return mean, std


def _points_near(rng, mean, std, s):
    """Half the points drawn from the mixture, half from a wide Gaussian (tails)."""
    idx = rng.integers(0, mean.shape[0], s)
    near = mean[idx] + std[idx] * rng.standard_normal((s, mean.shape[1]))
    wide = rng.normal(0.0, 4.0, (s, mean.shape[1]))
    return np.where((np.arange(s) % 2 == 0)[:, None], near, wide)


def _hand_direct(z, mean, std, log_w):
    """float64 direct form written out by hand (independent of scipy.stats)."""
    u = (z[:, None, :] - mean[None]) / std[None]
    log_det = np.sum(np.log(std), axis=1)[None] + 0.5 * z.shape[1] * np.log(2 * np.pi)
    comp = -0.5 * np.sum(u * u, axis=2) - log_det
    return special.logsumexp(comp + log_w[None], axis=1)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("d", [1, 3, 8])
@pytest.mark.parametrize("m", [1, 2, 37])
def test_uniform_mixture_matches_brute_force(form, d, m, brute):
    rng = np.random.default_rng([d, m])
    mean, std = _mixture(rng, m, d)
    z = _points_near(rng, mean, std, 41)
    got = log_mixture_density(z, mean, std, form=form)
    want = brute(z, mean, std)
    assert got.shape == (41,)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-11)


def test_single_component_is_the_gaussian_log_pdf():
    rng = np.random.default_rng(3)
    mean, std = _mixture(rng, 1, 4)
    z = rng.normal(size=(25, 4))
    want = stats.multivariate_normal(mean[0], np.diag(std[0] ** 2)).logpdf(z)
    for form in FORMS:
        got = log_mixture_density(z, mean, std, form=form)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_weights(form, brute):
    rng = np.random.default_rng(11)
    mean, std = _mixture(rng, 23, 3)
    weights = rng.dirichlet(np.full(23, 0.5))
    z = _points_near(rng, mean, std, 50)
    got = log_mixture_density(z, mean, std, np.log(weights), form=form)
    np.testing.assert_allclose(got, brute(z, mean, std, weights), rtol=1e-12, atol=1e-11)
    # the weights matter: the uniform mixture differs from this one
    assert np.max(np.abs(got - brute(z, mean, std))) > 0.1


@pytest.mark.parametrize("inner_block", [1, 2, 2048])
@pytest.mark.parametrize("form", FORMS)
def test_zero_weight_components_are_ignored(form, inner_block, brute):
    # Regression: zero-weight components filling the first tile of the
    # streaming logsumexp gave NaN (-inf - -inf) before the fix.
    rng = np.random.default_rng(12)
    mean, std = _mixture(rng, 7, 2)
    weights = np.array([0.0, 0.0, 0.3, 0.2, 0.1, 0.0, 0.4])
    z = _points_near(rng, mean, std, 30)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    got = log_mixture_density(z, mean, std, log_w, form=form, inner_block=inner_block)
    keep = weights > 0
    want = brute(z, mean[keep], std[keep], weights[keep])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-11)
    marg = log_mixture_marginals(z, mean, std, log_w, inner_block=inner_block)
    want = _brute_marginals(z, mean[keep], std[keep], weights[keep])
    np.testing.assert_allclose(marg, want, rtol=1e-12, atol=1e-11)
    # a mixture with no mass anywhere has log-density -inf, not NaN
    no_mass = np.full(7, -np.inf)
    none = log_mixture_density(z, mean, std, no_mass, form=form, inner_block=inner_block)
    assert np.all(np.isneginf(none))


def _sharp_case(rng, m, s, d, scale, std_value):
    signs = rng.choice([-1.0, 1.0], (m, d))
    mean = signs * rng.uniform(0.5 * scale, 1.5 * scale, (m, d))
    std = np.full((m, d), std_value) * np.exp(rng.uniform(-0.2, 0.2, (m, d)))
    idx = rng.integers(0, m, s)
    z = mean[idx] + std[idx] * rng.standard_normal((s, d))
    return z, mean, std


def test_sharp_posteriors_gemm64_stays_within_1e6_of_direct_float64():
    # std 0.01, |mu| ~ 3, D = 20: the expanded quadratic form cancels ~1e6-sized terms
    rng = np.random.default_rng(2016)
    z, mean, std = _sharp_case(rng, 1500, 600, 20, 3.0, 0.01)
    # also points between components, where no component dominates
    z = np.concatenate([z, 0.5 * (mean[:300] + mean[300:600])])
    want = _hand_direct(z, mean, std, np.full(mean.shape[0], -np.log(mean.shape[0])))
    got = log_mixture_density(z, mean, std, form="gemm64")
    assert np.max(np.abs(got - want)) < 1e-6
    direct = log_mixture_density(z, mean, std, form="direct")
    np.testing.assert_allclose(direct, want, rtol=1e-13, atol=1e-9)
    # the test is sharp: the log-densities are large, so an error of 1e-6 is
    # a relative error far below what float32 could reach
    assert np.median(np.abs(want)) > 50.0


@pytest.mark.parametrize(
    "scale, std_value, d, offset",
    [(100.0, 0.01, 20, 0.0), (1e3, 1e-3, 5, 0.0), (1e4, 1e-4, 5, 0.0), (0.5, 1e-3, 10, 500.0)],
)
def test_gemm64_accurate_far_outside_the_easy_regime(scale, std_value, d, offset):
    # Regression: before the fix, "gemm64" lost 8e-7, 2.6e-3 and 34 nats in the
    # first three cases (cancellation of w * mu^2 ~ 1e8 .. 1e16 sized terms).
    rng = np.random.default_rng(int(scale) + d)
    z, mean, std = _sharp_case(rng, 200, 300, d, scale, std_value)
    mean, z = mean + offset, z + offset
    want = _hand_direct(z, mean, std, np.full(200, -np.log(200)))
    got = log_mixture_density(z, mean, std, form="gemm64")
    assert np.max(np.abs(got - want)) < 1e-6


@pytest.mark.parametrize("form", FORMS)
def test_blocking_and_threads_do_not_change_the_result(form):
    rng = np.random.default_rng(5)
    mean, std = _mixture(rng, 301, 6)
    weights = rng.dirichlet(np.ones(301))
    z = _points_near(rng, mean, std, 203)
    log_w = np.log(weights)
    ref = log_mixture_density(
        z, mean, std, log_w, form=form, outer_block=512, inner_block=2048, workers=1
    )
    blockings = [(1, 1, 1), (7, 3, 2), (64, 50, 3), (203, 301, 2), (1000, 17, 4), (13, 4096, 1)]
    for outer, inner, workers in blockings:
        got = log_mixture_density(
            z, mean, std, log_w, form=form, outer_block=outer, inner_block=inner, workers=workers
        )
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_gemm64_agrees_with_direct_on_large_random_problem():
    rng = np.random.default_rng(9)
    mean, std = _mixture(rng, 3000, 20)
    z = _points_near(rng, mean, std, 700)
    blocks = {"outer_block": 128, "inner_block": 512, "workers": 2}
    a = log_mixture_density(z, mean, std, form="gemm64", **blocks)
    b = log_mixture_density(z, mean, std, form="direct", **blocks)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_empty_and_invalid_inputs():
    mean = np.zeros((3, 2))
    std = np.ones((3, 2))
    assert log_mixture_density(np.empty((0, 2)), mean, std).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        log_mixture_density(np.zeros((4, 3)), mean, std)
    with pytest.raises(ValueError, match="shape"):
        log_mixture_density(np.zeros((4, 2)), mean, np.ones((3, 3)))
    with pytest.raises(ValueError, match="form"):
        log_mixture_density(np.zeros((4, 2)), mean, std, form="float32")


def _brute_marginals(z, mean, std, weights):
    # (S, M, D) per-dimension log-densities, logsumexp over components
    comp = stats.norm.logpdf(z[:, None, :], loc=mean[None], scale=std[None])
    return special.logsumexp(comp + np.log(weights)[None, :, None], axis=1)


@pytest.mark.parametrize("weighted", [False, True])
def test_marginals_match_brute_force(weighted):
    rng = np.random.default_rng(21)
    mean, std = _mixture(rng, 29, 5)
    weights = rng.dirichlet(np.ones(29)) if weighted else np.full(29, 1 / 29)
    z = _points_near(rng, mean, std, 33)
    got = log_mixture_marginals(z, mean, std, np.log(weights) if weighted else None)
    assert got.shape == (33, 5)
    np.testing.assert_allclose(got, _brute_marginals(z, mean, std, weights), rtol=1e-12, atol=1e-11)


def test_marginals_of_one_dimension_equal_the_joint_density():
    rng = np.random.default_rng(22)
    mean, std = _mixture(rng, 17, 1)
    z = _points_near(rng, mean, std, 40)
    joint = log_mixture_density(z, mean, std, form="direct")
    np.testing.assert_allclose(log_mixture_marginals(z, mean, std)[:, 0], joint, atol=1e-12)


def test_marginals_blocking_invariance():
    rng = np.random.default_rng(23)
    mean, std = _mixture(rng, 150, 4)
    z = _points_near(rng, mean, std, 90)
    ref = log_mixture_marginals(z, mean, std, workers=1)
    for outer, inner, workers in [(1, 1, 1), (7, 13, 2), (90, 150, 4), (500, 5000, 3)]:
        got = log_mixture_marginals(
            z, mean, std, outer_block=outer, inner_block=inner, workers=workers
        )
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
