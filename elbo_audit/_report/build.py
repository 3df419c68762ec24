"""The netCDF report: a labelled xarray view of audits, written atomically.

Root group: one variable per term over (``model``, ``prior``), with ``<term>_se``
(Monte Carlo standard error) and ``<term>_ci`` (bootstrap interval over
``ci_bound``). Group ``/replicates``: the bootstrap replicates over
(``model``, ``prior``, ``replicate``). Group ``/pointwise`` (optional): the
per-datapoint contributions over (``model``, ``prior``, ``datapoint``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._audit.audit import AuditSettings, ModelAudit
from .._audit.uncertainty import RunIntervals, bootstrap_audits
from .._errors import UsageError
from .._model.terms import LONG_NAMES, TERMS
from .._signals import clean_stale, deferred, temp_prefix
from .._version import __version__
from .identity import IDENTITY

__all__ = ["CONVENTIONS", "SCHEMA_VERSION", "build_report", "write_report"]

SCHEMA_VERSION = "1.0"
CONVENTIONS = "elbo-audit-1.0"

def _estimators(audits: Sequence[ModelAudit], term: str) -> str:
    seen: list[str] = []
    for a in audits:
        for pa in a.by_prior.values():
            est = pa.terms().get(term)
            if est is None:
                continue
            how = est.estimator
            if how not in seen:
                seen.append(how)
    return "; ".join(seen)


def build_report(
    audits: Sequence[ModelAudit],
    settings: AuditSettings,
    *,
    dataset: Mapping[str, Any],
    intervals: RunIntervals | None = None,
    prior_families: Mapping[tuple[str, str], str] | None = None,
    pointwise: bool = False,
    title: str = "elbo-audit report",
    history: str = "",
    extra_attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Lay out the audits of one run, with their intervals, as a labelled report.

    Parameters
    ----------
    audits : sequence of ModelAudit
        One per model, all on the same dataset.
    settings : AuditSettings
    dataset : mapping
        ``name``, ``sha256`` and ``size`` of the data audited.
    intervals : RunIntervals, optional
        From :func:`elbo_audit.bootstrap_audits`; computed here (the same
        function) when omitted.
    prior_families : mapping, optional
        (model, prior label) -> the prior's own name, for the ``prior_family``
        variable.
    pointwise : bool
        Whether to store per-datapoint contributions in ``/pointwise``.

    Returns
    -------
    xarray.DataTree
    """
    if not audits:
        raise UsageError("nothing to report: no model was audited")
    models = [a.model for a in audits]
    if len(set(models)) != len(models):
        raise UsageError(f"model names must be unique, got {models}")
    n = audits[0].n_points
    if any(a.n_points != n for a in audits):
        raise UsageError("all models of one report must be audited on the same data points")
    if intervals is None:
        intervals = bootstrap_audits(audits, settings, prior_families=prior_families)
    n_resamples = intervals.n_resamples
    confidence_level = intervals.confidence_level
    ci_method = intervals.ci_method
    interaction_adjust = intervals.interaction_adjust
    priors: list[str] = []
    for a in audits:
        priors += [p for p in a.by_prior if p not in priors]

    terms = list(TERMS)
    for a in audits:
        for pa in a.by_prior.values():
            terms += [t for t in pa.terms() if t not in terms]
    shape = (len(models), len(priors))
    values = {t: np.full(shape, np.nan) for t in terms}
    ses = {t: np.full(shape, np.nan) for t in terms}
    cis = {t: np.full((*shape, 2), np.nan) for t in terms}
    reps = {t: np.full((*shape, n_resamples), np.nan) for t in terms}
    accel = {t: np.full(shape, np.nan) for t in terms}
    adaptive: dict[str, dict[str, Any]] = {}
    points = {t: np.full((*shape, n), np.nan) for t in terms} if pointwise else {}
    family = np.full(shape, "", dtype=object)
    for i, a in enumerate(audits):
        for j, p in enumerate(priors):
            if p not in a.by_prior:
                continue
            family[i, j] = (prior_families or {}).get((a.model, p), p)
            pa = a.by_prior[p]
            if pa.adaptive is not None:
                adaptive.setdefault(a.model, {})[p] = {
                    "sweeps": pa.adaptive.sweeps,
                    "samples_per_point": pa.adaptive.samples_per_point,
                    "reached": int(pa.adaptive.reached),
                    "stopped_by": pa.adaptive.stopped_by,
                    "seconds": round(pa.adaptive.seconds, 3),
                    "achieved_se": pa.adaptive.achieved_se.get(p, {}),
                }
            for t, est in pa.terms().items():
                values[t][i, j] = est.value
                ses[t][i, j] = est.se
                cell = intervals.cells.get((a.model, p, t))
                if cell is not None:
                    reps[t][i, j] = cell.replicates
                    cis[t][i, j] = cell.interval
                    accel[t][i, j] = cell.acceleration
                if pointwise and est.pointwise is not None and est.index is None:
                    points[t][i, j] = est.pointwise

    dims = ("model", "prior")
    data: dict[str, Any] = {}
    for t in terms:
        attrs = {"units": "nat", "long_name": LONG_NAMES[t], "estimator": _estimators(audits, t)}
        data[t] = (dims, values[t], attrs)
        data[f"{t}_se"] = (
            dims,
            ses[t],
            {"units": "nat", "long_name": f"Monte Carlo standard error of {t} (dataset fixed)"},
        )
        data[f"{t}_ci"] = (
            dims + ("ci_bound",),
            cis[t],
            {
                "units": "nat",
                "long_name": f"{confidence_level:.0%} bootstrap interval of {t} over data points",
                "ci_method": ci_method,
            },
        )
    data["log_n"] = (("model",), np.array([a.log_n for a in audits]), {"units": "nat", "long_name": LONG_NAMES["log_n"]})
    data["n_latent"] = (("model",), np.array([a.n_latent for a in audits], dtype=np.int32), {"long_name": "latent dimension D"})
    data["adapter"] = (("model",), np.array([a.adapter for a in audits], dtype=object), {"long_name": "adapter plugin"})
    data["prior_family"] = (dims, family, {"long_name": "the prior each column is evaluated under"})
    data["model_attrs"] = (
        ("model",),
        np.array([json.dumps(a.attrs, sort_keys=True, default=str) for a in audits], dtype=object),
        {"long_name": "model provenance (artifacts, sha256, flags) as JSON"},
    )
    d_max = max(a.n_latent for a in audits)
    data.update(_latent_variables(audits, priors, d_max, confidence_level))
    coords = {"model": models, "prior": priors, "ci_bound": ["lower", "upper"], "latent": np.arange(d_max)}
    root = xr.Dataset(data, coords=coords)
    root.attrs.update(
        {
            "Conventions": CONVENTIONS,
            "schema_version": SCHEMA_VERSION,
            "title": title,
            "history": history,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creation_library": "elbo-audit",
            "creation_library_version": __version__,
            "dataset_name": str(dataset.get("name", "")),
            "dataset_sha256": str(dataset.get("sha256", "")),
            "dataset_size": int(dataset.get("size", n)),
            "dataset_identity": IDENTITY,
            "n_points": int(n),
            "confidence_level": float(confidence_level),
            "ci_method": ci_method,
            "bootstrap_scheme": (
                "paired bootstrap over per-datapoint contributions, q(z) held fixed; counts in blocks of 32 "
                "from SeedSequence(seed, spawn_key=(2, block))"
                + ("; index_code_mi and marginal_kl adjusted for the pairwise interaction" if interaction_adjust else "")
            ),
            "interaction_adjust": int(interaction_adjust),
            "n_resamples": int(n_resamples),
            "backend": ",".join(dict.fromkeys(a.backend for a in audits)),
            "precision": "; ".join(dict.fromkeys(a.precision for a in audits)),
            **settings.as_attrs(),
        }
    )
    for key, value in dataset.items():
        if key not in ("name", "sha256", "size") and value is not None:
            root.attrs[f"dataset_{key}"] = _attr(value)
    if adaptive:
        root.attrs["adaptive"] = json.dumps(adaptive, sort_keys=True)
    for key, value in (extra_attrs or {}).items():
        root.attrs[key] = _attr(value)
    tree = {"/": root}
    rep_vars: dict[str, tuple[tuple[str, ...], Any, dict[str, str]]] = {
        t: (("model", "prior", "replicate"), reps[t], {"units": "nat", "long_name": f"bootstrap replicates of {t}"})
        for t in terms
    }
    for t in terms:
        rep_vars[f"{t}_acceleration"] = (
            ("model", "prior"),
            accel[t],
            {"long_name": f"BCa acceleration of {t} (jackknife of its bootstrapped contributions)"},
        )
    tree["/replicates"] = xr.Dataset(
        rep_vars, coords={"model": models, "prior": priors, "replicate": np.arange(n_resamples)}
    )
    if pointwise:
        pw = {
            t: (("model", "prior", "datapoint"), points[t], {"units": "nat", "long_name": f"per-datapoint {t}"})
            for t in terms
        }
        post_mean = np.full((len(models), n, d_max), np.nan)
        post_std = np.full((len(models), n, d_max), np.nan)
        for i, a in enumerate(audits):
            post_mean[i, :, : a.n_latent] = a.posteriors.mean
            post_std[i, :, : a.n_latent] = a.posteriors.std
        pw["posterior_mean"] = (("model", "datapoint", "latent"), post_mean, {"long_name": "mean of q(z|x_n)"})
        pw["posterior_std"] = (("model", "datapoint", "latent"), post_std, {"long_name": "std of q(z|x_n)"})
        tree["/pointwise"] = xr.Dataset(
            pw, coords={"model": models, "prior": priors, "datapoint": np.arange(n), "latent": np.arange(d_max)}
        )
    return xr.DataTree.from_dict(tree)


