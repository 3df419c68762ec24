"""The plugin's hook implementations (entry point ``dask`` in group ``elbo_audit``)."""

from __future__ import annotations

import pluggy
from elbo_audit import BackendInfo, ComputeBackend

from ._backend import SPEED_RANK

__all__ = ["elbo_audit_backends", "hookimpl"]

hookimpl = pluggy.HookimplMarker("elbo_audit")


def _factory() -> ComputeBackend:
    from ._backend import DaskBackend

    return DaskBackend()


@hookimpl
def elbo_audit_backends() -> list[BackendInfo]:
    """Register the ``dask`` backend."""
    return [
        BackendInfo(
            name="dask",
            description="the pairwise pass on a Dask cluster (--scheduler ADDRESS, or a "
            "LocalCluster); each worker runs its best backend",
            factory=_factory,
            precisions=("float64", "float32"),
            speed_rank=SPEED_RANK,
        )
    ]
