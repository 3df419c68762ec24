"""elbo-audit-torch: the PyTorch adapter and the ``torch`` compute backend of elbo-audit.

A factory (``module:function`` or ``file.py:function``) returns one of

* an ``nn.Module`` with ``encoder`` and ``decoder`` children (and optionally a
  ``prior`` attribute and a ``likelihood`` name), whose ``state_dict`` the
  weights file holds;
* an ``nn.Module`` with an ``elbo_audit_spec()`` method returning a
  :class:`TorchVAE`;
* a :class:`TorchVAE` spec.

It also registers the ``torch`` compute backend (:mod:`elbo_audit_torch._backend`):
the kernels of the pairwise pass on the CPU or a CUDA GPU, in float32 or float64.

Importing this package does not import torch; the adapter does when it is used, and
the backend when it prepares a mixture (or, on a machine that may have CUDA, when
asked for its devices).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elbo_audit import (
    AdapterInfo,
    AuditModel,
    BackendInfo,
    ComputeBackend,
    ModelRef,
    hookimpl,
)

from ._spec import LIKELIHOODS, POSTERIOR_PARAMS, TorchPrior, TorchVAE, VampPrior
from ._version import __version__

__all__ = [
    "LIKELIHOODS",
    "POSTERIOR_PARAMS",
    "TorchPrior",
    "TorchVAE",
    "VampPrior",
    "__version__",
    "claims",
    "elbo_audit_adapters",
    "elbo_audit_backends",
    "wrap",
]


def claims(obj: Any) -> bool:
    """Whether ``obj`` is a model the torch adapter handles."""
    if isinstance(obj, TorchVAE):
        return True
    if "torch" not in sys.modules:  # a torch object cannot exist without torch imported
        return False
    from ._adapter import claims as _claims

    return _claims(obj)


def wrap(obj: Any, ref: ModelRef) -> AuditModel:
    """Load ``ref.weights`` safely into ``obj`` and wrap it (see :mod:`elbo_audit_torch._adapter`)."""
    from ._adapter import wrap as _wrap

    return _wrap(obj, ref)


def _load_file(path: Path, ref: ModelRef) -> Any:
    from ._adapter import load_file

    return load_file(path, ref)


@hookimpl
def elbo_audit_adapters() -> Sequence[AdapterInfo]:
    return (
        AdapterInfo(
            name="torch",
            description="PyTorch VAEs: nn.Modules with encoder/decoder, or TorchVAE specs",
            claims=claims,
            wrap=wrap,
            file_suffixes=(".pt", ".pth"),
            load_file=_load_file,
            needs_weights=True,
        ),
    )


def _torch_backend() -> ComputeBackend:
    from ._backend import TorchBackend

    return TorchBackend()


@hookimpl
def elbo_audit_backends() -> Sequence[BackendInfo]:
    """Register the ``torch`` compute backend (its rank is 30 where CUDA is available)."""
    return (
        BackendInfo(
            name="torch",
            description="PyTorch kernels on the CPU or a CUDA GPU (float32 or float64)",
            factory=_torch_backend,
            precisions=("float32", "float64"),
            speed_rank=5,
        ),
    )
