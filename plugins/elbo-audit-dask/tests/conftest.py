"""Fixtures of the dask backend's tests: one small LocalCluster per test module, and test data.

The cluster has two worker processes with one thread each; their environment
names numpy as the inner backend (``ELBO_AUDIT_DASK_INNER``) and one kernel
thread (``ELBO_AUDIT_NUM_THREADS``), so a run is compared with the numpy
backend in this process unless a test names another inner backend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.typing import NDArray

Array = NDArray[np.float64]

WORKER_ENV = {"ELBO_AUDIT_DASK_INNER": "numpy", "ELBO_AUDIT_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimpleNamespace]:
    """A 2-worker LocalCluster (processes, 1 thread each) with a client of its own."""
    distributed = pytest.importorskip("distributed")
    import dask

    from elbo_audit_dask import close_all

    # glibc's malloc defaults, as the backend's own LocalCluster has them (_cluster.py)
    trim = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    with dask.config.set({trim: None}), distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
        env=WORKER_ENV,
    ) as local, distributed.Client(local, set_as_default=False) as client:
        try:
            yield SimpleNamespace(cluster=local, client=client, address=local.scheduler_address)
        finally:
            close_all()  # the pooled clients of the backends made by the tests


def mixture(
    g: np.random.Generator, m: int, d: int, *, sharp: int = 0, zero_weights: int = 0
) -> tuple[Array, Array, Array]:
    """mu ~ N(0, 1), sigma log-uniform in [0.05, 1], normalised log weights (some -inf).

    The last ``sharp`` components have sigma = 1e-3 and |mu| ~ 3 (float32-unsafe).
    """
    mean = g.normal(size=(m, d))
    std = np.exp(g.uniform(np.log(0.05), 0.0, (m, d)))
    if sharp:
        mean[-sharp:] = 3.0 + g.normal(size=(sharp, d))
        std[-sharp:] = 1e-3
    w = g.dirichlet(np.ones(m))
    if zero_weights:
        w[g.choice(m, size=zero_weights, replace=False)] = 0.0
    with np.errstate(divide="ignore"):
        lw = np.log(w / w.sum())
    return mean, std, lw


def draws(
    g: np.random.Generator, mean: Array, std: Array, s: int
) -> tuple[Array, NDArray[np.int64]]:
    """``s`` draws of random components (owner), one in ten of no component (owner -1)."""
    m, d = mean.shape
    owner = g.integers(0, m, size=s).astype(np.int64)
    z = mean[owner] + std[owner] * g.standard_normal((s, d))
    owner[::10] = -1
    z[::10] = 2.0 * g.standard_normal((z[::10].shape[0], d))
    return z, owner


@pytest.fixture(scope="session")
def data() -> SimpleNamespace:
    """The test data makers, for the test modules (``--import-mode=importlib``)."""
    return SimpleNamespace(mixture=mixture, draws=draws)
