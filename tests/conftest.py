"""Shared test helpers: an independent brute-force reference for mixture densities.

The reference is written without any code from ``elbo_audit``: scipy.stats for
the Gaussian log-densities and scipy.special.logsumexp over a dense S x M matrix,
so it is only usable on small problems.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats


def brute_log_mixture(z, mean, std, weights=None):
    """log sum_m w_m prod_d N(z_d; mean_md, std_md^2) for every row of z (dense, float64)."""
    z = np.asarray(z, np.float64)
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    m = mean.shape[0]
    w = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, np.float64)
    comp = stats.norm.logpdf(z[:, None, :], loc=mean[None], scale=std[None]).sum(axis=2)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    return special.logsumexp(comp + log_w[None, :], axis=1)


def assert_steps_equal_separate_audits(root, kept, x_val, settings, sizes):
    """Every step of a Monitor report equals a separate audit of the weights kept at that step.

    ``kept`` maps a step to a torch state dict of the reference MLP VAE with ``sizes``; each is
    loaded into a fresh module and audited with ``elbo_audit.audit(..., **settings)``.
    """
    from elbo_audit_torch import reference

    import elbo_audit
    from elbo_audit._model.terms import TERMS

    for step, state in kept.items():
        fresh = reference.mlp_vae(**sizes)
        fresh.load_state_dict(state)
        alone = elbo_audit.audit(fresh, x_val, name="vae", **settings).dataset
        for t in TERMS:
            for v in (t, f"{t}_se", f"{t}_ci"):
                np.testing.assert_array_equal(root[v].sel(step=step).values, alone[v].values, err_msg=v)


@pytest.fixture
def steps_equal_separate_audits():
    """:func:`assert_steps_equal_separate_audits`, for the Monitor tests."""
    return assert_steps_equal_separate_audits


@pytest.fixture
def brute():
    """The brute-force reference :func:`brute_log_mixture`."""
    return brute_log_mixture
