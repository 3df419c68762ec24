"""The ``dask`` compute backend: the kernels of the pairwise pass on a Dask cluster.

The core's driver does what it does for every backend (centring, the float32
split, chunks; :mod:`elbo_audit._kernels.mixture`) and calls this backend's
kernels on chunks of :attr:`DaskBackend.chunk_draws` draws. The backend
scatters each prepared mixture's arrays once to every worker, cuts every call
into tasks of :data:`~elbo_audit._kernels.mixture.DEFAULT_CHUNK` draws (the
chunks of a single-machine run) and collects their results in order (see
:mod:`elbo_audit_dask._mixture`). On the workers the tasks run the best
backend available there (:mod:`elbo_audit_dask._worker`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import numpy as np
from elbo_audit import Precision
from elbo_audit._kernels.mixture import DEFAULT_CHUNK
from elbo_audit._kernels.protocol import PRECISIONS
from numpy.typing import NDArray

from . import _cluster, _worker
from ._mixture import DaskMixture

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["CHUNK_DRAWS", "SPEED_RANK", "DaskBackend"]

#: Draws the driver hands over per kernel call: 1024 tasks of DEFAULT_CHUNK draws.
CHUNK_DRAWS: Final = DEFAULT_CHUNK * 1024

#: Below the numpy reference (0) and every compiled backend, so a plain run
#: never picks dask, even where no compiled backend is built: name it
#: (``--backend dask``) or pass ``--scheduler``.
SPEED_RANK: Final = -1


@final
class DaskBackend:
    """The kernels of the pairwise pass on the workers of a Dask cluster.

    Satisfies :class:`elbo_audit.ComputeBackend`, with the optional
    ``connect``, ``chunk_draws`` and ``speed_rank``.

    Parameters
    ----------
    inner : str, optional
        Backend the workers run (``numpy``, ``native``, ...); by default each
        worker's ``ELBO_AUDIT_DASK_INNER``, else the fastest available there.
    address : str, optional
        Scheduler to connect to when a kernel is first needed and
        :meth:`connect` was not called (default: a LocalCluster).
    timeout : float, optional
        Seconds to wait for a scheduler; ``ELBO_AUDIT_DASK_TIMEOUT``, else 10.
    n_workers : int, optional
        Workers of a LocalCluster; ``ELBO_AUDIT_DASK_WORKERS``, else the cores.
    retries : int
        Retries of a task that raises (a task whose worker dies is
        rescheduled by the scheduler in any case).
    chunk_draws : int
        Draws per kernel call, a multiple of ``DEFAULT_CHUNK``.
    """

    def __init__(
        self,
        inner: str | None = None,
        *,
        address: str | None = None,
        timeout: float | None = None,
        n_workers: int | None = None,
        retries: int = 3,
        chunk_draws: int = CHUNK_DRAWS,
    ) -> None:
        if chunk_draws < DEFAULT_CHUNK or chunk_draws % DEFAULT_CHUNK:
            raise ValueError(f"chunk_draws must be a positive multiple of {DEFAULT_CHUNK}")
        if retries < 0:
            raise ValueError(f"retries must be at least 0, got {retries}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self._inner = inner
        self._address = address
        self._timeout = timeout
        self._n_workers = n_workers
        self._retries = int(retries)
        self._chunk_draws = int(chunk_draws)
        self._client: Client | None = None
        self._connected_to: str | None = None

    @property
    def name(self) -> str:
        return "dask"

    @property
    def speed_rank(self) -> int:
        """Low: a plain run never picks dask; name it or pass ``--scheduler``."""
        return SPEED_RANK

    @property
    def chunk_draws(self) -> int:
        """Draws per kernel call (many tasks of ``DEFAULT_CHUNK`` draws each)."""
        return self._chunk_draws

    @property
    def inner(self) -> str | None:
        """The inner backend named on the client side (None: each worker's own)."""
        return self._inner

    def availability(self) -> str | None:
        """None when dask.distributed is installed, else why not (one line)."""
        return _cluster.missing_reason()

    def devices(self) -> tuple[str, ...]:
        """``("cpu",)``: the workers choose their own devices."""
        return ("cpu",)

    # -- the cluster ---------------------------------------------------------

    def connect(self, address: str | None = None) -> None:
        """Connect to the scheduler at ``address``, or to a LocalCluster when None.

        Idempotent: connecting again to the same address (or with None, once
        connected) keeps the connection; another address replaces it. The
        LocalCluster (processes, one thread each, ``n_workers`` or
        ``ELBO_AUDIT_DASK_WORKERS`` or the usable cores) is started on first
        use and shared by the backends of this process; it is closed at exit
        (or by :func:`elbo_audit_dask.close_all`).

        Raises
        ------
        elbo_audit.UsageError
            When the scheduler cannot be reached within the timeout.
        """
        if self._client is not None and self._client.status == "running" and (
            address is None or address == self._connected_to
        ):
            return
        timeout = self._timeout or _cluster.env_number(
            _cluster.TIMEOUT_ENV, _cluster.DEFAULT_TIMEOUT
        )
        self._client = None
        self._client = _cluster.client_for(address, timeout=timeout, n_workers=self._n_workers)
        self._connected_to = address

    @property
    def client(self) -> Client:
        """The client, connecting (``address``, else a LocalCluster) on first use."""
        if self._client is None:
            self.connect(self._address)
        assert self._client is not None
        return self._client

    @property
    def scheduler_address(self) -> str | None:
        """The scheduler connected to (None before :meth:`connect`)."""
        sched = None if self._client is None else self._client.scheduler
        return None if sched is None else str(sched.address)

    def close(self) -> None:
        """Let go of the connection (the pooled client stays open for others until exit)."""
        self._client = self._connected_to = None

    def worker_backends(self, precision: Precision = "float64") -> dict[str, str]:
        """The inner backend each worker runs ``precision`` on, e.g. ``{addr: "native (cpu)"}``."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}")
        found = self.client.run(_worker.describe, self._inner, precision)
        return {str(k): str(v) for k, v in found.items()}

    # -- the kernels ---------------------------------------------------------

    def prepare(
        self,
        mean: NDArray[np.float64],
        std: NDArray[np.float64],
        log_weights: NDArray[np.float64] | None = None,
        *,
        precision: Precision = "float64",
        device: str = "cpu",
    ) -> DaskMixture:
        """Scatter the mixture (M, D) to every worker; its kernels then run as tasks.

        ``device`` is not used: each worker's inner backend runs on its own
        default device.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected float32 or float64")
        mean = np.ascontiguousarray(mean, np.float64)
        std = np.ascontiguousarray(std, np.float64)
        if mean.ndim != 2 or std.shape != mean.shape:
            raise ValueError(
                f"mean and std must have the same shape (M, D): {mean.shape}, {std.shape}"
            )
        m, d = mean.shape
        lw = None if log_weights is None else np.ascontiguousarray(log_weights, np.float64)
        if lw is not None and lw.shape != (m,):
            raise ValueError(f"log_weights must have shape ({m},), got {lw.shape}")
        comps = self.client.scatter(_worker.Components(mean, std, lw), broadcast=True, hash=True)
        return DaskMixture(
            self.client, comps, m, d, precision, self._inner, DEFAULT_CHUNK, self._retries
        )
