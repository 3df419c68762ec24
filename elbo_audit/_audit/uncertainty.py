"""Data intervals of a run: one paired bootstrap over every model, prior and term.

The bootstrap resamples per-datapoint contributions with q(z) held fixed
(:mod:`elbo_audit._estimation.bootstrap`); one plan of resampling counts is
shared by every cell of a run, so the replicate of a difference is the
difference of replicates. The contributions of ``index_code_mi`` and
``marginal_kl`` are adjusted for the pairwise interaction through q(z) with
the sums each :class:`~elbo_audit._audit.audit.ModelAudit` carries from its
sweep (:mod:`elbo_audit._estimation.interaction`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import final

import numpy as np
from numpy.typing import NDArray

from .._errors import UsageError
from .._estimation.bootstrap import (
    CI_METHODS,
    BootstrapPlan,
    replicates_many,
    term_acceleration,
    term_interval,
)
from .._estimation.interaction import interaction_adjusted_terms
from .._estimation.mc import TermEstimate
from .audit import AuditSettings, ModelAudit

__all__ = ["CellInterval", "RunIntervals", "bootstrap_audits"]


@final
@dataclass(frozen=True)
class CellInterval:
    """The bootstrap of one term of one model under one prior."""

    replicates: NDArray[np.float64]
    interval: NDArray[np.float64]
    acceleration: float


@final
@dataclass(frozen=True)
class RunIntervals:
    """Every cell's bootstrap, keyed by (model, prior, term)."""

    n_resamples: int
    confidence_level: float
    ci_method: str
    interaction_adjust: bool
    cells: Mapping[tuple[str, str, str], CellInterval]


def bootstrap_audits(
    audits: Sequence[ModelAudit],
    settings: AuditSettings,
    *,
    prior_families: Mapping[tuple[str, str], str] | None = None,
) -> RunIntervals:
    """Bootstrap intervals for every term of every audit, from one paired plan.

    Parameters
    ----------
    audits : sequence of ModelAudit
        All on the same N data points.
    settings : AuditSettings
        ``n_resamples``, ``confidence_level``, ``ci_method``,
        ``interaction_adjust`` and ``seed``.
    prior_families : mapping, optional
        (model, prior label) -> the prior's own name; the aggregate posterior
        (``"aggregate_posterior"``) takes the adjustment of its own identities.

    Returns
    -------
    RunIntervals

    References
    ----------
    .. [1] B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap",
       Chapman & Hall, 1993.
    .. [2] W. Hoeffding, "A class of statistics with asymptotically normal
       distribution", Annals of Mathematical Statistics 19, 1948.
    """
    if settings.ci_method not in CI_METHODS:
        raise UsageError(
            f"unknown CI method {settings.ci_method!r}; choose from {', '.join(CI_METHODS)}"
        )
    b = settings.n_resamples
    out = RunIntervals(b, settings.confidence_level, settings.ci_method, settings.interaction_adjust, {})
    if b <= 0 or not audits:
        return out
    n = audits[0].n_points
    if any(a.n_points != n for a in audits):
        raise UsageError("all models of one run must be audited on the same data points")
    plan = BootstrapPlan.draw(n, b, settings.seed)
    keys: list[tuple[str, str, str]] = []
    ests: list[TermEstimate] = []
    for a in audits:
        adjust = settings.interaction_adjust and a.interaction is not None
        for p, pa in a.by_prior.items():
            terms = pa.terms()
            boot = terms
            if adjust:
                assert a.interaction is not None
                family = (prior_families or {}).get((a.model, p), p)
                boot = interaction_adjusted_terms(
                    terms, a.interaction, prior_is_aggregate=family == "aggregate_posterior"
                )
            for t in terms:
                keys.append((a.model, p, t))
                ests.append(boot[t])
    cells: dict[tuple[str, str, str], CellInterval] = {}
    for key, est, reps in zip(keys, ests, replicates_many(ests, plan), strict=True):
        ci = term_interval(est, reps, settings.confidence_level, settings.ci_method, n_points=n)
        cells[key] = CellInterval(reps, np.asarray(ci, np.float64), term_acceleration(est, n))
    return RunIntervals(b, settings.confidence_level, settings.ci_method, settings.interaction_adjust, cells)
