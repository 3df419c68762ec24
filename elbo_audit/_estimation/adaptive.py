"""Adaptive Monte Carlo: add independent sweeps until every standard error meets a target.

A *sweep* is one call of :func:`elbo_audit._estimation.estimators.decompose_kl` (or of a
reconstruction estimator) with its own random stream. Sweeps are independent
given the dataset, so they pool exactly:

* stratified terms (``index_code_mi``, ``marginal_kl``, a Monte Carlo
  ``avg_kl``, ``decomposition_residual``; ``total_correlation`` and
  ``dimwise_kl`` when they use every data point): the pooled contribution of
  data point n is the draw-weighted mean ``sum_j k_j c_jn / K`` over sweeps,
  ``K = sum_j k_j``, and the Monte Carlo variance uses the pooled
  within-point sum of squares

      SS = sum_j (k_j - 1) k_j N^2 se_j^2 + sum_j k_j sum_n (c_jn - c_n)^2,
      se^2 = SS / ((K - 1) K N^2),

  which equals what :func:`elbo_audit._estimation.mc.stratified_estimate` gives on all
  K draws at once (the first part recovers each sweep's within-point sum of
  squares from its standard error; sweeps with k_j = 1 contribute only
  through the second part, so a single-draw pilot is superseded);
* terms on a random subset of data points (``index`` given): all draws are
  concatenated (a point drawn twice counts twice, see
  :func:`elbo_audit._estimation.bootstrap.replicates_many`) and
  ``se = sqrt(sum_j m_j^2 se_j^2) / sum_j m_j``;
* closed forms (``se == 0``, e.g. ``avg_kl`` under a Gaussian prior) and
  terms that are zero by construction are averaged and keep ``se = 0``.

The first sweep of a seed uses exactly the stream of a non-adaptive run
(``SeedSequence(seed, spawn_key=(purpose,))``), so one sweep reproduces it;
sweep j >= 1 uses ``spawn_key=(purpose, j)``. All priors share each sweep's
stream (common random numbers).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, final

import numpy as np

from .._kernels.mixture import Engine
from .._kernels.numpy_backend import Form, NumpyBackend
from .._model.families import DiagonalGaussian
from .._model.protocols import Prior
from .._reporting import SILENT, Reporter
from .estimators import KLDecomposition, decompose_from_sweep
from .mc import TermEstimate
from .sweep import Sweep, draw_sweep

__all__ = [
    "AdaptiveRecord",
    "decompose_kl_to_target",
    "decompose_priors_to_target",
    "estimate_to_target",
    "merge_decompositions",
    "pool_stratified",
    "pool_subsets",
    "sweep_rng",
]

# Terms of a KLDecomposition drawn once per data point (not samples_per_point times).
_ONE_DRAW_TERMS = ("total_correlation", "dimwise_kl")


@final
@dataclass(frozen=True)
class AdaptiveRecord:
    """What an adaptive run did, for the report's attributes.

    Attributes
    ----------
    target_se : float
        The requested Monte Carlo standard error (nats).
    achieved_se : dict
        ``{prior: {term: se}}`` after the last sweep (a single key ``""`` for
        a run without priors, e.g. reconstruction).
    sweeps : int
    samples_per_point : int
        Draws of z per data point pooled over all sweeps.
    reached : bool
        Whether every term's standard error is at most ``target_se``.
    stopped_by : str
        ``"target"``, ``"max_seconds"`` or ``"max_samples_per_point"``.
    seconds : float
        Wall-clock time of all sweeps.
    """

    target_se: float
    achieved_se: dict[str, dict[str, float]]
    sweeps: int
    samples_per_point: int
    reached: bool
    stopped_by: str
    seconds: float

    def as_attrs(self, prefix: str = "adaptive_") -> dict[str, Any]:
        """netCDF-safe attributes (numbers, strings, 0/1, JSON)."""
        return {
            f"{prefix}target_se": float(self.target_se),
            f"{prefix}achieved_se": json.dumps(self.achieved_se, sort_keys=True),
            f"{prefix}sweeps": int(self.sweeps),
            f"{prefix}samples_per_point": int(self.samples_per_point),
            f"{prefix}reached": int(self.reached),
            f"{prefix}stopped_by": self.stopped_by,
            f"{prefix}seconds": float(self.seconds),
        }


# ---------------------------------------------------------------------------
# pooling


def _pooled_estimator(parts: Sequence[TermEstimate], draws: int) -> str:
    first = parts[0].estimator
    if len(parts) == 1:
        return first
    return f"{first}; pooled over {len(parts)} independent sweeps ({draws} draws per data point)"


def pool_stratified(parts: Sequence[TermEstimate], draws: Sequence[int]) -> TermEstimate:
    """Pool independent stratified estimates of one term on all N data points.

    Parameters
    ----------
    parts : sequence of TermEstimate
        One per sweep, each with ``pointwise`` of shape (N,) (the mean of its
        ``k_j`` draws per point) and its standard error.
    draws : sequence of int
        ``k_j``, the draws per data point of each sweep.

    Returns
    -------
    TermEstimate
        Pointwise means weighted by draws; standard error from the pooled
        within-point variance (module docstring). Terms with ``se == 0`` in
        every sweep (closed forms) keep ``se = 0``.
    """
    if len(parts) != len(draws) or not parts:
        raise ValueError("need one draw count per part, and at least one part")
    if not all(p.evaluated for p in parts):
        return parts[0]
    if len(parts) == 1:
        return parts[0]
    if any(p.pointwise is None or p.index is not None for p in parts):
        raise ValueError("pool_stratified needs per-datapoint contributions on all data points")
    k = np.asarray(draws, dtype=np.float64)
    if np.any(k < 1):
        raise ValueError("draws per data point must be at least 1")
    big_k = float(k.sum())
    c = np.stack([np.asarray(p.pointwise, dtype=np.float64) for p in parts])  # (J, N)
    n = c.shape[1]
    pooled = (k[:, None] * c).sum(axis=0) / big_k
    value = float(pooled.mean())
    ses = np.array([p.se for p in parts], dtype=np.float64)
    if np.all(ses == 0.0):
        se = 0.0
    else:
        within = float(np.sum((k - 1.0) * k * (n * ses) ** 2))
        between = float(np.sum(k[:, None] * (c - pooled) ** 2))
        se = math.sqrt((within + between) / ((big_k - 1.0) * big_k)) / n
    return TermEstimate(value, se, pooled, _pooled_estimator(parts, int(big_k)), None)


def pool_subsets(parts: Sequence[TermEstimate], n_points: int) -> TermEstimate:
    """Pool independent estimates on random subsets of data points (one draw per point).

    All draws are kept: ``pointwise`` and ``index`` are concatenated (sorted by
    data point; a point drawn in two sweeps appears twice), the value is the
    mean of every draw and ``se = sqrt(sum_j m_j^2 se_j^2) / sum_j m_j``.
    """
    if not parts:
        raise ValueError("need at least one part")
    if not all(p.evaluated for p in parts) or len(parts) == 1:
        return parts[0]
    if any(p.pointwise is None or p.index is None for p in parts):
        raise ValueError("pool_subsets needs per-datapoint contributions with an index")
    values = np.concatenate([np.asarray(p.pointwise, dtype=np.float64) for p in parts])
    index = np.concatenate([np.asarray(p.index, dtype=np.intp) for p in parts])
    if index.size and (index.min() < 0 or index.max() >= n_points):
        raise ValueError("index out of range")
    order = np.argsort(index, kind="stable")
    m = np.array([p.pointwise.shape[0] for p in parts], dtype=np.float64)  # type: ignore[union-attr]
    se = math.sqrt(float(np.sum((m * np.array([p.se for p in parts])) ** 2))) / float(m.sum())
    how = f"{parts[0].estimator}; pooled over {len(parts)} independent sweeps ({int(m.sum())} outer samples)"
    return TermEstimate(float(values.mean()), se, values[order], how, index[order])


def _pool_term(name: str, parts: Sequence[TermEstimate], k: Sequence[int], n: int) -> TermEstimate:
    if not all(p.evaluated for p in parts):
        return parts[0]
    if parts[0].index is not None:
        return pool_subsets(parts, n)
    draws = [1] * len(parts) if name in _ONE_DRAW_TERMS else list(k)
    return pool_stratified(parts, draws)


def merge_decompositions(parts: Sequence[KLDecomposition]) -> KLDecomposition:
    """Pool independent :func:`decompose_kl` results for one model and prior.

    ``total_correlation`` and ``dimwise_kl`` use one draw per outer sample in
    each sweep; the other Monte Carlo terms ``samples_per_point`` draws.
    """
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    if any(p.n_points != first.n_points for p in parts):
        raise ValueError("sweeps of one decomposition must share the data points")
    if len(parts) == 1:
        return first
    k = [p.samples_per_point for p in parts]
    pooled = {
        name: _pool_term(name, [p.terms()[name] for p in parts], k, first.n_points)
        for name in first.terms()
    }
    return replace(
        first,
        **pooled,  # type: ignore[arg-type]  # the term fields, by name
        samples_per_point=int(sum(k)),
        marginal_samples=int(sum(p.marginal_samples for p in parts)),
    )


# ---------------------------------------------------------------------------
# the adaptive loop


def _base_sequence(seed: int | np.random.SeedSequence, purpose: int) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(int(seed), spawn_key=(int(purpose),))


def sweep_rng(seed: int | np.random.SeedSequence, sweep: int, purpose: int = 0) -> np.random.Generator:
    """The random stream of sweep ``sweep`` (0: the non-adaptive run's own stream)."""
    base = _base_sequence(seed, purpose)
    if sweep == 0:
        return np.random.default_rng(base)
    seq = np.random.SeedSequence(base.entropy, spawn_key=tuple(base.spawn_key) + (int(sweep),))
    return np.random.default_rng(seq)


def _worst(ses: Mapping[str, Mapping[str, float]]) -> float:
    vals = [s for d in ses.values() for s in d.values() if np.isfinite(s)]
    return max(vals) if vals else 0.0


def _run(
    sweep: Callable[[np.random.Generator, int], Any],
    pool: Callable[[list[Any]], Mapping[str, Mapping[str, TermEstimate]]],
    *,
    target_se: float,
    seed: int | np.random.SeedSequence,
    purpose: int,
    samples_per_sweep: int,
    max_seconds: float | None,
    max_samples_per_point: int | None,
    terms: Sequence[str] | None,
    clock: Callable[[], float],
) -> tuple[list[Any], Mapping[str, Mapping[str, TermEstimate]], AdaptiveRecord]:
    if not target_se > 0:
        raise ValueError(f"target_se must be positive, got {target_se}")
    if samples_per_sweep < 1:
        raise ValueError("samples_per_sweep must be at least 1")
    if max_samples_per_point is not None and max_samples_per_point < samples_per_sweep:
        raise ValueError("max_samples_per_point must be at least samples_per_sweep")
    if max_seconds is None and max_samples_per_point is None:
        raise ValueError("give a budget: max_seconds and/or max_samples_per_point")
    cap = max_samples_per_point if max_samples_per_point is not None else 2**62
    start = clock()
    results: list[Any] = []
    total_k = 0
    per_k_seconds: list[float] = []
    pooled: Mapping[str, Mapping[str, TermEstimate]] = {}
    stopped_by = "target"
    while True:
        # size of the next sweep: enough draws for the stratified terms to
        # reach the target (se ~ 1/sqrt(K)), at most doubling the draws so far
        k_next = samples_per_sweep
        if results:
            ratio = _worst(_ses(pooled, terms, stratified_only=True)) / target_se
            if ratio > 1.0:
                want = math.ceil(total_k * (ratio * ratio - 1.0) * 1.05)
                k_next = max(samples_per_sweep, min(want, total_k))
            k_next = min(k_next, cap - total_k)
            if max_seconds is not None:
                left = max_seconds - (clock() - start)
                per_k = max(per_k_seconds)
                fit = int(left // per_k) if per_k > 0 else k_next
                if fit < 1:
                    stopped_by = "max_seconds"
                    break
                k_next = min(k_next, fit)
        t0 = clock()
        results.append(sweep(sweep_rng(seed, len(results), purpose), k_next))
        per_k_seconds.append((clock() - t0) / k_next)
        total_k += k_next
        pooled = pool(results)
        if _worst(_ses(pooled, terms)) <= target_se:
            stopped_by = "target"
            break
        if total_k >= cap:
            stopped_by = "max_samples_per_point"
            break
        if max_seconds is not None and clock() - start >= max_seconds:
            stopped_by = "max_seconds"
            break
    ses = _ses(pooled, terms)
    record = AdaptiveRecord(
        target_se=float(target_se),
        achieved_se={p: dict(d) for p, d in ses.items()},
        sweeps=len(results),
        samples_per_point=int(total_k),
        reached=_worst(ses) <= target_se,
        stopped_by=stopped_by,
        seconds=float(clock() - start),
    )
    return results, pooled, record


def _ses(
    pooled: Mapping[str, Mapping[str, TermEstimate]],
    terms: Sequence[str] | None,
    stratified_only: bool = False,
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for prior, by_term in pooled.items():
        out[prior] = {
            name: float(t.se)
            for name, t in by_term.items()
            if t.evaluated
            and (terms is None or name in terms)
            and not (stratified_only and (name in _ONE_DRAW_TERMS or t.index is not None))
        }
    return out


def decompose_priors_to_target(
    posteriors: DiagonalGaussian,
    priors: Mapping[str, Prior],
    *,
    target_se: float,
    seed: int | np.random.SeedSequence = 0,
    max_seconds: float | None = None,
    max_samples_per_point: int | None = None,
    samples_per_sweep: int = 1,
    variance_points: int = 1024,
    marginal_samples: int = 2048,
    form: Form = "gemm64",
    terms: Sequence[str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    engine: Engine | None = None,
    interaction: bool = False,
    on_sweep: Callable[[Sweep], None] | None = None,
    reporter: Reporter = SILENT,
) -> tuple[dict[str, KLDecomposition], AdaptiveRecord]:
    """Run :func:`decompose_kl` sweeps for several priors until every se <= target_se.

    Every prior sees the same draws in each sweep (common random numbers), and
    sweeps continue until every evaluated term of every prior has a Monte
    Carlo standard error at most ``target_se``, or a budget runs out.

    Parameters
    ----------
    posteriors : DiagonalGaussian
    priors : mapping of str to Prior
    target_se : float
        Target Monte Carlo standard error, nats per data point.
    seed : int or SeedSequence
        With an int, sweep 0 uses the stream ``SeedSequence(seed,
        spawn_key=(0,))`` of a non-adaptive audit; sweep j uses
        ``spawn_key=(0, j)``.
    max_seconds : float, optional
        Wall-clock budget. No sweep is started that the measured time per draw
        says would not finish in it (the first sweep always runs).
    max_samples_per_point : int, optional
        Budget of draws of z per data point, summed over sweeps.
    samples_per_sweep : int
        Draws per data point of the first sweep; later sweeps are sized from
        the remaining gap (at most doubling the total so far).
    variance_points, marginal_samples, form
        As for :func:`decompose_kl`, per sweep.
    terms : sequence of str, optional
        The terms that must meet the target (default: every evaluated term).
    engine : Engine, optional
        Backend, precision and device of the kernels (numpy with ``form``
        when omitted).
    interaction : bool
        Compute the bootstrap's interaction sums in the first sweep.
    on_sweep : callable, optional
        Called with each :class:`~elbo_audit._estimation.sweep.Sweep`.
    reporter : Reporter

    Returns
    -------
    (dict of prior name to KLDecomposition, AdaptiveRecord)
    """
    names = list(priors)
    eng = engine or Engine(NumpyBackend(form))
    done = [0]

    def sweep(rng: np.random.Generator, k: int) -> dict[str, KLDecomposition]:
        # one sweep of draws and log q(z) for every prior (common random numbers)
        sw = draw_sweep(
            posteriors, rng, engine=eng, samples_per_point=k, variance_points=variance_points,
            marginal_samples=marginal_samples, interaction=interaction and done[0] == 0,
            reporter=reporter,
        )
        done[0] += 1
        if on_sweep is not None:
            on_sweep(sw)
        return {name: decompose_from_sweep(sw, posteriors, priors[name], eng) for name in names}

    def pool(results: list[dict[str, KLDecomposition]]) -> dict[str, dict[str, TermEstimate]]:
        return {name: merge_decompositions([r[name] for r in results]).terms() for name in names}

    results, _, record = _run(
        sweep,
        pool,
        target_se=target_se,
        seed=seed,
        purpose=0,
        samples_per_sweep=samples_per_sweep,
        max_seconds=max_seconds,
        max_samples_per_point=max_samples_per_point,
        terms=terms,
        clock=clock,
    )
    merged = {name: merge_decompositions([r[name] for r in results]) for name in names}
    return merged, record


def decompose_kl_to_target(
    posteriors: DiagonalGaussian,
    prior: Prior,
    *,
    target_se: float,
    seed: int | np.random.SeedSequence = 0,
    max_seconds: float | None = None,
    max_samples_per_point: int | None = None,
    **kwargs: Any,
) -> tuple[KLDecomposition, AdaptiveRecord]:
    """:func:`decompose_priors_to_target` for a single prior (record key ``"prior"``)."""
    merged, record = decompose_priors_to_target(
        posteriors,
        {"prior": prior},
        target_se=target_se,
        seed=seed,
        max_seconds=max_seconds,
        max_samples_per_point=max_samples_per_point,
        **kwargs,
    )
    return merged["prior"], record


def estimate_to_target(
    sweep: Callable[[np.random.Generator, int], TermEstimate],
    *,
    target_se: float,
    seed: int | np.random.SeedSequence = 0,
    purpose: int = 1,
    samples_per_sweep: int = 2,
    max_seconds: float | None = None,
    max_samples_per_point: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[TermEstimate, AdaptiveRecord]:
    """Adaptive sweeps of one stratified Monte Carlo term, e.g. ``reconstruction``.

    ``sweep(rng, k)`` must return a stratified estimate with ``k`` independent
    draws per data point on all N points (as ``reconstruction_term`` does):
    ``lambda rng, k: reconstruction_term(decoder, x, q, rng, k, batch_size, name)``.
    With an int ``seed``, sweep 0 uses ``SeedSequence(seed, spawn_key=(purpose,))``
    (purpose 1 is the reconstruction stream of an audit).
    """
    draws: list[int] = []

    def one(rng: np.random.Generator, k: int) -> TermEstimate:
        draws.append(k)
        return sweep(rng, k)

    def pool(results: list[TermEstimate]) -> dict[str, dict[str, TermEstimate]]:
        return {"": {"term": pool_stratified(results, draws[: len(results)])}}

    _results, pooled, record = _run(
        one,
        pool,
        target_se=target_se,
        seed=seed,
        purpose=purpose,
        samples_per_sweep=samples_per_sweep,
        max_seconds=max_seconds,
        max_samples_per_point=max_samples_per_point,
        terms=None,
        clock=clock,
    )
    return pooled[""]["term"], record