def _latent_variables(
    audits: Sequence[ModelAudit], priors: Sequence[str], d_max: int, confidence_level: float
) -> dict[str, Any]:
    """The per-latent variables over ``latent`` (NaN past a model's own D, or without a closed form)."""
    m, p = len(audits), len(priors)
    kl = np.full((m, p, d_max), np.nan)
    kl_ci = np.full((m, p, d_max, 2), np.nan)
    var = np.full((m, d_max), np.nan)
    var_ci = np.full((m, d_max, 2), np.nan)
    active = np.full((m, d_max), -1, dtype=np.int8)
    mkl = np.full((m, p, d_max), np.nan)
    mkl_se = np.full((m, p, d_max), np.nan)
    threshold = np.nan
    for i, a in enumerate(audits):
        lt = a.latent
        if lt is None:
            continue
        d = a.n_latent
        threshold = lt.active_threshold
        var[i, :d] = lt.posterior_mean_variance
        active[i, :d] = lt.active
        if lt.posterior_mean_variance_ci is not None:
            var_ci[i, :d] = lt.posterior_mean_variance_ci
        for j, prior in enumerate(priors):
            pa = a.by_prior.get(prior)
            if pa is not None and pa.kl.latent_marginal_kl is not None:
                mkl[i, j, :d], mkl_se[i, j, :d] = pa.kl.latent_marginal_kl
            if prior in lt.latent_kl:
                kl[i, j, :d] = lt.latent_kl[prior]
            if prior in lt.latent_kl_ci:
                kl_ci[i, j, :d] = lt.latent_kl_ci[prior]
    level = f"{confidence_level:.0%} percentile bootstrap interval over data points"
    n_active = np.where(active >= 0, active, 0).sum(axis=1).astype(np.int32)
    return {
        "latent_kl": (
            ("model", "prior", "latent"), kl,
            {"units": "nat", "long_name": LONG_NAMES["latent_kl"],
             "estimator": "closed form per data point, averaged (factorised Gaussian priors only)"},
        ),
        "latent_kl_ci": (("model", "prior", "latent", "ci_bound"), kl_ci, {"units": "nat", "long_name": f"{level} of latent_kl"}),
        "latent_marginal_kl": (
            ("model", "prior", "latent"), mkl,
            {"units": "nat", "long_name": LONG_NAMES["latent_marginal_kl"],
             "estimator": "exact marginals q(z_j), Monte Carlo over the outer samples of dimwise_kl "
                          "(factorised priors only)"},
        ),
        "latent_marginal_kl_se": (
            ("model", "prior", "latent"), mkl_se,
            {"units": "nat", "long_name": "Monte Carlo standard error of latent_marginal_kl (dataset fixed)"},
        ),
        "posterior_mean_variance": (
            ("model", "latent"), var, {"long_name": LONG_NAMES["posterior_mean_variance"]},
        ),
        "posterior_mean_variance_ci": (
            ("model", "latent", "ci_bound"), var_ci, {"long_name": f"{level} of posterior_mean_variance"},
        ),
        "active": (
            ("model", "latent"), active,
            {"long_name": "active unit (posterior_mean_variance > active_threshold): 1 yes, 0 no, -1 no such latent",
             "active_threshold": float(threshold)},
        ),
        "n_active": (("model",), n_active, {"long_name": "number of active latent units"}),
    }


def _attr(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def write_report(tree: xr.DataTree, path: str | os.PathLike[str]) -> Path:
    """Write the report atomically: a temporary file in the same folder, then rename.

    A failure or interruption leaves no partial report at ``path`` and no
    temporary file: the netCDF write runs with SIGINT/SIGTERM held (they are
    raised once it returns, and the temporary file is removed). The temporary
    name carries the process id (``elbo_audit._signals.temp_prefix``); one left
    by a killed run is removed by the next write into the same folder.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--out {path}: folder {folder} does not exist")
    if path.is_dir():
        raise UsageError(f"--out {path}: is a folder; name a report file")
    clean_stale(folder)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=folder)
    os.close(fd)

    def write(name: str) -> None:
        with deferred():
            tree.to_netcdf(name, engine="netcdf4")

    replace_atomically(tmp, path, write)
    return path


def replace_atomically(tmp: str, path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)``, then give ``tmp`` an ordinary file's permissions and rename it to ``path``.

    On any failure or interruption ``tmp`` is removed and ``path`` is left as it was.
    """
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
