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


@pytest.fixture
def brute():
    """The brute-force reference :func:`brute_log_mixture`."""
    return brute_log_mixture
