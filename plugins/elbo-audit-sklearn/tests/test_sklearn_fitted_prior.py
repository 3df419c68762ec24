"""The fitted_mixture prior: a GaussianMixture fitted to draws from q(z)."""

from __future__ import annotations

import numpy as np
import pytest
from elbo_audit_sklearn import fit_mixture_prior

from elbo_audit import DiagonalGaussian, StandardNormal, UsageError, decompose_kl


def _clustered(n_per: int = 150) -> tuple[DiagonalGaussian, np.ndarray, np.ndarray]:
    # every posterior of cluster k is the same Gaussian, so q(z) IS a 3-component diagonal mixture
    means = np.array([[-3.0, 0.0], [2.0, 2.5], [2.5, -2.0]])
    stds = np.array([[0.5, 0.8], [0.6, 0.4], [0.3, 0.7]])
    idx = np.repeat(np.arange(3), n_per)
    return DiagonalGaussian(means[idx], stds[idx]), means, stds


def test_a_mixture_of_the_right_size_recovers_the_aggregate_posterior() -> None:
    q, means, stds = _clustered()
    prior = fit_mixture_prior(2, {"posteriors": q, "seed": 0, "components": 3})
    order = np.argsort(prior.mean[:, 0])
    np.testing.assert_allclose(prior.mean[order], means[np.argsort(means[:, 0])], atol=0.05)
    np.testing.assert_allclose(prior.std[order], stds[np.argsort(means[:, 0])], rtol=0.05)
    fitted = decompose_kl(q, prior, rng=1, samples_per_point=4)
    native = decompose_kl(q, StandardNormal(2), rng=1, samples_per_point=4)
    # KL(q || fitted) only reflects fitting error on 9000 draws: O(parameters / draws)
    assert fitted.marginal_kl.value < 0.01
    assert native.marginal_kl.value > 1.0
    # the index-code MI does not depend on the prior; same draws give the same number
    assert fitted.index_code_mi.value == native.index_code_mi.value


def test_options_are_checked() -> None:
    q, _, _ = _clustered(10)
    with pytest.raises(UsageError, match="unknown option"):
        fit_mixture_prior(2, {"posteriors": q, "seed": 0, "k": 3})
    with pytest.raises(UsageError, match="components must be"):
        fit_mixture_prior(2, {"posteriors": q, "seed": 0, "components": 0})
