"""End to end: the core's audit of an exact-posterior model recovers sklearn's score.

With the exact posterior the ELBO equals log p(x), so the audit's native-prior
ELBO must match ``est.score(x)`` within its Monte Carlo error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from elbo_audit_sklearn import load_digits_dataset, wrap_estimator
from elbo_audit_sklearn.examples import digits_factor_analysis, digits_pca
from sklearn.decomposition import FactorAnalysis

from elbo_audit import AuditSettings, audit_model


def _varimax_fa():
    x = load_digits_dataset().x
    return FactorAnalysis(n_components=6, rotation="varimax", random_state=0).fit(x)


@pytest.mark.parametrize(
    "make", [digits_factor_analysis, digits_pca, _varimax_fa], ids=["fa", "pca", "fa_varimax"]
)
def test_audit_elbo_matches_sklearn_score(make) -> None:
    est = make()
    x = load_digits_dataset().x
    model = wrap_estimator(est, "m")
    result = audit_model(model, x, AuditSettings(seed=0, reconstruction_samples=8))
    assert result.adapter == "sklearn"
    assert result.n_points == x.shape[0] and result.n_latent == est.components_.shape[0]
    native = result.by_prior["native"]
    score = est.score(x)
    elbo = native.elbo
    assert 0.0 < elbo.se < 0.5
    assert abs(elbo.value - score) < 4.0 * elbo.se, (elbo.value, elbo.se, score)

    kl = native.kl
    log_n = math.log(x.shape[0])
    assert kl.index_code_mi.value <= log_n
    assert kl.index_code_mi.value > 0.0
    res = kl.decomposition_residual
    assert res.se > 0.0
    assert abs(res.value) < 4.0 * res.se, (res.value, res.se)
    # avg_kl is closed form: it must equal KL of the exact posterior to N(0, I)
    q = model.encoder.encode(x)
    kl_n = 0.5 * np.sum(q.std**2 + q.mean**2 - 1.0 - 2.0 * np.log(q.std), axis=1)
    assert kl.avg_kl.value == pytest.approx(kl_n.mean(), abs=1e-10)


def test_audit_is_deterministic_for_a_seed() -> None:
    est = digits_pca(n_components=4)
    x = load_digits_dataset().x
    settings = AuditSettings(seed=3, reconstruction_samples=2)
    a = audit_model(wrap_estimator(est, "m"), x, settings).by_prior["native"]
    b = audit_model(wrap_estimator(est, "m"), x, settings).by_prior["native"]
    assert a.elbo.value == b.elbo.value and a.kl.index_code_mi.value == b.kl.index_code_mi.value


def test_importance_weighted_log_likelihood_equals_sklearn_score() -> None:
    # the posterior is exact, so every importance weight is p(x_n): the bound is score_samples exactly
    est = digits_factor_analysis()
    x = load_digits_dataset().x[:300]
    result = audit_model(wrap_estimator(est, "m"), x, AuditSettings(seed=0, iw_samples=5, n_resamples=0))
    native = result.by_prior["native"]
    ll = native.importance["log_likelihood"]
    np.testing.assert_allclose(ll.pointwise, est.score_samples(x), rtol=1e-9)
    assert ll.value == pytest.approx(est.score(x), rel=1e-9)
    gap = native.importance["inference_gap"]
    assert abs(gap.value) < 4.0 * gap.se, (gap.value, gap.se)
    assert result.by_prior["native"].importance["inference_gap"].se > 0.0


def test_refining_an_exact_posterior_leaves_no_gap() -> None:
    # the adapter's posterior is exact: refinement starts at the optimum, both gaps are 0 and the
    # refined ELBO is scikit-learn's score
    est = digits_factor_analysis()
    x = load_digits_dataset().x[:300]
    settings = AuditSettings(seed=1, iw_samples=5, refine_steps=50, reconstruction_samples=8, n_resamples=0)
    terms = audit_model(wrap_estimator(est, "m"), x, settings).by_prior["native"].importance
    refined = terms["refined_elbo"]
    assert abs(refined.value - est.score(x)) < 4.0 * refined.se, (refined.value, est.score(x), refined.se)
    for gap in ("amortization_gap", "approximation_gap"):
        assert abs(terms[gap].value) < 4.0 * terms[gap].se, (gap, terms[gap].value, terms[gap].se)
    ll = terms["log_likelihood"]  # a bound on score from the mixture of exact and refined posteriors
    assert ll.value <= est.score(x) + 4.0 * ll.se


def test_decoder_gradient_matches_numerical_differentiation() -> None:
    est = digits_factor_analysis()
    x = load_digits_dataset().x[:5]
    dec = wrap_estimator(est, "m").decoder
    z = np.random.default_rng(2).normal(size=(5, 3, est.n_components))
    ll, grad = dec.log_likelihood_grad(x, z)
    h = 1e-6
    numeric = np.stack(
        [(dec.log_likelihood(x, z + h * e) - dec.log_likelihood(x, z - h * e)) / (2 * h)
         for e in np.eye(est.n_components)], axis=-1,
    )
    np.testing.assert_allclose(ll, dec.log_likelihood(x, z), rtol=0, atol=0)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)
