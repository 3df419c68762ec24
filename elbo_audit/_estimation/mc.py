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

Terms evaluated on a random subset of m of the N data points (one draw each)
have two sources of Monte Carlo error: which points were chosen (a simple
random sample without replacement) and the draws. Their variance is
``(1 - m/N) S_mu^2 / m + mean(sigma_n^2) / m``, estimated without bias by
``[(1 - m/N) s^2 + (m/N) sigma^2_pilot] / m`` from the sample variance ``s^2``
of the m values and a pilot estimate of the within-point variance; it is the
stratified estimate when m = N and the i.i.d. one when m << N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import final

import numpy as np
from numpy.typing import NDArray

__all__ = ["TermEstimate", "difference", "stratified_estimate", "subset_estimate"]


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


def difference(a: TermEstimate, b: TermEstimate, estimator: str) -> TermEstimate:
    """``a - b``, per data point where both have contributions, with independent Monte Carlo errors.

    The standard error is hypot(se_a, se_b): the two come from independent
    random streams, so their Monte Carlo errors add in quadrature.
    """
    point = None
    if a.pointwise is not None and b.pointwise is not None:
        point = a.pointwise - b.pointwise
    return TermEstimate(a.value - b.value, float(math.hypot(a.se, b.se)), point, estimator)


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


def subset_estimate(
    values: NDArray[np.float64],
    pilot_pairs: tuple[NDArray[np.float64], NDArray[np.float64]] | None,
    estimator: str,
    index: NDArray[np.intp],
    n: int,
) -> TermEstimate:
    """Mean and Monte Carlo standard error of one draw on each of m random points of N.

    Parameters
    ----------
    values : ndarray, shape (m,)
        One draw of the integrand for each data point of ``index``, a simple
        random sample (without replacement) of the N data points.
    pilot_pairs : (ndarray, ndarray), optional
        Two independent draws for some of those points, for the within-point
        variance; without them the i.i.d. variance ``s^2 / m`` is used
        (conservative when m is close to N).
    estimator : str
    index : ndarray of int, shape (m,)
    n : int
        Number of data points N.

    Returns
    -------
    TermEstimate
        ``index`` is kept only when m < N.

    References
    ----------
    .. [1] W. G. Cochran, "Sampling Techniques", 3rd ed., Wiley, 1977,
       ch. 10 (two-stage sampling, one second-stage unit per first-stage unit).
    """
    m = values.size
    value = float(values.mean()) if m else float("nan")
    if m < 2:
        se = float("nan")
    else:
        s2 = float(values.var(ddof=1))
        if pilot_pairs is not None and pilot_pairs[0].size > 0:
            f1, f2 = pilot_pairs
            within = float(np.mean(0.5 * (f1 - f2) ** 2))
        else:
            within = s2
        frac = m / n
        se = float(np.sqrt(max(0.0, (1.0 - frac) * s2 + frac * within) / m))
    full = index.size == n
    return TermEstimate(value, se, values, estimator, None if full else index)
