"""What a compute backend provides: the three kernels of the pairwise pass.

Every exact aggregate-posterior term needs, for S draws z_s and a mixture of
M diagonal-Gaussian components (weights w_m, means mu_m, scales sigma_m),

``log_density``
    log q(z_s) = logsumexp_m [log w_m + log N(z_s; mu_m, diag sigma_m^2)], shape (S,);
``log_marginals``
    log q_j(z_sj) = logsumexp_m [log w_m + log N(z_sj; mu_mj, sigma_mj^2)], shape (S, D);
``interaction``
    R_m = sum over draws s with owner(s) != m of -log(1 - r_m(z_s)), shape (M,), where
    r_m(z) = w_m N(z; mu_m, sigma_m) / q(z) is the responsibility of component m and
    ``log_qz`` (given) is log q(z_s). Responsibilities are clipped at 1 - 1e-12;
    pairs with log r_m below -80 may be dropped (they add at most 1e-35 each).

The core makes the draws (one seed gives the same draws on every backend),
centres z and the means on a common point, and decides which components are
safe in float32 (see :mod:`elbo_audit._kernels.mixture`); a backend only
computes. A backend *prepares* a mixture once (moving it to its device and
precomputing what it likes) and then evaluates it on chunks of draws. Every
array that crosses this boundary is numpy float64 (``owner`` is int64, -1 for
a draw of no component); results are deterministic for given inputs,
whatever the number of threads.

A backend may also carry these optional attributes, read with ``getattr``:

``chunk_draws`` (int)
    Draws per kernel call it prefers (a cluster backend takes many default
    chunks at once and spreads them over its workers); the core's default is
    :data:`elbo_audit._kernels.mixture.DEFAULT_CHUNK`.
``speed_rank`` (int)
    Overrides its registration's rank on this machine (a GPU framework is
    fast only where a GPU is present).
``default_device`` (str)
    The device it runs on when none is named (``cuda`` where one is present).
``connect(address: str | None) -> None``
    For backends that run on a cluster: connect to the scheduler at
    ``address`` (``--scheduler``), or start a local one when None; raises
    :class:`elbo_audit.UsageError` when it cannot be reached.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

__all__ = ["PRECISIONS", "ComputeBackend", "MixtureKernels", "Precision"]

Precision = Literal["float32", "float64"]
PRECISIONS: tuple[Precision, ...] = ("float32", "float64")


@runtime_checkable
class MixtureKernels(Protocol):
    """One prepared mixture of M components in D dimensions."""

    @property
    def precision(self) -> Precision:
        """The precision the kernels run in."""
        ...

    def log_density(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q(z_s) for each row of ``z`` (S, D) -> (S,)."""
        ...

    def log_marginals(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q_j(z_sj) for each row and dimension of ``z`` (S, D) -> (S, D)."""
        ...

    def interaction(
        self,
        z: NDArray[np.float64],
        owner: NDArray[np.int64],
        log_qz: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Column sums R_m of -log(1 - r_m(z_s)) over draws not owned by m -> (M,)."""
        ...


@runtime_checkable
class ComputeBackend(Protocol):
    """A way to run the kernels: numpy, compiled CPU code, a GPU framework, a cluster."""

    @property
    def name(self) -> str: ...

    def availability(self) -> str | None:
        """None when the backend can run here, else why not (one line)."""
        ...

    def devices(self) -> tuple[str, ...]:
        """Devices it can run on (``cpu``, ``cuda:0``, ...)."""
        ...

    def prepare(
        self,
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        log_weights: NDArray[np.float64] | None = None,
        *,
        precision: Precision = "float64",
        device: str = "cpu",
    ) -> MixtureKernels:
        """Prepare the mixture (M, D) with log weights (M,) (uniform when None)."""
        ...
