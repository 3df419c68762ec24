"""Readable summaries of a report: text, markdown and JSON.

Rows are (model, prior) pairs and columns the terms, in the layout of Hoffman
& Johnson's table: ELBO, average KL, index-code MI, marginal KL, then the
finer terms. Every number is in nats per data point.
"""

from __future__ import annotations

import json
import math
from typing import Any

import xarray as xr

from .._model.terms import SHORT_LABELS

__all__ = ["COLUMNS", "format_summary", "render_table", "summary_records"]

COLUMNS: tuple[tuple[str, str], ...] = tuple(SHORT_LABELS.items())


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def summary_records(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One dict per (model, prior) with value, se and interval of every term."""
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
            for term, _ in COLUMNS:
                ci = sel[f"{term}_ci"].values
                rec[term] = {
                    "value": _num(sel[term].values),
                    "se": _num(sel[f"{term}_se"].values),
                    "ci": [_num(ci[0]), _num(ci[1])],
                }
            out.append(rec)
    return out


def _cell(entry: dict[str, Any]) -> str:
    v, se = entry["value"], entry["se"]
    if v is None:
        return "n/a"
    return f"{v:.2f} ± {se:.2f}" if se is not None else f"{v:.2f}"


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
    head = ["model", "prior"] + [label for _, label in COLUMNS] + ["log N"]
    rows = [
        [r["model"], r["prior"]] + [_cell(r[t]) for t, _ in COLUMNS] + [f"{r['log_n']:.2f}"]
        for r in records
    ]
    level = float(ds.attrs.get("confidence_level", 0.95))
    note = (
        f"nats per data point on {ds.attrs.get('dataset_name', '?')} (N = {ds.attrs.get('n_points', '?')}); "
        f"± is the Monte Carlo standard error; {level:.0%} bootstrap intervals are in the report"
    )
    return render_table(head, rows, note, fmt)


def render_table(head: list[str], rows: list[list[str]], note: str, fmt: str = "text") -> str:
    """A table as aligned ``text`` columns or ``markdown``, with a note below it."""
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + f"\n\n{note}\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, ["-" * w for w in widths], *rows]]
    return "\n".join(lines) + f"\n{note}\n"
