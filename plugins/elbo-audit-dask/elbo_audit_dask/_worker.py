"""What runs on a Dask worker: the inner backend, a cache of prepared mixtures, the tasks.

A task receives the mixture's components (scattered once to every worker by
:meth:`elbo_audit_dask.DaskBackend.prepare`), a token naming them, and one
sub-chunk of draws. On first use in a worker process the components are
prepared on the *inner* backend, the best one available on that worker for the
requested precision (``elbo_audit.make_engine`` with this plugin blocked, so a
worker never recurses into Dask), and kept in a small least-recently-used cache
keyed by the token, the inner backend's name and the precision. Later
sub-chunks of the same mixture on the same worker reuse the preparation.

The inner backend is, in order: the client-side option
``DaskBackend(inner=...)``, the worker's environment variable
``ELBO_AUDIT_DASK_INNER``, or None (the fastest available there: numpy, the
compiled ``native`` backend, a GPU worker's framework).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import numpy as np
from elbo_audit import Engine, MixtureKernels, Precision, UsageError, make_engine
from numpy.typing import NDArray

__all__ = [
    "CACHE_SIZE",
    "INNER_ENV",
    "PLUGIN_NAME",
    "Components",
    "clear_cache",
    "describe",
    "inner_name",
    "run_interaction",
    "run_log_density",
    "run_log_marginals",
]

#: The plugin's entry-point name, blocked when a worker picks its inner backend.
PLUGIN_NAME: Final = "dask"

#: Environment variable of a worker naming its inner backend.
INNER_ENV: Final = "ELBO_AUDIT_DASK_INNER"

#: Prepared mixtures kept per worker process (least recently used dropped first).
CACHE_SIZE: Final = 8

_lock = threading.RLock()
_prepared: OrderedDict[tuple[str, str | None, str], MixtureKernels] = OrderedDict()
_engines: dict[tuple[str | None, str], Engine] = {}


@dataclass(frozen=True, eq=False)
class Components:
    """The arrays of one prepared mixture, as scattered to the workers.

    Attributes
    ----------
    mean, std : ndarray, shape (M, D)
        Component means (already centred by the core) and scales.
    log_weights : ndarray, shape (M,), or None
        Log weights (already shifted by the core in float32); uniform when None.
    """

    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    log_weights: NDArray[np.float64] | None


def inner_name(inner: str | None) -> str | None:
    """The inner backend this process uses: ``inner``, else ``ELBO_AUDIT_DASK_INNER``, else None."""
    if inner is not None:
        return inner
    return os.environ.get(INNER_ENV, "").strip() or None


def _where() -> str:
    """This worker's address, for error messages (``dask worker`` outside a worker)."""
    try:
        from distributed import get_worker

        return f"dask worker {get_worker().address}"
    except (ImportError, ValueError):
        return "dask worker"


def _engine(inner: str | None, precision: Precision) -> Engine:
    name = inner_name(inner)
    key = (name, precision)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            try:
                engine = make_engine(backend=name, precision=precision, blocked=[PLUGIN_NAME])
            except UsageError as exc:
                raise UsageError(f"{_where()}: {exc}") from None
            _engines[key] = engine
        return engine


def _kernels(
    token: str, comps: Components, inner: str | None, precision: Precision
) -> MixtureKernels:
    """The mixture ``token`` prepared on this process's inner backend (cached)."""
    engine = _engine(inner, precision)
    key = (token, engine.backend.name, precision)
    with _lock:
        kern = _prepared.get(key)
        if kern is not None:
            _prepared.move_to_end(key)
            return kern
        kern = engine.backend.prepare(
            comps.mean, comps.std, comps.log_weights, precision=precision, device=engine.device
        )
        _prepared[key] = kern
        while len(_prepared) > CACHE_SIZE:
            _prepared.popitem(last=False)
        return kern


def clear_cache() -> int:
    """Forget every prepared mixture and inner engine of this process; returns how many mixtures."""
    with _lock:
        n = len(_prepared)
        _prepared.clear()
        _engines.clear()
        return n


def describe(inner: str | None, precision: Precision) -> str:
    """The inner backend and device this process runs ``precision`` on, e.g. ``native (cpu)``."""
    engine = _engine(inner, precision)
    return f"{engine.backend.name} ({engine.device})"


def run_log_density(
    token: str, comps: Components, inner: str | None, precision: Precision, z: NDArray[np.float64]
) -> NDArray[np.float64]:
    """One sub-chunk of ``log_density`` on this worker -> (S,)."""
    out = _kernels(token, comps, inner, precision).log_density(z)
    return np.asarray(out, np.float64)


def run_log_marginals(
    token: str, comps: Components, inner: str | None, precision: Precision, z: NDArray[np.float64]
) -> NDArray[np.float64]:
    """One sub-chunk of ``log_marginals`` on this worker -> (S, D)."""
    out = _kernels(token, comps, inner, precision).log_marginals(z)
    return np.asarray(out, np.float64)


def run_interaction(
    token: str,
    comps: Components,
    inner: str | None,
    precision: Precision,
    z: NDArray[np.float64],
    owner: NDArray[np.int64],
    log_qz: NDArray[np.float64],
) -> NDArray[np.float64]:
    """One sub-chunk's interaction column sums on this worker -> (M,)."""
    out = _kernels(token, comps, inner, precision).interaction(z, owner, log_qz)
    return np.asarray(out, np.float64)
