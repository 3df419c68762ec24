"""scikit-learn adapter for elbo-audit.

Registers, through the ``elbo_audit`` entry-point group:

* the ``sklearn`` adapter, for fitted :class:`sklearn.decomposition.FactorAnalysis`
  and :class:`sklearn.decomposition.PCA` (probabilistic PCA) objects and for
  ``.skops`` files holding them. Both are linear-Gaussian latent models whose
  posterior is Gaussian in closed form, so the audit uses the EXACT posterior
  and its ELBO equals the model's log-likelihood (``score``);
* the ``digits`` dataset (``sklearn.datasets.load_digits``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._plugin import elbo_audit_adapters, elbo_audit_datasets, elbo_audit_priors
from ._version import __version__

# scikit-learn and skops take seconds to import; the plugin host imports this
# package for every command, so everything that needs them loads on first use.
_LAZY = {
    "ADAPTER": "_adapter", "claims": "_adapter", "wrap": "_adapter", "wrap_estimator": "_adapter",
    "load_skops": "_adapter", "DIGITS": "_datasets", "load_digits_dataset": "_datasets",
    "linear_gaussian_model": "_estimators", "factor_analysis_model": "_estimators",
    "pca_model": "_estimators", "LinearGaussianLatentModel": "_linear_gaussian",
    "LinearGaussianEncoder": "_linear_gaussian", "LinearGaussianDecoder": "_linear_gaussian",
    "fit_mixture_prior": "_priors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "elbo_audit_adapters", "elbo_audit_datasets", "elbo_audit_priors"]
__all__ += list(_LAZY)
