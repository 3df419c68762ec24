"""``elbo-audit compare``: reports side by side, with differences and intervals.

Columns are every (report, model, prior); the first is the reference and every
other shows its difference to it. Rows of one report are always paired (the
same data points, resampled with the same indices). Rows of two reports are
paired only when :func:`elbo_audit._report.identity.pairing` says so: the same
audited array (its sha256 after key, limit and binarize), seed and resampling.
Then the replicates of the difference are exact subtractions and its interval
is a percentile interval of those; otherwise the difference is shown without
an interval, and the table says why the runs are not paired.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from .._errors import DataError, UsageError
from .._estimation.bootstrap import percentile_interval
from .identity import pairing
from .schema import open_report
from .summary import table_terms
from .tables import fmt_interval, fmt_value, render_term_table

__all__ = ["Row", "compare_reports", "format_comparison", "load_rows"]

#: Terms left out of comparisons: a diagnostic, not a quantity to compare.
_SKIP = ("decomposition_residual",)


@dataclass
class Row:
    label: str
    report: str
    model: str
    prior: str
    values: dict[str, float]
    ses: dict[str, float]
    cis: dict[str, tuple[float, float]]
    reps: dict[str, np.ndarray]
    attrs: dict[str, Any]
    labels: dict[str, str]


def load_rows(paths: list[str]) -> list[Row]:
    """Every (model, prior) of every report, in order."""
    rows: list[Row] = []
    for path in paths:
        ds = open_report(path)
        ds.close()
        try:
            tree = xr.open_datatree(path, engine="netcdf4")
        except Exception as exc:
            raise DataError(f"{path}: unreadable report groups ({exc})") from exc
        with tree:
            root = tree.to_dataset()
            reps = tree["replicates"].to_dataset() if "replicates" in tree.children else None
            terms = [(t, label) for t, label in table_terms(root) if t not in _SKIP]
            names = [t for t, _ in terms]
            attrs = dict(root.attrs)
            for model in root["model"].values:
                for prior in root["prior"].values:
                    sel = root.sel(model=model, prior=prior)
                    if str(sel["prior_family"].values) == "":
                        continue
                    prefix = f"{Path(path).name}:" if len(paths) > 1 else ""
                    rows.append(
                        Row(
                            label=f"{prefix}{model}@{prior}",
                            report=str(path),
                            model=str(model),
                            prior=str(prior),
                            values={t: float(sel[t].values) for t in names},
                            ses={t: float(sel[f"{t}_se"].values) for t in names},
                            # each *_ci variable holds (lower, upper)
                            cis={
                                t: cast(
                                    "tuple[float, float]", tuple(float(v) for v in sel[f"{t}_ci"].values)
                                )
                                for t in names
                                if f"{t}_ci" in sel
                            },
                            reps={
                                t: np.asarray(reps[t].sel(model=model, prior=prior).values)
                                for t in names
                                if t in reps
                            }
                            if reps is not None
                            else {},
                            attrs=attrs,
                            labels=dict(terms),
                        )
                    )
    if not rows:
        raise UsageError("nothing to compare: the reports hold no results")
    return rows


def _paired(row: Row, ref: Row) -> tuple[bool, str]:
    """Whether ``row``'s replicates are paired with the reference's, and if not, why."""
    if row.report == ref.report:
        paired, reason = int(row.attrs.get("n_resamples", 0)) > 0, "no bootstrap replicates"
    else:
        paired, reason = pairing(row.attrs, ref.attrs)
    if paired and not (row.reps and ref.reps):
        return False, "no bootstrap replicates stored"
    return paired, "" if paired else reason


def common_terms(rows: list[Row]) -> list[str]:
    """The terms every row holds, in the first row's order."""
    return [t for t in rows[0].values if all(t in r.values for r in rows)]


def compare_reports(paths: list[str], level: float = 0.95) -> dict[str, Any]:
    """The comparison as a JSON-ready document."""
    rows = load_rows(paths)
    ref = rows[0]
    terms = common_terms(rows)
    out_rows = []
    for row in rows:
        paired, reason = (False, "") if row is ref else _paired(row, ref)
        entry: dict[str, Any] = {
            "label": row.label,
            "report": row.report,
            "model": row.model,
            "prior": row.prior,
            "paired": paired,
            "unpaired_reason": None if row is ref or paired else reason,
        }
        for t in terms:
            diff = row.values[t] - ref.values[t]
            ci: tuple[float, float] | None = None
            if row is not ref and paired and t in row.reps and t in ref.reps:
                ci = percentile_interval(row.reps[t] - ref.reps[t], level)
            entry[t] = {
                "value": _num(row.values[t]),
                "se": _num(row.ses[t]),
                "ci": [_num(v) for v in row.cis.get(t, (math.nan, math.nan))],
                "diff": None if row is ref else _num(diff),
                "diff_se": None if row is ref else _num(math.hypot(row.ses[t], ref.ses[t])),
                "diff_ci": None if ci is None else [_num(ci[0]), _num(ci[1])],
                "paired": bool(paired and row is not ref),
            }
        out_rows.append(entry)
    return {
        "units": "nat per data point",
        "reference": ref.label,
        "confidence_level": level,
        "terms": terms,
        "labels": {t: ref.labels[t] for t in terms},
        "rows": out_rows,
    }


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _cell(e: dict[str, Any], is_ref: bool) -> list[str]:
    if e["value"] is None:
        return ["n/a"]
    lines = [fmt_value(e["value"], e["se"])]
    interval = fmt_interval(e["ci"])
    if interval:
        lines.append(interval)
    if is_ref:
        lines.append("(reference)")
    elif e["diff"] is None:
        lines.append("Δ n/a")
    else:
        diff_ci = fmt_interval(e["diff_ci"], sign=True)
        lines.append(f"Δ {e['diff']:+.2f} " + (diff_ci or "(unpaired)"))
    return lines


def format_comparison(doc: dict[str, Any], fmt: str = "text") -> str:
    """Render :func:`compare_reports` output as text, markdown or JSON.

    Text is split into column blocks that fit 100 columns; each cell holds the
    value ± its Monte Carlo error, its own interval, and its difference Δ to the
    reference with the paired interval of the difference where the runs pair.
    """
    if fmt == "json":
        return json.dumps(doc, indent=2)
    rows = doc["rows"]
    many = len({r["report"] for r in rows}) > 1
    headers = [[Path(r["report"]).name, f"{r['model']}@{r['prior']}"] if many else [r["label"]] for r in rows]
    body = [
        (doc["labels"][t], [_cell(r[t], i == 0) for i, r in enumerate(rows)]) for t in doc["terms"]
    ]
    level = float(doc["confidence_level"])
    first = (
        f"nats per data point; value ± Monte Carlo standard error; [lo, hi] its bootstrap interval; "
        f"Δ the difference to {doc['reference']} with its {level:.0%} paired bootstrap interval "
        "(runs on the same audited data with the same seed)."
    )
    notes = [first]
    for r in rows[1:]:
        if r["unpaired_reason"]:
            notes.append(
                f"{r['label']} is not paired with the reference: {r['unpaired_reason']}; "
                "its Δ has no interval."
            )
    return render_term_table(headers, body, notes, fmt, corner="term")
