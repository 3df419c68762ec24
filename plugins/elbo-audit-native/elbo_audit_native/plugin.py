"""The plugin's hook implementations (entry point ``native`` in group ``elbo_audit``)."""

from __future__ import annotations

import pluggy
from elbo_audit._kernels.protocol import ComputeBackend
from elbo_audit.hookspecs import BackendInfo

__all__ = ["elbo_audit_backends", "hookimpl"]

hookimpl = pluggy.HookimplMarker("elbo_audit")


def _factory() -> ComputeBackend:
    from ._backend import NativeBackend

    return NativeBackend()


@hookimpl
def elbo_audit_backends() -> list[BackendInfo]:
    """Register the ``native`` backend."""
    return [
        BackendInfo(
            name="native",
            description="compiled C++ kernels on the CPU (std::thread, float32 or float64)",
            factory=_factory,
            precisions=("float32", "float64"),
            speed_rank=20,
        )
    ]
