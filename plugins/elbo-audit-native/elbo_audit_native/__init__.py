"""Compiled CPU compute backend for elbo-audit.

The kernels of the pairwise pass (:mod:`elbo_audit._kernels.protocol`) in C++17:
register-blocked quadratic forms, a vectorised exp2 and a streaming
logsumexp, in float32 or float64, on ``std::thread`` workers. Registered as the
``native`` backend through the ``elbo_audit`` entry-point group.

The extension is optional at install time: without a C++ compiler the package
installs anyway and :meth:`NativeBackend.availability` says why it cannot run.
"""

from __future__ import annotations

from ._backend import NativeBackend, NativeMixture
from ._version import __version__

__all__ = ["NativeBackend", "NativeMixture", "__version__"]
