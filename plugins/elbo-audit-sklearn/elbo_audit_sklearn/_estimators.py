"""From fitted scikit-learn estimators to linear-Gaussian latent models.

Supported: :class:`sklearn.decomposition.FactorAnalysis` and
:class:`sklearn.decomposition.PCA` (as probabilistic PCA, the model behind its
``score_samples``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import sklearn
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from elbo_audit import ModelError

from ._linear_gaussian import LinearGaussianLatentModel

__all__ = [
    "SUPPORTED",
    "estimator_attrs",
    "estimator_name",
    "factor_analysis_model",
    "is_supported",
    "linear_gaussian_model",
    "pca_model",
]

SUPPORTED: tuple[type, ...] = (FactorAnalysis, PCA)


def is_supported(obj: Any) -> bool:
    """Whether ``obj`` is a FactorAnalysis or PCA instance (fitted or not)."""
    return isinstance(obj, SUPPORTED)


def estimator_name(obj: Any) -> str:
    """Fully qualified public class name, e.g. ``sklearn.decomposition.PCA``."""
    cls = type(obj)
    module = cls.__module__
    if module.startswith("sklearn.decomposition."):
        module = "sklearn.decomposition"
    return f"{module}.{cls.__qualname__}"


def _check_fitted(est: Any, source: str) -> None:
    try:
        check_is_fitted(est)
    except NotFittedError:
        raise ModelError(
            f"{source}: the {type(est).__name__} is not fitted; call fit() first"
        ) from None


def factor_analysis_model(
    est: FactorAnalysis, source: str = "FactorAnalysis"
) -> LinearGaussianLatentModel:
    """The linear-Gaussian model of a fitted :class:`~sklearn.decomposition.FactorAnalysis`.

    x = z @ components_ + mean_ + e, z ~ N(0, I_K), e ~ N(0, diag(noise_variance_)).
    The posterior covariance is full, so the latents are rotated into its
    eigenbasis (see :class:`LinearGaussianLatentModel`).

    Parameters
    ----------
    est : FactorAnalysis
        A fitted estimator.
    source : str
        Names the model in error messages.

    Returns
    -------
    LinearGaussianLatentModel

    References
    ----------
    .. [1] C. M. Bishop, "Pattern Recognition and Machine Learning", Springer
       2006, section 12.2.4.
    .. [2] D. Barber, "Bayesian Reasoning and Machine Learning", Cambridge
       University Press 2012, chapter 21.
    """
    _check_fitted(est, source)
    return LinearGaussianLatentModel.from_loading(
        est.components_, est.mean_, est.noise_variance_, source=source
    )


def pca_model(est: PCA, source: str = "PCA") -> LinearGaussianLatentModel:
    """The probabilistic-PCA model of a fitted :class:`~sklearn.decomposition.PCA`.

    As in scikit-learn's ``get_covariance``/``score_samples``, with
    sigma^2 = ``noise_variance_`` and lambda_k = ``explained_variance_``:
    x = z @ W + mean_ + e, W = diag(sqrt(max(lambda_k - sigma^2, 0))) @ components_,
    e ~ N(0, sigma^2 I). The rows of ``components_`` are orthonormal, so the
    posterior precision I + W W^T / sigma^2 = diag(lambda_k / sigma^2) is already
    diagonal: no rotation, latent k is principal component k, with posterior
    variance sigma^2 / lambda_k and mean sqrt(lambda_k - sigma^2) / lambda_k *
    components_[k] @ (x - mean_).

    Parameters
    ----------
    est : PCA
        A fitted estimator with ``whiten=False`` and fewer components than
        ``min(n_samples, n_features)`` (so that sigma^2 > 0).
    source : str
        Names the model in error messages.

    Returns
    -------
    LinearGaussianLatentModel

    Raises
    ------
    ModelError
        ``whiten=True`` (scikit-learn's ``score_samples`` then uses a covariance
        that is not that of the fitted model, scikit-learn issue #13898), or a
        zero noise variance (no density).

    References
    ----------
    .. [1] M. E. Tipping and C. M. Bishop, "Probabilistic principal component
       analysis", Journal of the Royal Statistical Society B 61(3), 1999.
    .. [2] C. M. Bishop, "Pattern Recognition and Machine Learning", Springer
       2006, section 12.2.1.
    """
    _check_fitted(est, source)
    if est.whiten:
        raise ModelError(
            f"{source}: PCA(whiten=True) is not supported: its score_samples uses a covariance "
            "that is not the fitted model's (scikit-learn issue #13898); refit with whiten=False "
            "(the probabilistic-PCA model is the same)"
        )
    sigma2 = float(est.noise_variance_)
    if not sigma2 > 0.0:
        raise ModelError(
            f"{source}: noise_variance_ is {sigma2}, so probabilistic PCA has no density; keep "
            f"fewer than min(n_samples, n_features) components (has {est.n_components_})"
        )
    ev = np.asarray(est.explained_variance_, dtype=np.float64)
    scale = np.sqrt(np.where(ev > sigma2, ev - sigma2, 0.0))
    loading = scale[:, None] * np.asarray(est.components_, dtype=np.float64)
    return LinearGaussianLatentModel.from_loading(loading, est.mean_, sigma2, source=source)


def linear_gaussian_model(est: Any, source: str | None = None) -> LinearGaussianLatentModel:
    """The exact linear-Gaussian model of a fitted FactorAnalysis or PCA.

    Parameters
    ----------
    est : FactorAnalysis or PCA
    source : str, optional
        Names the model in error messages (default: the class name).

    Raises
    ------
    ModelError
        Any other object, or an unfitted or unsupported configuration.
    """
    where = source or type(est).__name__
    if isinstance(est, FactorAnalysis):
        return factor_analysis_model(est, where)
    if isinstance(est, PCA):
        return pca_model(est, where)
    raise ModelError(
        f"{where}: the sklearn adapter audits fitted sklearn.decomposition.FactorAnalysis and "
        f"PCA only, got {type(est).__module__}.{type(est).__qualname__}"
    )


def estimator_attrs(est: Any, model: LinearGaussianLatentModel) -> dict[str, Any]:
    """Provenance for the report: class, parameters (JSON), versions, latent basis."""
    params = {k: v for k, v in sorted(est.get_params(deep=False).items())}
    rotated = not np.array_equal(model.rotation, np.eye(model.n_latent))
    return {
        "estimator": estimator_name(est),
        "estimator_params": json.dumps(params, default=repr, sort_keys=True),
        "sklearn_version": sklearn.__version__,
        "n_features": model.n_features,
        "n_components": model.n_latent,
        "posterior": "exact (linear-Gaussian conditioning)",
        "latent_basis": (
            "eigenbasis of the exact posterior covariance (z' = U^T z), so that it is diagonal"
            if rotated
            else "the estimator's components_ (the exact posterior is already diagonal)"
        ),
    }
