"""The report schema: opening reports and checking them (``elbo-audit check``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._errors import DataError
from .._model.terms import IW_TERMS, REFINE_TERMS, TERMS
from .build import CONVENTIONS

__all__ = ["REQUIRED_ATTRS", "STEP", "open_report", "require_valid", "step_problems", "validate_report"]

#: The leading dimension of a report over training steps (:class:`elbo_audit.Monitor`).
STEP = "step"

REQUIRED_ATTRS = (
    "Conventions", "schema_version", "title", "history", "created_at", "creation_library",
    "creation_library_version", "dataset_name", "dataset_sha256", "dataset_size", "seed",
    "samples_per_point", "reconstruction_samples", "confidence_level", "ci_method", "n_resamples",
)

#: The per-latent variables (checked when present: reports written before they existed lack them).
_LATENT_DIMS: dict[str, tuple[str, ...]] = {
    "latent_kl": ("model", "prior", "latent"),
    "latent_kl_ci": ("model", "prior", "latent", "ci_bound"),
    "latent_marginal_kl": ("model", "prior", "latent"),
    "latent_marginal_kl_se": ("model", "prior", "latent"),
    "posterior_mean_variance": ("model", "latent"),
    "posterior_mean_variance_ci": ("model", "latent", "ci_bound"),
    "active": ("model", "latent"),
    "n_active": ("model",),
}


def step_problems(ds: xr.Dataset) -> list[str]:
    """Every way the ``step`` dimension of a report's root group departs from the schema."""
    if STEP not in ds.dims:
        return []
    if STEP not in ds.coords:
        return ["dimension 'step' has no coordinate"]
    steps = np.asarray(ds[STEP].values)
    problems = []
    if steps.size == 0:
        problems.append("dimension 'step' is empty")
    elif steps.dtype.kind not in "iu":
        problems.append(f"coordinate step must hold integers, holds {steps.dtype}")
    elif (np.diff(steps) <= 0).any():
        problems.append(f"coordinate step must increase strictly, is {steps.tolist()}")
    if "audit_seconds" in ds:
        secs = ds["audit_seconds"]
        if tuple(secs.dims) != (STEP,):
            problems.append(f"variable 'audit_seconds' has dims {tuple(secs.dims)}, expected ('step',)")
        elif not (np.isfinite(secs.values) & (secs.values >= 0)).all():
            problems.append("variable 'audit_seconds' holds negative or non-finite times")
    return problems


def open_report(path: str | Path) -> xr.Dataset:
    """Open a report's root group, with one clear error if it is not one."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a report file")
    if not path.is_file():
        raise DataError(f"{path}: report file does not exist")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except Exception as exc:
        raise DataError(f"{path}: not a readable netCDF report ({type(exc).__name__}: {exc})") from exc
    if ds.attrs.get("Conventions") != CONVENTIONS:
        ds.close()
        raise DataError(f"{path}: not an elbo-audit report (Conventions is {ds.attrs.get('Conventions')!r})")
    return ds


def require_valid(path: str | Path) -> None:
    """Raise one DataError naming the first schema problem of the report at ``path``."""
    problems = validate_report(path)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise DataError(f"{path}: not a complete elbo-audit report: {problems[0]}{more}")


def _positive(value: Any) -> bool:
    try:
        return int(value) > 0
    except (TypeError, ValueError):
        return False


def _term_problems(ds: xr.Dataset, term: str, lead: tuple[str, ...]) -> list[str]:
    """A term's value, _se and _ci: present, with the right dims, in nats; its long_name and estimator."""
    problems = []
    for name, dims in ((term, (*lead, "model", "prior")), (f"{term}_se", (*lead, "model", "prior")),
                       (f"{term}_ci", (*lead, "model", "prior", "ci_bound"))):
        if name not in ds:
            problems.append(f"variable {name!r} missing")
            continue
        if tuple(ds[name].dims) != dims:
            problems.append(f"variable {name!r} has dims {tuple(ds[name].dims)}, expected {dims}")
        if ds[name].attrs.get("units") != "nat":
            problems.append(f"variable {name!r} lacks units = 'nat'")
    if term in ds:
        for attr in ("long_name", "estimator"):
            if attr not in ds[term].attrs:
                problems.append(f"variable {term!r} lacks attribute {attr!r}")
    return problems


def validate_report(path: str | Path) -> list[str]:
    """Every way the report at ``path`` departs from the schema (empty if valid)."""
    problems: list[str] = []
    ds = open_report(path)
    with ds:
        lead: tuple[str, ...] = (STEP,) if STEP in ds.dims else ()  # a Monitor report, over step
        problems += step_problems(ds)
        for attr in REQUIRED_ATTRS:
            if attr not in ds.attrs:
                problems.append(f"root attribute {attr!r} missing")
        for dim in ("model", "prior", "ci_bound"):
            if dim not in ds.dims:
                problems.append(f"dimension {dim!r} missing")
        if "ci_bound" in ds.coords and [str(v) for v in ds["ci_bound"].values] != ["lower", "upper"]:
            problems.append("coordinate ci_bound must be ['lower', 'upper']")
        for term in TERMS:
            problems += _term_problems(ds, term, lead)
        for attr, optional in (("iw_samples", IW_TERMS), ("refine_steps", REFINE_TERMS)):
            for term in optional:  # present when the run asked for them, then in full
                if term in ds:
                    problems += _term_problems(ds, term, lead)
                elif _positive(ds.attrs.get(attr)):
                    problems.append(f"variable {term!r} missing (root attribute {attr} = {ds.attrs[attr]})")
        for name, dims in _LATENT_DIMS.items():
            want = (*lead, *dims)
            if name in ds and tuple(ds[name].dims) != want:
                problems.append(f"variable {name!r} has dims {tuple(ds[name].dims)}, expected {want}")
        if "latent_kl" in ds and ds["latent_kl"].attrs.get("units") != "nat":
            problems.append("variable 'latent_kl' lacks units = 'nat'")
        if "log_n" in ds and "index_code_mi" in ds:
            over = (ds["index_code_mi"] > ds["log_n"] + 1e-9).any().item()
            if over:
                problems.append("index_code_mi exceeds log_n")
    try:
        tree = xr.open_datatree(path, engine="netcdf4")
    except Exception as exc:  # noqa: BLE001 - any failure to read the groups is a problem to report
        problems.append(f"groups unreadable: {exc}")
        return problems
    with tree:
        lead = (STEP,) if STEP in tree.dims else ()
        if "replicates" not in tree.children:
            problems.append("group /replicates missing")
        else:
            reps = tree["replicates"].to_dataset()
            for term in TERMS + IW_TERMS + REFINE_TERMS:
                if term in reps and tuple(reps[term].dims) != (*lead, "model", "prior", "replicate"):
                    problems.append(f"/replicates/{term} has dims {tuple(reps[term].dims)}")
    return problems
