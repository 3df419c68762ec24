"""From audits to a judged report: intervals, layout, gates (shared by the CLI and the API).

``elbo-audit run`` and :func:`elbo_audit.audit` both end here, so a model
audited in memory and the same model audited from a factory and a weights
file give one and the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from .._audit.audit import AuditSettings, ModelAudit
from .._audit.uncertainty import bootstrap_audits
from .._reporting import Reporter
from .build import build_report
from .gates import Baseline, Gate, GateResult, evaluate_gates, gates_dataset

__all__ = ["assemble_report", "judge_gates"]


def assemble_report(
    audits: Sequence[ModelAudit],
    settings: AuditSettings,
    *,
    dataset: Mapping[str, Any],
    prior_families: Mapping[tuple[str, str], str],
    pointwise: bool,
    history: str,
    extra_attrs: Mapping[str, Any],
    reporter: Reporter,
) -> xr.DataTree:
    """The bootstrap intervals of the audits, then the report's tree (see :func:`build_report`)."""
    with reporter.task(f"bootstrap intervals ({settings.n_resamples} resamples)", 1) as step:
        intervals = bootstrap_audits(audits, settings, prior_families=prior_families)
        step.advance()
    return build_report(
        audits,
        settings,
        dataset=dataset,
        intervals=intervals,
        prior_families=prior_families,
        pointwise=pointwise,
        history=history,
        extra_attrs=extra_attrs,
    )


def judge_gates(tree: xr.DataTree, gates: Sequence[Gate], baseline: Baseline | None) -> list[GateResult]:
    """Evaluate the gates on the report and store them in its ``/gates`` group."""
    results = (
        evaluate_gates(tree.to_dataset(), list(gates), replicates=tree["replicates"].to_dataset(), baseline=baseline)
        if gates
        else []
    )
    if results:
        tree["gates"] = gates_dataset(results)
    return results
