"""Monte Carlo means and their standard errors for per-datapoint designs.

Every term of the decomposition is an average over data points of a
per-datapoint expectation, estimated with ``k`` independent draws of z for
every data point (a stratified design). With the dataset held fixed, the
variance of such an estimate is ``sum_n sigma_n^2 / (k N^2)``, where
``sigma_n^2`` is the variance of one draw for data point n. It is estimated

* from the within-point sample variances when ``k >= 2``;
* from a pilot of two independent draws on a random subset of data points
  when ``k == 1``: ``(f1 - f2)^2 / 2`` is unbiased for ``sigma_n^2``.

The naive ``std(f) / sqrt(N k)`` would add the between-point spread, which is
not Monte Carlo error (the dataset is fixed), and overstate the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

import numpy as np
from numpy.typing import NDArray

__all__ = ["TermEstimate", "stratified_estimate"]


@final
@dataclass(frozen=True)
class TermEstimate:
    """One term of the decomposition, in nats per data point.

    Attributes
    ----------
    value : float
        The estimate (NaN when not evaluated).
    se : float
        Monte Carlo standard error with the dataset held fixed (0 for closed forms).
    pointwise : ndarray, shape (N,) or None
        Per-datapoint contributions whose mean is ``value`` (for the bootstrap).
    index : ndarray of int or None
        Data points the pointwise values belong to when only a subset was used.
    estimator : str
        How the term was computed, for the report's ``estimator`` attribute.
    """

    value: float
    se: float
    pointwise: NDArray[np.float64] | None
    estimator: str
    index: NDArray[np.intp] | None = None

    @property
    def evaluated(self) -> bool:
        return bool(np.isfinite(self.value))

    @classmethod
    def not_evaluated(cls, why: str) -> TermEstimate:
        return cls(float("nan"), float("nan"), None, f"not evaluated: {why}")


def stratified_estimate(
    f: NDArray[np.float64],
    pilot_pairs: tuple[NDArray[np.float64], NDArray[np.float64]] | None,
    estimator: str,
    index: NDArray[np.intp] | None = None,
) -> TermEstimate:
    """Mean and Monte Carlo standard error of a stratified design.

    Parameters
    ----------
    f : ndarray, shape (N, k)
        ``k`` independent draws of the integrand for each of N data points.
    pilot_pairs : (ndarray, ndarray), optional
        Two independent draws ``(f1, f2)`` for a random subset of data points,
        used for the variance when ``k == 1``.
    estimator : str
        Description stored with the result.

    Returns
    -------
    TermEstimate

    References
    ----------
    .. [1] A. B. Owen, "Monte Carlo theory, methods and examples", 2013,
       ch. 8.4 (stratified sampling and its variance estimate).
    """
    n, k = f.shape
    pointwise = f.mean(axis=1)
    value = float(pointwise.mean())
    if k >= 2:
        within = f.var(axis=1, ddof=1)
        se = float(np.sqrt(within.sum() / k) / n)
    elif pilot_pairs is not None and pilot_pairs[0].size > 0:
        f1, f2 = pilot_pairs
        mean_var = float(np.mean(0.5 * (f1 - f2) ** 2))
        se = float(np.sqrt(mean_var / n))
    else:  # conservative: includes the between-point spread
        se = float(f.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return TermEstimate(value, se, pointwise, estimator, index)
