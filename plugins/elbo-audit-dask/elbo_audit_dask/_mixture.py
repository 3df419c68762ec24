"""A mixture prepared on a Dask cluster: one task per sub-chunk of draws, results in order.

The core's driver (:class:`elbo_audit.Mixture`) hands a kernel call many
draws at once (the backend's ``chunk_draws``). Here they are cut into
sub-chunks of exactly :data:`elbo_audit._kernels.mixture.DEFAULT_CHUNK`
draws, the chunks a single-machine run uses, and each becomes one task on the
cluster. Results are collected in sub-chunk order, whatever order the tasks
finish in, so

* ``log_density`` and ``log_marginals``, computed row by row, are the rows a
  single-machine run computes;
* ``interaction`` adds the per-sub-chunk (M,) sums in order starting from
  zeros, exactly as the driver adds per-chunk sums, so for a call of at most
  ``chunk_draws`` draws the total is the single-machine total, bit for bit.

At most ``window`` tasks are in flight (submitted but not collected), so
memory stays flat in the number of draws. A task whose worker dies is
rescheduled by the scheduler; one that raises is retried ``retries`` times.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, final

import numpy as np
from elbo_audit import Precision
from numpy.typing import NDArray

from . import _worker

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["DaskMixture"]

Task = Callable[..., NDArray[np.float64]]


@final
class DaskMixture:
    """One mixture of M components in D dimensions, prepared on a cluster.

    Built by :meth:`elbo_audit_dask.DaskBackend.prepare`; satisfies
    :class:`elbo_audit.MixtureKernels`.

    Parameters
    ----------
    client : distributed.Client
    components : distributed.Future
        The scattered :class:`~elbo_audit_dask._worker.Components`.
    n_components, n_latent : int
    precision : {"float32", "float64"}
    inner : str or None
        Inner backend named on the client side (None: each worker's own choice).
    sub_chunk : int
        Draws per task.
    retries : int
        Retries of a task that raises.
    window : int
        Tasks in flight at most (0: four per worker thread, at least 8).
    """

    def __init__(
        self,
        client: Client,
        components: Future[Any],
        n_components: int,
        n_latent: int,
        precision: Precision,
        inner: str | None,
        sub_chunk: int,
        retries: int,
        window: int = 0,
    ) -> None:
        self._client = client
        self._components = components
        self._token = str(components.key)
        self.n_components, self.n_latent = n_components, n_latent
        self._precision: Precision = precision
        self._inner = inner
        self._sub = int(sub_chunk)
        self._retries = int(retries)
        self._window = int(window)

    @property
    def precision(self) -> Precision:
        """The precision the kernels run in (on every worker)."""
        return self._precision

    @property
    def inner(self) -> str | None:
        """The inner backend named on the client side (None: the workers choose)."""
        return self._inner

    def _in_flight(self) -> int:
        if self._window > 0:
            return self._window
        threads = int(sum(self._client.nthreads().values()))
        return max(8, 4 * threads)

    def _map(self, task: Task, kind: str, pieces: Iterator[tuple[Any, ...]]) -> Iterator[
        NDArray[np.float64]
    ]:
        """``task(token, components, inner, precision, *piece)`` for each piece, in order."""
        run = uuid.uuid4().hex[:16]
        pending: deque[Future[NDArray[np.float64]]] = deque()
        count = 0

        def submit(piece: tuple[Any, ...]) -> None:
            nonlocal count
            fut = self._client.submit(
                task, self._token, self._components, self._inner, self._precision, *piece,
                key=f"elbo_audit_{kind}-{run}-{count}", pure=False, retries=self._retries,
            )  # fmt: skip
            count += 1
            pending.append(fut)

        try:
            for piece in islice(pieces, self._in_flight()):
                submit(piece)
            while pending:
                fut = pending.popleft()
                result = fut.result()
                fut.release()
                nxt = next(pieces, None)
                if nxt is not None:
                    submit(nxt)
                yield result
        finally:
            if pending:
                self._client.cancel(list(pending))

    def _draws(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        z = np.asarray(z, np.float64)
        if z.ndim != 2 or z.shape[1] != self.n_latent:
            raise ValueError(f"z must have shape (S, {self.n_latent}), got {z.shape}")
        return z

    def _slices(self, s: int) -> Iterator[slice]:
        return (slice(i, min(s, i + self._sub)) for i in range(0, s, self._sub))

    def log_density(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q(z_s) for each row of ``z`` (S, D) -> (S,)."""
        z = self._draws(z)
        out = np.empty(z.shape[0])
        slices = list(self._slices(z.shape[0]))
        pieces = ((np.ascontiguousarray(z[sl]),) for sl in slices)
        for sl, part in zip(slices, self._map(_worker.run_log_density, "log_density", pieces),
                            strict=True):
            out[sl] = part
        return out

    def log_marginals(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q_j(z_sj) for each row and dimension of ``z`` (S, D) -> (S, D)."""
        z = self._draws(z)
        out = np.empty(z.shape)
        slices = list(self._slices(z.shape[0]))
        pieces = ((np.ascontiguousarray(z[sl]),) for sl in slices)
        for sl, part in zip(slices, self._map(_worker.run_log_marginals, "log_marginals", pieces),
                            strict=True):
            out[sl] = part
        return out

    def interaction(
        self,
        z: NDArray[np.float64],
        owner: NDArray[np.int64],
        log_qz: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Column sums R_m of -log(1 - r_m(z_s)) over draws not owned by m -> (M,).

        The sums of the sub-chunks are added in order, starting from zeros.
        """
        z = self._draws(z)
        s = z.shape[0]
        own = np.asarray(owner, np.int64)
        lq = np.asarray(log_qz, np.float64)
        if own.shape != (s,) or lq.shape != (s,):
            raise ValueError(
                f"owner and log_qz must have shape ({s},), got {own.shape} and {lq.shape}"
            )
        out = np.zeros(self.n_components)
        pieces = (
            (np.ascontiguousarray(z[sl]), np.ascontiguousarray(own[sl]),
             np.ascontiguousarray(lq[sl]))
            for sl in self._slices(s)
        )  # fmt: skip
        for part in self._map(_worker.run_interaction, "interaction", pieces):
            out += part
        return out

    def release(self) -> None:
        """Drop the scattered components from the cluster (the mixture cannot run after)."""
        self._components.release()
