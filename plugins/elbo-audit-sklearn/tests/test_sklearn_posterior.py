"""The adapter's posterior and decoder against truths it did not compute.

Truths used here: scikit-learn's own ``get_covariance`` and ``score_samples``,
Gaussian conditioning done from scratch with ``numpy.linalg.solve``, and
``scipy.stats.multivariate_normal``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from elbo_audit_sklearn import linear_gaussian_model, wrap_estimator
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, FactorAnalysis

CASES = ("fa", "fa_varimax", "pca")


@functools.cache
def _digits() -> np.ndarray:
    return load_digits().data.astype(np.float64)


@functools.cache
def _fitted(case: str):
    x = _digits()
    if case == "fa":
        return FactorAnalysis(n_components=8, random_state=0).fit(x)
    if case == "fa_varimax":  # full (non-diagonal) posterior covariance: exercises the rotation
        return FactorAnalysis(n_components=6, rotation="varimax", random_state=0).fit(x)
    if case == "pca":
        return PCA(n_components=9, svd_solver="full").fit(x)
    raise AssertionError(case)


def _loading_in_estimator_basis(est) -> np.ndarray:
    """W with x = z @ W + mean_ + noise, from the estimator's documented attributes."""
    if isinstance(est, FactorAnalysis):
        return est.components_
    s2 = est.noise_variance_
    return np.sqrt(np.maximum(est.explained_variance_ - s2, 0.0))[:, None] * est.components_


def _noise(est) -> np.ndarray:
    d = est.components_.shape[1]
    return np.broadcast_to(np.asarray(est.noise_variance_, float), (d,))


@pytest.mark.parametrize("case", CASES)
def test_generative_model_matches_sklearn(case: str) -> None:
    est = _fitted(case)
    w = _loading_in_estimator_basis(est)
    # anchor the loading to sklearn's own covariance
    cov = w.T @ w + np.diag(_noise(est))
    np.testing.assert_allclose(cov, est.get_covariance(), rtol=1e-10, atol=1e-10)
    m = linear_gaussian_model(est)
    np.testing.assert_allclose(m.covariance(), est.get_covariance(), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(m.mean, est.mean_)
    u = m.rotation
    np.testing.assert_allclose(u.T @ u, np.eye(m.n_latent), atol=1e-12)
    np.testing.assert_allclose(m.loading, u.T @ w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_posterior_is_the_exact_conditional(case: str) -> None:
    est = _fitted(case)
    x = _digits()[::7]
    w = _loading_in_estimator_basis(est)
    k = w.shape[0]
    cov_x = est.get_covariance()
    xc = x - est.mean_
    # joint Gaussian of (z, x): Cov(z) = I, Cov(z, x) = W, Cov(x) = cov_x
    true_mean = np.linalg.solve(cov_x, xc.T).T @ w.T  # (B, K) = W cov_x^{-1} (x - mu)
    true_cov = np.eye(k) - w @ np.linalg.solve(cov_x, w.T)

    model = wrap_estimator(est, "m")
    q = model.encoder.encode(x)
    u = linear_gaussian_model(est).rotation
    np.testing.assert_allclose(q.mean @ u.T, true_mean, rtol=1e-8, atol=1e-8)
    for row in (0, 13, len(x) - 1):  # the same posterior covariance for every data point
        got_cov = u @ np.diag(q.std[row] ** 2) @ u.T
        np.testing.assert_allclose(got_cov, true_cov, rtol=1e-8, atol=1e-10)
    if case == "fa_varimax":
        assert np.abs(true_cov - np.diag(np.diag(true_cov))).max() > 1e-3  # rotation was needed
    if case == "pca":
        np.testing.assert_array_equal(u, np.eye(k))  # latent k is principal component k
        ev, s2 = est.explained_variance_, est.noise_variance_
        np.testing.assert_allclose(q.std[0] ** 2, s2 / ev, rtol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_closed_form_elbo_equals_score_samples(case: str) -> None:
    """E_q[log p(x|z)] - KL(q || N(0, I)) in closed form equals sklearn's log p(x) per point."""
    est = _fitted(case)
    x = _digits()
    model = wrap_estimator(est, "m")
    q = model.encoder.encode(x)
    m = linear_gaussian_model(est)
    w, psi, d = m.loading, m.noise_variance, x.shape[1]
    mu_q, var_q = q.mean, q.std**2
    resid = x - est.mean_ - mu_q @ w
    # E_q ||x - mu - W^T z||^2_{Psi^-1}
    #   = ||x - mu - W^T m||^2_{Psi^-1} + sum_k v_k (W Psi^-1 W^T)_kk
    expected_quad = np.sum(resid**2 / psi, axis=1) + var_q @ np.sum(w**2 / psi, axis=1)
    e_loglik = -0.5 * (expected_quad + d * np.log(2 * np.pi) + np.sum(np.log(psi)))
    kl = 0.5 * np.sum(var_q + mu_q**2 - 1.0 - np.log(var_q), axis=1)
    np.testing.assert_allclose(e_loglik - kl, est.score_samples(x), rtol=0, atol=1e-8)
    # and the prior's closed-form KL agrees with the test's
    np.testing.assert_allclose(model.prior.cross_entropy(q) - q.entropy(), kl, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_decoder_density_and_exact_posterior_identity(case: str) -> None:
    """log p(x|z) matches scipy, and log p(x|z) + log p(z) - log q(z|x) = log p(x) for ANY z."""
    est = _fitted(case)
    x = _digits()[:40]
    model = wrap_estimator(est, "m")
    q = model.encoder.encode(x)
    rng = np.random.default_rng(1)
    z = q.mean[:, None, :] + q.std[:, None, :] * rng.standard_normal((len(x), 3, q.n_latent))
    z[:, 2] = rng.normal(0.0, 2.0, size=(len(x), q.n_latent))  # far from the posterior too
    ll = model.decoder.log_likelihood(x, z)
    assert ll.shape == (len(x), 3) and ll.dtype == np.float64

    m = linear_gaussian_model(est)
    # the noise is diagonal (FA floors constant pixels' variance at 1e-12, which
    # scipy's multivariate_normal calls singular), so sum univariate log-densities
    loc = z @ m.loading + m.mean
    ref = stats.norm.logpdf(x[:, None, :], loc, np.sqrt(m.noise_variance)).sum(axis=-1)
    np.testing.assert_allclose(ll, ref, rtol=1e-10)

    log_pz = stats.norm.logpdf(z).sum(axis=-1)
    log_q = stats.norm.logpdf(z, q.mean[:, None, :], q.std[:, None, :]).sum(axis=-1)
    log_px = ll + log_pz - log_q
    np.testing.assert_allclose(log_px, np.repeat(est.score_samples(x)[:, None], 3, 1), atol=1e-8)


def test_encoder_accepts_trailing_shapes_and_checks_features() -> None:
    est = _fitted("pca")
    model = wrap_estimator(est, "m")
    x = _digits()[:5]
    q_flat = model.encoder.encode(x)
    q_img = model.encoder.encode(x.reshape(5, 8, 8))
    np.testing.assert_array_equal(q_flat.mean, q_img.mean)
    from elbo_audit import ModelError

    with pytest.raises(ModelError, match="63 features, the model expects 64"):
        model.encoder.encode(x[:, :63])
