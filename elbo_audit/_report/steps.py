"""Reports over ``step`` (written by :class:`elbo_audit.Monitor`) for ``show``, ``check`` and ``compare``.

A Monitor report is a report whose variables have a leading ``step``
dimension, one entry per audit during training. ``check`` validates that
dimension (:func:`step_problems`); ``show`` and ``compare`` read the latest
step as the ordinary report it was when it was written
(:func:`latest_step_files`), and ``show`` adds the trend of index-code MI and
marginal KL from the first audited step to the last (:func:`trend_lines`),
the quantities whose course over training tells KL annealing and posterior
collapse apart (Hoffman & Johnson 2016).

References
----------
Hoffman, M. D. and Johnson, M. J. (2016). ELBO surgery: yet another way to
carve up the variational evidence lower bound. NIPS Workshop on Advances in
Approximate Bayesian Inference.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from .._errors import DataError
from .schema import STEP, open_report, step_problems

__all__ = ["STEP", "TREND_TERMS", "has_steps", "latest_step_files", "latest_tree", "step_problems",
           "trend_lines", "trend_records"]  # step_problems and STEP live in .schema, the validator

#: The terms whose first and last audited values ``show`` prints for a report over ``step``.
TREND_TERMS = ("index_code_mi", "marginal_kl")


def has_steps(path: str | Path) -> bool:
    """Whether the report at ``path`` has a ``step`` dimension."""
    with open_report(path) as ds:
        return STEP in ds.dims


def _latest(ds: xr.Dataset) -> xr.Dataset:
    if STEP not in ds.dims:
        return ds
    last = int(ds[STEP].values[-1]) if STEP in ds.coords else ds.sizes[STEP] - 1
    out = ds.isel({STEP: -1}, drop=True).drop_vars("audit_seconds", errors="ignore")
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "monitor"}
    if "Conventions" in ds.attrs:  # the root group
        out.attrs["monitor_step"] = last
    return out


def latest_tree(tree: xr.DataTree) -> xr.DataTree:
    """The report as it was at its last audited step: every group without ``step``."""
    return xr.DataTree.from_dict({node.path: _latest(node.to_dataset()) for node in tree.subtree})


@contextlib.contextmanager
def latest_step_files(paths: Sequence[str]) -> Iterator[list[str]]:
    """``paths``, with each report over ``step`` replaced by a temporary file of its latest step.

    The temporary file has the report's own file name (in a folder of its
    own), so what ``show`` and ``compare`` print names it as the report.
    """
    with tempfile.TemporaryDirectory(prefix="elbo-audit-steps-") as folder:
        out = []
        for i, path in enumerate(paths):
            if not has_steps(path):
                out.append(str(path))
                continue
            target = Path(folder) / str(i) / Path(path).name
            target.parent.mkdir()
            try:
                with xr.open_datatree(path, engine="netcdf4") as tree:
                    latest_tree(tree.load()).to_netcdf(target, engine="netcdf4")
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(f"{path}: cannot read its latest step ({type(exc).__name__}: {exc})") from exc
            out.append(str(target))
        yield out


def trend_records(ds: xr.Dataset) -> list[dict[str, Any]]:
    """First and last audited value of :data:`TREND_TERMS` per model, on its native prior."""
    steps = [int(s) for s in ds[STEP].values]
    prior = "native" if "native" in ds["prior"].values else str(ds["prior"].values[0])
    records = []
    for model in ds["model"].values:
        rec: dict[str, Any] = {"model": str(model), "prior": prior, "n_steps": len(steps),
                               "first_step": steps[0], "last_step": steps[-1]}
        for term in TREND_TERMS:
            if term in ds:
                values = ds[term].sel(model=model, prior=prior).values
                rec[term] = {"first": float(values[0]), "last": float(values[-1])}
        records.append(rec)
    return records


def trend_lines(ds: xr.Dataset) -> str:
    """One line per model: ``trend over N audits (step a -> b), m@prior: index-code MI x -> y, ...``."""
    lines = []
    for rec in trend_records(ds):
        parts = [f"{t} {rec[t]['first']:.4g} -> {rec[t]['last']:.4g}" for t in TREND_TERMS if t in rec]
        lines.append(
            f"trend over {rec['n_steps']} audits (step {rec['first_step']} -> {rec['last_step']}), "
            f"{rec['model']}@{rec['prior']}: {', '.join(parts)} (nat)\n"
        )
    return "".join(lines)
