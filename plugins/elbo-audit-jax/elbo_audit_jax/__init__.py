"""elbo-audit-jax: the JAX adapter of elbo-audit.

A factory (``module:function`` or ``file.py:function``) returns a
:class:`JaxVAE`: pure functions ``encode_fn(params, x)`` and
``decode_fn(params, z)`` with their parameter pytree. A weights file
(``.safetensors`` or ``.npz``) replaces the pytree's leaves by dotted key path.

It also registers the ``jax`` compute backend (:class:`elbo_audit_jax._backend.JaxBackend`):
the pairwise-pass kernels as jitted XLA programs on a CPU or GPU.

Importing this package does not import jax; the adapter and the backend do when they are used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elbo_audit import AdapterInfo, AuditModel, BackendInfo, ModelRef, hookimpl
from elbo_audit._kernels.protocol import ComputeBackend

from ._spec import (
    LIKELIHOODS,
    POSTERIOR_PARAMS,
    GaussianPrior,
    JaxPrior,
    JaxVAE,
    MixturePrior,
    VampPrior,
)
from ._version import __version__

__all__ = [
    "LIKELIHOODS",
    "POSTERIOR_PARAMS",
    "GaussianPrior",
    "JaxPrior",
    "JaxVAE",
    "MixturePrior",
    "VampPrior",
    "__version__",
    "claims",
    "elbo_audit_adapters",
    "elbo_audit_backends",
    "flatten_params",
    "load_params",
    "save_params",
    "wrap",
]


def claims(obj: Any) -> bool:
    """Whether ``obj`` is a model the JAX adapter handles (a :class:`JaxVAE`)."""
    return isinstance(obj, JaxVAE)


def wrap(obj: Any, ref: ModelRef) -> AuditModel:
    """Load ``ref.weights`` into ``obj.params`` and wrap it (see :mod:`elbo_audit_jax._adapter`)."""
    from ._adapter import wrap as _wrap

    return _wrap(obj, ref)


def flatten_params(params: Any) -> dict[str, Any]:
    """``{dotted key path: numpy array}`` of a params pytree."""
    from ._weights import flatten_params as _flatten

    return _flatten(params)


def save_params(params: Any, path: str | Path) -> None:
    """Write a params pytree as ``.safetensors`` or ``.npz`` keyed by dotted key path."""
    import numpy as np

    flat = {k: np.ascontiguousarray(v) for k, v in flatten_params(params).items()}
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.numpy import save_file

        save_file(flat, str(path))
    elif path.suffix.lower() == ".npz":
        np.savez(path, **flat)  # type: ignore[arg-type]  # numpy's stub reads **flat as allow_pickle
    else:
        raise ValueError(f"{path}: save as .safetensors or .npz")


def load_params(path: str | Path, like: Any = None) -> Any:
    """Read a weights file onto the pytree ``like`` (or into nested dicts)."""
    from ._weights import assign, read_flat, unflatten

    flat = read_flat(Path(path))
    return unflatten(flat) if like is None else assign(like, flat, Path(path))


@hookimpl
def elbo_audit_adapters() -> Sequence[AdapterInfo]:
    return (
        AdapterInfo(
            name="jax",
            description="JAX VAEs as pure functions of a params pytree (JaxVAE)",
            claims=claims,
            wrap=wrap,
            needs_weights=True,
        ),
    )


def _backend_factory() -> ComputeBackend:
    # probing the backend starts jax's GPU client where there is one, which by
    # default reserves 75 % of the GPU's memory (under a torch model, say):
    # allocate on demand instead, unless the user chose otherwise
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from ._backend import JaxBackend  # imports jax: only when the backend is asked for

    return JaxBackend()


@hookimpl
def elbo_audit_backends() -> Sequence[BackendInfo]:
    return (
        BackendInfo(
            name="jax",
            description="jax (XLA) kernels on the CPU or a GPU (float32 or float64)",
            factory=_backend_factory,
            precisions=("float32", "float64"),
            speed_rank=4,
        ),
    )
