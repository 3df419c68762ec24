"""Readable summaries of a report: text, markdown and JSON.

The table has a row per term, in the order of Hoffman & Johnson's table (ELBO,
reconstruction, average KL, index-code MI, marginal KL, then the finer terms),
and a column per (model, prior). Each cell is the value with its Monte Carlo
standard error and, where the bootstrap ran, its interval; the notes below the
table say only what was computed. Every number is in nats per data point.
"""

from __future__ import annotations

import json
import math
from typing import Any

import xarray as xr

from .._model.terms import SHORT_LABELS
from .tables import fmt_interval, fmt_value, render_term_table

__all__ = ["COLUMNS", "format_summary", "render_table", "summary_records", "table_notes", "table_terms"]

COLUMNS: tuple[tuple[str, str], ...] = tuple(SHORT_LABELS.items())


_METHODS = {"bca": "BCa", "percentile": "percentile", "pct": "percentile"}


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def table_terms(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The (variable, label) of every term the report holds, in table order.

    The named terms come first; any other per-(model, prior) variable that has a
    Monte Carlo error beside it (``X`` and ``X_se``) follows under its own name,
    so a report with more terms than this version knows still shows them all.
    """
    known = [(t, label) for t, label in COLUMNS if t in ds and f"{t}_se" in ds]
    names = {t for t, _ in known}
    extra = [
        (str(v), str(v))
        for v in ds.data_vars
        if str(v) not in names
        and not str(v).endswith(("_se", "_ci"))
        and ds[v].dims == ("model", "prior")
        and f"{v}_se" in ds
        and ds[v].dtype.kind == "f"
    ]
    return known + extra


def summary_records(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One dict per (model, prior) with value, se and interval of every term."""
    terms = table_terms(ds)
    out = []
    for model in ds["model"].values:
        for prior in ds["prior"].values:
            sel = ds.sel(model=model, prior=prior)
            if str(sel["prior_family"].values) == "":
                continue
            rec: dict[str, Any] = {
                "model": str(model),
                "prior": str(prior),
                "prior_family": str(sel["prior_family"].values),
                "log_n": _num(sel["log_n"].values),
            }
            for term, _ in terms:
                ci = sel[f"{term}_ci"].values if f"{term}_ci" in ds else [math.nan, math.nan]
                rec[term] = {
                    "value": _num(sel[term].values),
                    "se": _num(sel[f"{term}_se"].values),
                    "ci": [_num(ci[0]), _num(ci[1])],
                }
            out.append(rec)
    return out


def _has_intervals(records: list[dict[str, Any]], terms: list[tuple[str, str]]) -> bool:
    return any(
        r[t]["ci"][0] is not None and r[t]["ci"][1] is not None for r in records for t, _ in terms
    )


def table_notes(ds: xr.Dataset, records: list[dict[str, Any]], terms: list[tuple[str, str]]) -> list[str]:
    """The sentences under a summary table: units, what ± and [lo, hi] are, and caveats.

    Intervals are described only when the report holds some; the identity
    marginal KL = TC + dimwise KL is stated only for the priors under which
    dimwise KL was estimated (factorised priors).
    """
    level = float(ds.attrs.get("confidence_level", 0.95))
    b = int(ds.attrs.get("n_resamples", 0))
    log_ns = sorted({r["log_n"] for r in records if r["log_n"] is not None})
    log_n = f"; log N = {log_ns[0]:.2f}, the ceiling of index-code MI" if len(log_ns) == 1 else ""
    where = f"{ds.attrs.get('dataset_name', '?')} (N = {ds.attrs.get('n_points', '?')})"
    notes = [f"nats per data point on {where}{log_n}."]
    if b > 0 and _has_intervals(records, terms):
        method = _METHODS.get(str(ds.attrs.get("ci_method", "")), str(ds.attrs.get("ci_method", "")))
        notes.append(
            f"value ± Monte Carlo standard error (data fixed); [lo, hi]: {level:.0%} {method} bootstrap "
            f"interval over data points ({b} resamples)."
        )
    else:
        notes.append(
            "value ± Monte Carlo standard error (data fixed); no bootstrap intervals were computed "
            f"(bootstrap resamples = {b})."
        )
    names = {t for t, _ in terms}
    if "total_correlation" in names:
        notes.append("TC (total correlation) is a property of q(z) alone: the same under every prior of a model.")
    if {"marginal_kl", "total_correlation", "dimwise_kl"} <= names:
        factorised = sorted({r["prior"] for r in records if r["dimwise_kl"]["value"] is not None})
        if factorised:
            notes.append(
                "marginal KL = TC + dimwise KL (up to Monte Carlo error) under the factorised priors: "
                + ", ".join(factorised)
                + "; dimwise KL is n/a under the others."
            )
    if "log_likelihood" in names:
        k = int(ds.attrs.get("iw_samples", 0))
        source = "q(z|x_n)"
        if str(ds.attrs.get("iw_proposal", "")) == "amortized+refined":
            source = "the equal mixture of q(z|x_n) and the refined posteriors"
        notes.append(
            f"log p(x) (IW): the importance-weighted lower bound on log p(x) with K = {k} samples from "
            f"{source}, under the model's own prior only; inference gap = log p(x) (IW) - ELBO, biased "
            "low (it grows towards the true gap as K grows)."
        )
    if "refined_elbo" in names:
        t = int(ds.attrs.get("refine_steps", 0))
        notes.append(
            f"ELBO (refined): the ELBO after {t} gradient steps per data point from the encoder's output "
            "(model's own prior only); amortization gap = ELBO (refined) - ELBO, approximation gap = "
            "log p(x) (IW) - ELBO (refined) (Cremer et al. 2018); at finite T the first is biased low."
        )
    return notes


def _cell(entry: dict[str, Any]) -> list[str]:
    lines = [fmt_value(entry["value"], entry["se"])]
    interval = fmt_interval(entry["ci"])
    if interval and entry["value"] is not None:
        lines.append(interval)
    return lines


def format_summary(ds: xr.Dataset, fmt: str = "text") -> str:
    """Render the root group of a report as ``text``, ``markdown`` or ``json``."""
    records = summary_records(ds)
    if fmt == "json":
        doc = {
            "units": "nat per data point",
            "dataset": ds.attrs.get("dataset_name", ""),
            "n_points": int(ds.attrs.get("n_points", 0)),
            "confidence_level": float(ds.attrs.get("confidence_level", float("nan"))),
            "results": records,
        }
        return json.dumps(doc, indent=2)
    terms = table_terms(ds)
    headers = [[f"{r['model']}@{r['prior']}"] for r in records]
    rows = [(label, [_cell(r[t]) for r in records]) for t, label in terms]
    return render_term_table(headers, rows, table_notes(ds, records, terms), fmt)


def render_table(head: list[str], rows: list[list[str]], note: str, fmt: str = "text") -> str:
    """A table as aligned ``text`` columns or ``markdown``, with a note below it."""
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + f"\n\n{note}\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, ["-" * w for w in widths], *rows]]
    return "\n".join(lines) + f"\n{note}\n"
