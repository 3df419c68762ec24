"""What :func:`elbo_audit.audit` returns: the report in memory, shown and saved like the CLI's."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from .._report.build import write_report
from .._report.gates import GateResult
from .._report.html import render_fragment
from .._report.summary import format_summary, summary_records

__all__ = ["AuditResult"]


class AuditResult:
    """The report of one in-memory audit.

    Attributes
    ----------
    gates : list of GateResult
        The gates judged on this report (empty when none were given).

    Notes
    -----
    In a notebook the result shows itself as the HTML page of
    ``elbo-audit show --html`` (without the page's outer frame); ``repr``
    is the text table of ``elbo-audit show``.
    """

    def __init__(self, tree: xr.DataTree, gates: Sequence[GateResult] = ()) -> None:
        self._tree = tree
        self.gates = list(gates)

    def to_xarray(self) -> xr.DataTree:
        """The report as an :class:`xarray.DataTree`: the root group, ``/replicates``, ...

        ``result.to_xarray().to_dataset()`` is the root group's Dataset (terms
        over ``model`` and ``prior``), the same as ``elbo_audit``'s netCDF file holds.
        """
        return self._tree

    @property
    def dataset(self) -> xr.Dataset:
        """The root group: every term over (``model``, ``prior``), with ``_se`` and ``_ci``."""
        return self._tree.to_dataset()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as the CLI does (netCDF-4, atomically); returns the path."""
        return write_report(self._tree, path)

    def summary(self, fmt: str = "text") -> str:
        """The summary table of ``elbo-audit show`` (``text``, ``markdown`` or ``json``)."""
        return format_summary(self.dataset, fmt)

    def value(self, term: str, model: str | None = None, prior: str = "native") -> float:
        """One term's value in nats per data point (the first model when ``model`` is None)."""
        ds = self.dataset
        m = str(ds["model"].values[0]) if model is None else model
        return float(ds[term].sel(model=m, prior=prior))

    def passed(self) -> bool:
        """Whether every gate passed (True without gates)."""
        return all(g.passed for g in self.gates)

    def __repr__(self) -> str:
        records = summary_records(self.dataset)
        head = f"<AuditResult: {len(records)} model@prior column(s)>\n"
        body = self.summary("text")
        gates = "".join(r.verdict() + "\n" for r in self.gates)
        return head + body + gates

    def _repr_html_(self) -> str:
        return render_fragment(self._tree)
