"""The per-latent table of ``elbo-audit show``: KL per dimension, variance of means, active units."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from .summary import render_table

__all__ = ["format_latents", "latent_records"]


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _fmt(entry: dict[str, Any]) -> str:
    """``value [lo, hi]`` with three decimals (small variances matter near the 0.01 threshold)."""
    value, ci = entry["value"], entry["ci"]
    if value is None:
        return "n/a"
    if any(v is None for v in ci):
        return f"{value:.3f}"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _fmt_se(entry: dict[str, Any]) -> str:
    value, se = entry["value"], entry["se"]
    if value is None:
        return "n/a"
    return f"{value:.3f}" if se is None else f"{value:.3f} ± {se:.3f}"


def latent_records(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One dict per (model, latent): the KL under every prior with a closed form, the variance of
    posterior means with its interval, and whether the unit is active; sorted by the first
    prior's KL, largest first, within each model."""
    if "latent_kl" not in ds or "active" not in ds:
        return []
    out: list[dict[str, Any]] = []
    for model in ds["model"].values:
        sel = ds.sel(model=model)
        kl = sel["latent_kl"]
        priors = [str(p) for p in ds["prior"].values if np.isfinite(kl.sel(prior=p).values).any()]
        rows = []
        for j in ds["latent"].values:
            if int(sel["active"].sel(latent=j)) < 0:
                continue
            rec: dict[str, Any] = {"model": str(model), "latent": int(j)}
            rec["latent_kl"] = {
                p: {
                    "value": _num(kl.sel(prior=p, latent=j)),
                    "ci": [_num(v) for v in sel["latent_kl_ci"].sel(prior=p, latent=j).values],
                }
                for p in priors
            }
            if "latent_marginal_kl" in sel:
                rec["latent_marginal_kl"] = {
                    p: {
                        "value": _num(sel["latent_marginal_kl"].sel(prior=p, latent=j)),
                        "se": _num(sel["latent_marginal_kl_se"].sel(prior=p, latent=j)),
                    }
                    for p in priors
                }
            rec["posterior_mean_variance"] = {
                "value": _num(sel["posterior_mean_variance"].sel(latent=j)),
                "ci": [_num(v) for v in sel["posterior_mean_variance_ci"].sel(latent=j).values],
            }
            rec["active"] = bool(int(sel["active"].sel(latent=j)))
            rows.append(rec)
        if priors:
            first = priors[0]
            rows.sort(key=lambda r: -(r["latent_kl"][first]["value"] or 0.0))
        out += rows
    return out


def format_latents(ds: xr.Dataset, fmt: str = "text") -> str:
    """The per-latent tables (one per model) as ``text`` or ``markdown``; empty without them."""
    records = latent_records(ds)
    if not records:
        return ""
    threshold = float(ds["active"].attrs.get("active_threshold", float("nan")))
    parts = []
    for model in dict.fromkeys(r["model"] for r in records):
        rows_of = [r for r in records if r["model"] == model]
        priors = list(rows_of[0]["latent_kl"])
        marg = "latent_marginal_kl" in rows_of[0]
        head = [
            "latent", *(f"KL@{p}" for p in priors),
            *((f"marginal KL@{p}" for p in priors) if marg else ()), "var of means", "active",
        ]
        body = []
        for r in rows_of:
            cells = [str(r["latent"])]
            cells += [_fmt(r["latent_kl"][p]) for p in priors]
            if marg:
                cells += [_fmt_se(r["latent_marginal_kl"][p]) for p in priors]
            cells.append(_fmt(r["posterior_mean_variance"]))
            cells.append("yes" if r["active"] else "no")
            body.append(cells)
        n_active = sum(r["active"] for r in rows_of)
        note = (
            f"{model}: {n_active} of {len(rows_of)} latents active (variance of posterior means > "
            f"{threshold:g}); KL = KL(q(z_j|x_n) || p(z_j)) averaged over data points [bootstrap "
            "interval]; marginal KL = KL(q(z_j) || p(z_j)) ± Monte Carlo error, the summands of "
            "dimwise KL; nats per data point, sorted by KL, largest first."
        )
        title = f"Per-latent terms of {model}" if fmt != "markdown" else f"**Per-latent terms of {model}**"
        parts.append(f"\n{title}\n" + ("\n" if fmt == "markdown" else "") + render_table(head, body, note, fmt))
    return "".join(parts)
