"""Audits during training: one report whose variables gain a ``step`` dimension.

A :class:`Monitor` holds a held-out set and audits the model every ``every``
steps (epochs, or whatever the training loop counts), with the same seed each
time, so the change from one audit to the next is the model's and not the
Monte Carlo noise's. After each audit it prints what the audit cost and
rewrites its report (atomically), so a run's index-code MI, marginal KL and
ELBO can be plotted over training: KL annealing and posterior collapse as
Hoffman & Johnson describe them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._errors import UsageError
from .._model.terms import TERMS
from .._report.build import write_report
from .audit import audit, audit_settings
from .data import as_array
from .result import AuditResult
from .tensorboard import open_writer

__all__ = ["Monitor", "stack_steps"]

#: Options of :func:`elbo_audit.audit` that are not settings of the run.
_NOT_AUDIT_SETTINGS = ("priors", "prior", "posterior", "likelihood", "adapter", "gates", "data_name")


def stack_steps(trees: list[xr.DataTree], steps: list[int], seconds: list[float]) -> xr.DataTree:
    """Reports of one model at several training steps as one report over ``step``.

    Every variable of the root group and of ``/replicates`` (and
    ``/pointwise`` when present) gains a leading ``step`` dimension; the root
    keeps the first report's attributes, with ``created_at`` of the last, and
    gets ``audit_seconds`` (the wall time of each audit).
    """
    index = np.asarray(steps, dtype=np.int64)
    out: dict[str, xr.Dataset] = {}
    roots = [t.to_dataset() for t in trees]
    root = xr.concat(roots, dim="step", data_vars="all", coords="minimal", combine_attrs="override")
    root = root.assign_coords(step=("step", index, {"long_name": "training step of each audit"}))
    root["audit_seconds"] = ("step", np.asarray(seconds, dtype=np.float64),
                             {"units": "s", "long_name": "wall time of each audit"})
    root.attrs["created_at"] = roots[-1].attrs.get("created_at", "")
    root.attrs["monitor"] = "audits during training: every variable has a step dimension"
    out["/"] = root
    for group in ("replicates", "pointwise", "gates"):
        parts = [t[group].to_dataset() for t in trees if group in t.children]
        if len(parts) == len(trees):
            ds = xr.concat(parts, dim="step", data_vars="all", coords="minimal", combine_attrs="override")
            out[f"/{group}"] = ds.assign_coords(step=("step", index))
    return xr.DataTree.from_dict(out)


class Monitor:
    """Audit a held-out set every ``every`` steps of training, into one report over ``step``.

    Parameters
    ----------
    data : array-like, tensor, DataLoader or iterable of batches
        The held-out set, read once (see :func:`elbo_audit.audit`).
    path : str or path, optional
        Where the report is written after every audit (netCDF, atomically).
    every : int
        Audit at steps 0, ``every``, 2 ``every``, ... (see :meth:`due`).
    name : str
        The model's name in the report.
    tensorboard : object, optional
        A writer with ``add_scalar(tag, value, step)`` (torch's
        ``SummaryWriter``, tensorboardX's, a Lightning logger's
        ``experiment``); each audit's terms are logged as
        ``elbo_audit/<term>`` (``elbo_audit/<term>@<prior>`` for the
        alternative priors) and its wall time as ``elbo_audit/audit_seconds``.
    log_dir : str or path, optional
        Write those scalars as TensorBoard event files into this folder
        (needs the ``tensorboard`` package; see
        :func:`elbo_audit._api.tensorboard.open_writer`); not with ``tensorboard``.
    log : callable, optional
        Receives the line that says what each audit cost (default: stderr).
    **options
        Passed to :func:`elbo_audit.audit` (``priors``, ``seed``,
        ``resamples``, ``marginal_samples``, ...); the same seed is used at
        every step.

    Examples
    --------
    >>> monitor = elbo_audit.Monitor(x_val, "train-audit.nc", every=5, resamples=200)
    >>> for epoch in range(50):
    ...     train_one_epoch(model)
    ...     monitor(model, epoch)          # audits at epochs 0, 5, 10, ...

    References
    ----------
    Hoffman, M. D. and Johnson, M. J. (2016). ELBO surgery: yet another way to
    carve up the variational evidence lower bound. NIPS Workshop on Advances
    in Approximate Bayesian Inference.
    """

    def __init__(
        self,
        data: Any,
        path: str | os.PathLike[str] | None = None,
        *,
        every: int = 1,
        name: str = "model",
        tensorboard: Any = None,
        log_dir: str | os.PathLike[str] | None = None,
        log: Callable[[str], None] | None = None,
        **options: Any,
    ) -> None:
        if every < 1:
            raise UsageError(f"Monitor(every={every}): must be at least 1")
        settings = {k: v for k, v in options.items() if k not in _NOT_AUDIT_SETTINGS}
        audit_settings(settings)  # an unknown setting fails now, not after the first epoch
        if tensorboard is not None and log_dir is not None:
            raise UsageError("Monitor: give tensorboard=WRITER or log_dir=FOLDER, not both")
        if log_dir is not None:
            tensorboard = open_writer(log_dir)
        self.x = as_array(data, "Monitor(data)")
        self.path = None if path is None else Path(path)
        self.every = int(every)
        self.name = name
        self.tensorboard = tensorboard
        self._owns_writer = log_dir is not None
        self.options = options
        self._log = log or (lambda line: print(line, file=sys.stderr))
        self.steps: list[int] = []
        self.results: list[AuditResult] = []
        self.seconds: list[float] = []

    def due(self, step: int) -> bool:
        """Whether ``step`` is one to audit (a multiple of ``every``, not audited yet)."""
        return step % self.every == 0 and step not in self.steps

    def __call__(self, model: Any, step: int) -> AuditResult | None:
        """Audit ``model`` if ``step`` is due; returns the audit, or None."""
        return self.audit(model, step) if self.due(step) else None

    def audit(self, model: Any, step: int) -> AuditResult:
        """Audit ``model`` now, as step ``step``, and rewrite the report."""
        if self.steps and step <= self.steps[-1]:
            raise UsageError(f"Monitor: step {step} is not after the last audited step {self.steps[-1]}")
        start = time.perf_counter()
        result = audit(model, self.x, name=self.name, **self.options)
        seconds = time.perf_counter() - start
        self.steps.append(int(step))
        self.results.append(result)
        self.seconds.append(seconds)
        self._log(
            f"elbo-audit: step {step}: audited {self.name!r} on {self.x.shape[0]} points in {seconds:.2f} s"
            + (f"; report {self.path}" if self.path is not None else "")
        )
        if self.tensorboard is not None:
            self._scalars(result, step)
        if self.path is not None:
            write_report(self.to_xarray(), self.path)
        return result

    def _scalars(self, result: AuditResult, step: int) -> None:
        ds = result.dataset
        for prior in ds["prior"].values:
            for term in TERMS:
                value = float(ds[term].sel(model=self.name, prior=prior))
                if np.isfinite(value):
                    suffix = "" if prior == "native" else f"@{prior}"
                    self.tensorboard.add_scalar(f"elbo_audit/{term}{suffix}", value, step)
        self.tensorboard.add_scalar("elbo_audit/audit_seconds", self.seconds[-1], step)
        flush = getattr(self.tensorboard, "flush", None)
        if callable(flush):
            flush()  # readable while training goes on

    def close(self) -> None:
        """Close the TensorBoard writer opened for ``log_dir`` (a writer passed in stays open)."""
        if self._owns_writer and self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def to_xarray(self) -> xr.DataTree:
        """All audits so far as one report over ``step``."""
        if not self.results:
            raise UsageError("Monitor: nothing audited yet")
        return stack_steps([r.to_xarray() for r in self.results], self.steps, self.seconds)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report over ``step`` to ``path``."""
        return write_report(self.to_xarray(), path)
