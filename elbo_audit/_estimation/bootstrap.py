"""Data uncertainty: a paired bootstrap over per-datapoint contributions.

Every term is a mean over data points of a per-datapoint contribution whose
integrand involves the aggregate posterior q(z) of the *whole* dataset. The
bootstrap holds q(z) fixed and resamples the contributions; it never resamples
mixture components (duplicated components bias ``index_code_mi`` down and
``marginal_kl`` up, by about 0.57 nats with sharp posteriors). See
docs/uncertainty.md for the estimand and the coverage study.

Why holding q(z) fixed is the right linearisation: for every term T(F) of the
decomposition, a functional of the distribution F of posterior parameters,
the influence function of data point n is exactly its contribution minus the
term, ``c_n - T``. The derivative through the mixture vanishes because
``E_q(z)[d log q(z)] = integral of d q(z) = 0`` (the same holds for the
marginals q(z_j)). So resampling the contributions with q(z) fixed is the
delta-method bootstrap of the plug-in term: first-order exact, and O(N) per
replicate instead of an O(N^2) pairwise pass.

Second order: when posteriors are about as sharp as the spacing between data
points, overlapping pairs move their ``index_code_mi`` contributions together
and the plain bootstrap standard error is up to sqrt(2) too small.
:func:`mixture_interaction` (one extra O(N^2 D) pass per model) and
:func:`interaction_adjusted_terms` correct the contributions that are
resampled (weight sqrt(2) - 1 on the measured interaction).

Pairing: one plan of resampling counts is used for every model, prior and term
of a run, so the replicate of a difference is the difference of replicates.

Memory: the plan never holds a (B, N) float64 matrix. Counts are generated in
blocks of ``_BLOCK`` replicates from seeds derived from the run's seed
(replicate b always comes from block ``b // _BLOCK``, so the first B
replicates are the same whatever the total), and kept as int32 only when the
whole matrix is small.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri

from .._model.streams import BOOTSTRAP
from .mc import TermEstimate

__all__ = [
    "CI_METHODS",
    "BootstrapPlan",
    "CIMethod",
    "acceleration",
    "bca_interval",
    "interval_from_replicates",
    "jackknife_means",
    "mc_interval",
    "percentile_interval",
    "replicates",
    "replicates_many",
    "term_acceleration",
    "term_interval",
    "term_jackknife",
]

CIMethod = Literal["percentile", "bca", "basic", "normal"]
CI_METHODS: tuple[str, ...] = ("percentile", "bca", "basic", "normal")

# Replicates per generated block; part of the definition of the plan (changing
# it changes every replicate of a given seed).
_BLOCK = 32
# Data points per chunk of the replicate sums (a 32 x 4096 float64 tile is 1 MiB).
_COLUMNS = 4096
# Materialise and cache the int32 counts when they take at most this many bytes.
_CACHE_BYTES = 64 * 2**20


class BootstrapPlan:
    """Resampling counts shared by every model, prior and term of a run.

    Replicate b resamples N data points with replacement: ``counts[b, n]`` is
    how often data point n appears (a multinomial(N, 1/N) vector).

    Parameters
    ----------
    n_points : int
        N, the number of data points.
    n_resamples : int
        B, the number of replicates.
    seed : int
        The run's seed; the counts come from the stream
        ``SeedSequence(seed, spawn_key=(2, block))``.
    """

    __slots__ = ("_cache", "n_points", "n_resamples", "seed")

    def __init__(self, n_points: int, n_resamples: int, seed: int) -> None:
        if int(n_points) < 1:
            raise ValueError(f"n_points must be at least 1, got {n_points}")
        if int(n_resamples) < 0:
            raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
        self.n_points = int(n_points)
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        self._cache: NDArray[np.int32] | None = None

    @classmethod
    def draw(cls, n_points: int, n_resamples: int, seed: int) -> BootstrapPlan:
        """The plan of a run (counts are generated lazily, deterministically)."""
        return cls(n_points, n_resamples, seed)

    def __repr__(self) -> str:
        return f"BootstrapPlan(n_points={self.n_points}, n_resamples={self.n_resamples}, seed={self.seed})"

    def _block(self, j: int) -> NDArray[np.int32]:
        n = self.n_points
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(BOOTSTRAP, j)))
        # row by row: the same stream as one (block, N) draw, without its
        # 16 N-byte index and count temporaries per replicate
        counts = np.empty((_BLOCK, n), dtype=np.int32)
        for row in range(_BLOCK):
            counts[row] = np.bincount(rng.integers(0, n, size=n, dtype=np.int64), minlength=n)
        return counts

    def blocks(self) -> Iterator[tuple[int, NDArray[np.int32]]]:
        """Yield ``(first_replicate, counts)`` with counts of shape (b, N), b <= 32."""
        if self._cache is not None:
            for start in range(0, self.n_resamples, _BLOCK):
                yield start, self._cache[start : start + _BLOCK]
            return
        for j, start in enumerate(range(0, self.n_resamples, _BLOCK)):
            stop = min(self.n_resamples, start + _BLOCK)
            yield start, self._block(j)[: stop - start]

    @property
    def counts(self) -> NDArray[np.int32]:
        """The whole (B, N) int32 count matrix (cached when at most 64 MiB)."""
        if self._cache is not None:
            return self._cache
        out = np.empty((self.n_resamples, self.n_points), dtype=np.int32)
        for start, c in self.blocks():
            out[start : start + c.shape[0]] = c
        if out.nbytes <= _CACHE_BYTES:
            self._cache = out
        return out


def _index_key(term: TermEstimate) -> bytes | None:
    if term.index is None:
        return None
    return np.asarray(term.index, dtype=np.int64).tobytes()


def replicates_many(terms: Sequence[TermEstimate], plan: BootstrapPlan) -> NDArray[np.float64]:
    """Bootstrap replicates of several terms' means in one pass over the plan.

    Parameters
    ----------
    terms : sequence of TermEstimate
        Terms with per-datapoint contributions (``pointwise``); terms on a
        subset of data points carry its ``index`` (repeats allowed: a point
        that appears r times counts r times).
    plan : BootstrapPlan

    Returns
    -------
    ndarray, shape (len(terms), B)
        Row t is the replicate ``sum_i w_b[index_i] c_i / sum_i w_b[index_i]``
        of term t (the plain resampled mean when ``index`` is None); NaN for a
        term that was not evaluated, or a replicate in which none of a
        subset's points was drawn.

    References
    ----------
    .. [1] B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap",
       Chapman & Hall, 1993, ch. 6 and 21 (the nonparametric delta method).
    """
    n_terms, b_total, n = len(terms), plan.n_resamples, plan.n_points
    out = np.full((n_terms, b_total), np.nan)
    groups: dict[bytes | None, list[int]] = {}
    for t, term in enumerate(terms):
        if term.pointwise is None or not term.evaluated:
            continue
        size = term.pointwise.shape[0]
        if term.index is None and size != n:
            raise ValueError(f"term has {size} contributions but the plan has {n} data points")
        if term.index is not None:
            idx = np.asarray(term.index)
            if idx.shape != (size,) or (size and (idx.min() < 0 or idx.max() >= n)):
                raise ValueError("term.index must give one data point in [0, N) per contribution")
        groups.setdefault(_index_key(term), []).append(t)
    if not groups or b_total == 0:
        return out
    prepared: list[tuple[list[int], NDArray[np.intp] | None, NDArray[np.float64]]] = []
    for key, members in groups.items():
        values = np.stack([np.asarray(terms[t].pointwise, dtype=np.float64) for t in members], axis=1)
        at = None if key is None else np.asarray(terms[members[0]].index, dtype=np.intp)
        prepared.append((members, at, values))
    for start, counts in plan.blocks():
        stop = start + counts.shape[0]
        for members, where, values in prepared:
            # one matrix-vector product per term, so that a term's replicates
            # do not depend on which other terms share the pass (bitwise)
            if where is None:
                w = counts
                total = np.float64(n)
            else:
                w = counts[:, where]
                total = w.sum(axis=1, dtype=np.float64)
            sums = np.zeros((len(members), w.shape[0]))
            # columns in cache-sized chunks, summed in chunk order: each term's
            # sum is the same whatever else shares the pass (and the float64
            # copy of the counts is one chunk, not B x N)
            for c0 in range(0, w.shape[1], _COLUMNS):
                wc = w[:, c0 : c0 + _COLUMNS].astype(np.float64)
                for col in range(len(members)):
                    sums[col] += wc @ values[c0 : c0 + _COLUMNS, col]
            for col, t in enumerate(members):
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[t, start:stop] = sums[col] / total
    return out


def replicates(term: TermEstimate, plan: BootstrapPlan) -> NDArray[np.float64]:
    """Bootstrap replicates of one term's mean, shape (B,) (NaN if not evaluated).

    See :func:`replicates_many`, which shares one pass over the plan among many
    terms.
    """
    return np.asarray(replicates_many([term], plan)[0], np.float64)


# ---------------------------------------------------------------------------
# jackknife and acceleration


def jackknife_means(pointwise: NDArray[np.float64]) -> NDArray[np.float64]:
    """Leave-one-out means ``(sum_m c_m - c_n) / (N - 1)`` of contributions, shape (N,)."""
    c = np.asarray(pointwise, dtype=np.float64)
    if c.size < 2:
        raise ValueError("the jackknife needs at least two contributions")
    return np.asarray((c.sum() - c) / (c.size - 1), np.float64)


def term_jackknife(term: TermEstimate, n_points: int | None = None) -> NDArray[np.float64]:
    """Leave-one-data-point-out estimates of a term (q(z) held fixed).

    For a term on a subset (``index``), leaving out a data point removes all of
    its contributions; data points outside the subset leave the estimate
    unchanged. Returns shape (n_points,) (N when ``index`` is None).
    """
    if term.pointwise is None:
        raise ValueError("the term has no per-datapoint contributions")
    c = np.asarray(term.pointwise, dtype=np.float64)
    if term.index is None:
        return jackknife_means(c)
    idx = np.asarray(term.index, dtype=np.intp)
    n = int(n_points) if n_points is not None else int(idx.max()) + 1
    sums = np.bincount(idx, weights=c, minlength=n)
    reps = np.bincount(idx, minlength=n).astype(np.float64)
    total, m = c.sum(), float(c.size)
    out = np.full(n, total / m)
    hit = reps > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out[hit] = (total - sums[hit]) / (m - reps[hit])
    return out


def acceleration(jackknife: NDArray[np.float64]) -> float:
    """BCa acceleration from leave-one-out estimates (Efron & Tibshirani eq. 14.15).

    ``a = sum d^3 / (6 (sum d^2)^{3/2})`` with ``d_i = mean(theta_(.)) - theta_(i)``;
    0 when the estimates do not vary.
    """
    jk = np.asarray(jackknife, dtype=np.float64)
    d = jk.mean() - jk
    ss = float(np.sum(d * d))
    if not np.isfinite(ss) or ss == 0.0:
        return 0.0
    return float(np.sum(d**3) / (6.0 * ss**1.5))


def term_acceleration(term: TermEstimate, n_points: int | None = None) -> float:
    """BCa acceleration of a term's mean of contributions (closed-form jackknife)."""
    if term.pointwise is None or not term.evaluated:
        return float("nan")
    if term.index is None:
        c = np.asarray(term.pointwise, dtype=np.float64)
        d = c - c.mean()  # proportional to mean(theta_(.)) - theta_(i)
        ss = float(np.sum(d * d))
        return 0.0 if ss == 0.0 else float(np.sum(d**3) / (6.0 * ss**1.5))
    return acceleration(term_jackknife(term, n_points))


