"""``elbo-audit compare``: reports side by side, with differences and intervals.

Rows are every (report, model, prior); the first row is the reference and
every other row shows its difference to it. When two rows come from runs on
the same data (same dataset sha256) with the same seed and number of
resamples, their bootstrap replicates were drawn with the same indices
(paired), so the replicates of the difference are exact subtractions and the
interval of the difference is a percentile interval of those. Otherwise the
interval is marked unpaired and left out.
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
from .schema import open_report
from .summary import COLUMNS, render_table

__all__ = ["Row", "compare_reports", "format_comparison", "load_rows"]

MAIN_TERMS = ("elbo", "avg_kl", "index_code_mi", "marginal_kl", "total_correlation", "dimwise_kl")


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
    pairing_key: tuple[str, int, int, str]


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
            key = (
                str(root.attrs.get("dataset_sha256", "")),
                int(root.attrs.get("seed", -1)),
                int(root.attrs.get("n_resamples", 0)),
                str(root.attrs.get("bootstrap_scheme", "")),
            )
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
                            values={t: float(sel[t].values) for t in MAIN_TERMS},
                            ses={t: float(sel[f"{t}_se"].values) for t in MAIN_TERMS},
                            # each *_ci variable holds (lower, upper)
                            cis={
                                t: cast(
                                    "tuple[float, float]", tuple(float(v) for v in sel[f"{t}_ci"].values)
                                )
                                for t in MAIN_TERMS
                            },
                            reps={
                                t: np.asarray(reps[t].sel(model=model, prior=prior).values)
                                for t in MAIN_TERMS
                            }
                            if reps is not None
                            else {},
                            pairing_key=key,
                        )
                    )
    if not rows:
        raise UsageError("nothing to compare: the reports hold no results")
    return rows


def compare_reports(paths: list[str], level: float = 0.95) -> dict[str, Any]:
    """The comparison as a JSON-ready document."""
    rows = load_rows(paths)
    ref = rows[0]
    out_rows = []
    for row in rows:
        paired = row.pairing_key == ref.pairing_key and row.pairing_key[2] > 0 and bool(row.reps)
        entry: dict[str, Any] = {"label": row.label, "report": row.report, "model": row.model, "prior": row.prior}
        for t in MAIN_TERMS:
            diff = row.values[t] - ref.values[t]
            ci: tuple[float, float] | None = None
            if row is not ref and paired:
                ci = percentile_interval(row.reps[t] - ref.reps[t], level)
            entry[t] = {
                "value": _num(row.values[t]),
                "se": _num(row.ses[t]),
                "ci": [_num(v) for v in row.cis[t]],
                "diff": None if row is ref else _num(diff),
                "diff_se": None if row is ref else _num(math.hypot(row.ses[t], ref.ses[t])),
                "diff_ci": None if ci is None else [_num(ci[0]), _num(ci[1])],
                "paired": bool(paired and row is not ref),
            }
        out_rows.append(entry)
    return {"units": "nat per data point", "reference": ref.label, "confidence_level": level, "rows": out_rows}


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _cell(e: dict[str, Any]) -> str:
    if e["value"] is None:
        return "n/a"
    text = f"{e['value']:.2f}"
    if e["diff"] is not None:
        text += f" ({e['diff']:+.2f}"
        if e["diff_ci"] is not None and e["diff_ci"][0] is not None:
            text += f" [{e['diff_ci'][0]:+.2f}, {e['diff_ci'][1]:+.2f}]"
        text += ")"
    return text


def format_comparison(doc: dict[str, Any], fmt: str = "text") -> str:
    """Render :func:`compare_reports` output as text, markdown or JSON."""
    if fmt == "json":
        return json.dumps(doc, indent=2)
    labels = dict(COLUMNS)
    head = ["model@prior"] + [labels[t] for t in MAIN_TERMS]
    rows = [[r["label"]] + [_cell(r[t]) for t in MAIN_TERMS] for r in doc["rows"]]
    note = (
        f"nats per data point; (difference to {doc['reference']} "
        f"[{doc['confidence_level']:.0%} paired bootstrap interval where the runs share data and seed])"
    )
    return render_table(head, rows, note, fmt)
