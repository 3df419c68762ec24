"""Data uncertainty: a paired bootstrap over per-datapoint contributions.

Every term is a mean over data points of a per-datapoint contribution whose
integrand involves the aggregate posterior q(z) of the *whole* dataset. The
bootstrap holds q(z) fixed and resamples the contributions; it never resamples
mixture components (duplicated components bias ``index_code_mi`` and
``marginal_kl`` upwards). One matrix of resampling indices is drawn per run and
shared by every model and prior, so differences of replicates are paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

import numpy as np
from numpy.typing import NDArray

from ._mc import TermEstimate

__all__ = ["BootstrapPlan", "replicates", "percentile_interval"]


@final
@dataclass(frozen=True)
class BootstrapPlan:
    """Resampling weights shared by every model and prior of a run.

    Attributes
    ----------
    counts : ndarray of int, shape (B, N)
        How often each data point appears in each replicate.
    """

    counts: NDArray[np.int32]

    @classmethod
    def draw(cls, n_points: int, n_resamples: int, seed: int) -> BootstrapPlan:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
        counts = rng.multinomial(n_points, np.full(n_points, 1.0 / n_points), size=n_resamples)
        return cls(counts.astype(np.int32))

    @property
    def n_resamples(self) -> int:
        return int(self.counts.shape[0])


def replicates(term: TermEstimate, plan: BootstrapPlan) -> NDArray[np.float64]:
    """Bootstrap replicates of a term's mean, shape (B,) (NaN if not evaluated).

    For terms estimated on a subset of data points (``term.index``) the
    replicate is the weighted mean over the subset's resampled counts.

    References
    ----------
    .. [1] B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap",
       Chapman & Hall, 1993, ch. 6.
    """
    if term.pointwise is None or not term.evaluated:
        return np.full(plan.n_resamples, np.nan)
    if term.index is None:
        counts = plan.counts
    else:
        counts = plan.counts[:, term.index]
    weights = counts.astype(np.float64)
    total = weights.sum(axis=1)
    total[total == 0] = np.nan
    return (weights @ term.pointwise) / total


def percentile_interval(reps: NDArray[np.float64], level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates at confidence ``level``."""
    if not np.isfinite(reps).any():
        return (float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(reps, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
