"""Example factories for a one-command audit of scikit-learn models on digits.

    elbo-audit run --model elbo_audit_sklearn.examples:digits_factor_analysis --data digits

Both fit in about a second and are deterministic. The fits run with
single-threaded BLAS: on a 1797 x 64 matrix threads gain nothing, and on a busy
machine OpenBLAS's spinning threads made the same fit 15-30x slower (measured:
57 s against 3.4 s with other work on both cores).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, FactorAnalysis
from threadpoolctl import threadpool_limits

__all__ = ["digits_factor_analysis", "digits_pca"]


def _digits() -> np.ndarray:
    return np.ascontiguousarray(load_digits().data, dtype=np.float64)


def digits_factor_analysis(n_components: int = 10) -> FactorAnalysis:
    """Factor analysis with ``n_components`` factors fitted on all of digits.

    Parameters
    ----------
    n_components : int

    Returns
    -------
    FactorAnalysis
        Fitted with ``random_state=0`` (deterministic).

    References
    ----------
    .. [1] C. M. Bishop, "Pattern Recognition and Machine Learning", Springer
       2006, section 12.2.4.
    """
    model = FactorAnalysis(n_components=int(n_components), svd_method="lapack", random_state=0)
    with threadpool_limits(limits=1, user_api="blas"):
        return model.fit(_digits())


def digits_pca(n_components: int = 10) -> PCA:
    """Probabilistic PCA with ``n_components`` components fitted on all of digits.

    Parameters
    ----------
    n_components : int

    Returns
    -------
    PCA
        Fitted with the exact ``svd_solver="full"`` and ``whiten=False``.

    References
    ----------
    .. [1] M. E. Tipping and C. M. Bishop, "Probabilistic principal component
       analysis", Journal of the Royal Statistical Society B 61(3), 1999.
    """
    model = PCA(n_components=int(n_components), svd_solver="full", whiten=False)
    with threadpool_limits(limits=1, user_api="blas"):
        return model.fit(_digits())