# ---------------------------------------------------------------------------
# intervals


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1, got {level}")
    return level


def _finite(reps: NDArray[np.float64]) -> NDArray[np.float64]:
    r = np.asarray(reps, dtype=np.float64).ravel()
    return r[np.isfinite(r)]


def percentile_interval(reps: NDArray[np.float64], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval: the (1-level)/2 and (1+level)/2 quantiles of the replicates.

    Quantiles interpolate linearly (numpy's default, as scipy.stats.bootstrap).
    Non-finite replicates are ignored; (NaN, NaN) when none is finite.
    """
    alpha = (1.0 - _check_level(level)) / 2.0
    r = _finite(reps)
    if r.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(r, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bca_interval(
    reps: NDArray[np.float64], estimate: float, level: float = 0.95, accel: float = 0.0
) -> tuple[float, float]:
    """Bias-corrected and accelerated (BCa) interval.

    ``z0 = Phi^-1((#{r < estimate} + #{r <= estimate}) / 2B)`` from the
    replicates, and the acceleration ``accel`` from the jackknife (0 gives the
    bias-corrected percentile interval). The endpoints are the replicates'
    quantiles at ``Phi(z0 + (z0 + z) / (1 - accel (z0 + z)))`` for
    ``z = Phi^-1(alpha), Phi^-1(1 - alpha)``, as in scipy.stats.bootstrap.

    When the estimate lies outside the replicates (z0 infinite) the BCa
    interval is undefined; the percentile interval is returned with a
    RuntimeWarning. When the replicates do not vary the interval is the
    single value.

    References
    ----------
    .. [1] B. Efron, "Better bootstrap confidence intervals", JASA 82, 1987.
    .. [2] B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap",
       1993, ch. 14.3.
    """
    alpha = (1.0 - _check_level(level)) / 2.0
    r = _finite(reps)
    if r.size == 0 or not np.isfinite(estimate) or not np.isfinite(accel):
        return (float("nan"), float("nan"))
    spread = float(r.max() - r.min())
    if spread <= 1e-12 * max(1.0, abs(float(estimate))):
        lo, hi = min(float(r.min()), float(estimate)), max(float(r.max()), float(estimate))
        return lo, hi
    frac = (np.count_nonzero(r < estimate) + np.count_nonzero(r <= estimate)) / (2.0 * r.size)
    if frac <= 0.0 or frac >= 1.0:
        warnings.warn(
            "BCa interval undefined: the estimate lies outside every replicate; "
            "using the percentile interval",
            RuntimeWarning,
            stacklevel=2,
        )
        return percentile_interval(r, level)
    z0 = float(ndtri(frac))
    probs = []
    for z in (float(ndtri(alpha)), float(ndtri(1.0 - alpha))):
        num = z0 + z
        den = 1.0 - accel * num
        if den <= 0.0:  # beyond the range where the BCa transformation is monotone
            probs.append(1.0 if num > 0 else 0.0)
        else:
            probs.append(float(ndtr(z0 + num / den)))
    lo, hi = np.quantile(r, probs)
    return float(lo), float(hi)


def interval_from_replicates(
    reps: NDArray[np.float64],
    estimate: float,
    level: float = 0.95,
    method: str = "percentile",
    *,
    jackknife: NDArray[np.float64] | None = None,
    accel: float | None = None,
) -> tuple[float, float]:
    """A confidence interval from stored bootstrap replicates.

    Parameters
    ----------
    reps : ndarray, shape (B,)
        Replicates, e.g. ``xr.open_datatree(report)["replicates"][term]`` for
        one model and prior.
    estimate : float
        The term's estimate (the report's root variable).
    level : float
        Confidence level, e.g. 0.95.
    method : {"percentile", "bca", "basic", "normal"}
        ``percentile``: quantiles of the replicates. ``bca``: bias-corrected
        and accelerated (needs ``jackknife`` or ``accel``; without either the
        acceleration is 0, the bias-corrected percentile interval). ``basic``:
        ``2 estimate - `` the opposite quantiles. ``normal``: estimate +- z
        times the replicates' standard deviation.
    jackknife : ndarray, optional
        Leave-one-out estimates, for the BCa acceleration
        (:func:`term_jackknife`, :func:`jackknife_means`).
    accel : float, optional
        The BCa acceleration itself (e.g. the report's stored value).

    Returns
    -------
    (lower, upper)
    """
    level = _check_level(level)
    if method == "percentile":
        return percentile_interval(reps, level)
    if method == "bca":
        a = accel if accel is not None else (acceleration(jackknife) if jackknife is not None else 0.0)
        return bca_interval(reps, estimate, level, float(a))
    r = _finite(reps)
    if r.size == 0 or not np.isfinite(estimate):
        return (float("nan"), float("nan"))
    if method == "basic":
        lo, hi = percentile_interval(r, level)
        return 2.0 * float(estimate) - hi, 2.0 * float(estimate) - lo
    if method == "normal":
        half = float(ndtri(0.5 + level / 2.0)) * (float(np.std(r, ddof=1)) if r.size > 1 else math.nan)
        return float(estimate) - half, float(estimate) + half
    raise ValueError(f"unknown interval method {method!r}; choose from {', '.join(CI_METHODS)}")


def term_interval(
    term: TermEstimate,
    reps: NDArray[np.float64],
    level: float = 0.95,
    method: str = "percentile",
    n_points: int | None = None,
) -> tuple[float, float]:
    """The data interval of a term from its replicates (acceleration computed here)."""
    if not term.evaluated:
        return (float("nan"), float("nan"))
    accel = term_acceleration(term, n_points) if method == "bca" and term.pointwise is not None else None
    return interval_from_replicates(reps, term.value, level, method, accel=accel)


def mc_interval(term: TermEstimate, level: float = 0.95) -> tuple[float, float]:
    """Monte Carlo interval ``value +- z se``: covers the exact value for THIS dataset.

    It describes only the error from sampling z (the dataset held fixed), not
    the variability between datasets.
    """
    half = float(ndtri(0.5 + _check_level(level) / 2.0)) * term.se
    return term.value - half, term.value + half
