"""Reaching a Dask cluster: a running scheduler, or a LocalCluster of processes.

Connections are pooled per process (:func:`client_for`): every
:class:`elbo_audit_dask.DaskBackend` that names the same scheduler shares one
client, and all those that start a local cluster share one LocalCluster, so a
process that builds many backends (the test suites of the core build one per
test) starts one cluster, not one each. :func:`close_all` closes them; it runs
at interpreter exit.

Settings come from the constructor of :class:`elbo_audit_dask.DaskBackend` or
from the environment:

``ELBO_AUDIT_DASK_WORKERS``
    Workers of a LocalCluster started when no scheduler is named (default:
    the cores this process may use); each has one thread.
``ELBO_AUDIT_DASK_TIMEOUT``
    Seconds to wait for a scheduler (default 10).
"""

from __future__ import annotations

import atexit
import importlib.metadata as md
import importlib.util
import logging
import os
import re
import threading
from typing import TYPE_CHECKING, Final

from elbo_audit import PluginError, UsageError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = [
    "DEFAULT_TIMEOUT",
    "TIMEOUT_ENV",
    "WORKERS_ENV",
    "client_for",
    "close_all",
    "connect_scheduler",
    "env_number",
    "missing_reason",
    "start_local_cluster",
    "usable_cores",
]

WORKERS_ENV: Final = "ELBO_AUDIT_DASK_WORKERS"
TIMEOUT_ENV: Final = "ELBO_AUDIT_DASK_TIMEOUT"
#: Seconds to wait for a scheduler unless told otherwise.
DEFAULT_TIMEOUT: Final = 10.0
_MIN_VERSION: Final = (2024, 1)
_TRIM_KEY: Final = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def env_number(name: str, default: float, *, integer: bool = False) -> float:
    """A positive number from the environment variable ``name`` (``default`` when unset).

    Raises
    ------
    UsageError
        When it is set but not a positive number (an integer with ``integer``).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise UsageError(f"{name}={raw!r}: expected {kind}")
    return value


def _version(dist: str) -> tuple[int, ...] | None:
    try:
        text = md.version(dist)
    except md.PackageNotFoundError:
        return None
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


def missing_reason() -> str | None:
    """None when dask.distributed is installed (a new enough release), else why not.

    Looks at the installed distributions only: importing distributed costs
    about a second, which every run would pay just to list the backends.
    """
    for mod, dist in (("dask", "dask"), ("distributed", "distributed")):
        if importlib.util.find_spec(mod) is None:
            return f"{dist} is not installed (pip install 'dask[distributed]>=2024.1')"
        version = _version(dist)
        if version is not None and version < _MIN_VERSION:
            found = ".".join(map(str, version))
            return f"{dist} {found} is too old (pip install 'dask[distributed]>=2024.1')"
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's environment
        raise PluginError(f"backend dask: cannot import distributed ({_one_line(exc)})") from None


def connect_scheduler(address: str, timeout: float) -> Client:
    """A client of the scheduler at ``address``.

    Raises
    ------
    UsageError
        ``--scheduler ADDRESS: cannot reach the Dask scheduler (reason)`` when
        no scheduler answers within ``timeout`` seconds or the address is invalid.
    """
    _import_distributed()
    from distributed import Client

    reason = None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - every failure to connect is the address's
        reason = _one_line(exc)
    # raised outside the handler, so the half-made client (held by the old
    # traceback) is collected now, while its event loop still runs
    if reason is not None:
        raise UsageError(f"--scheduler {address}: cannot reach the Dask scheduler ({reason})")
    return client


def start_local_cluster(n_workers: int | None) -> tuple[LocalCluster, Client]:
    """A LocalCluster of ``n_workers`` processes (one thread each) and a client of it.

    ``n_workers`` defaults to ``ELBO_AUDIT_DASK_WORKERS``, else the usable cores.
    The workers inherit this environment; each kernel call runs one thread
    (``ELBO_AUDIT_NUM_THREADS=1`` unless that is set), as the workers share the
    cores, and glibc's malloc keeps its defaults (dask's nannies would set
    ``MALLOC_TRIM_THRESHOLD_``, which slows the numpy kernels down).
    """
    if n_workers is None:
        n_workers = int(env_number(WORKERS_ENV, usable_cores(), integer=True))
    if n_workers < 1:
        raise UsageError(f"the dask backend needs at least one worker, not {n_workers}")
    _import_distributed()
    import dask
    from distributed import Client, LocalCluster

    env = {"ELBO_AUDIT_NUM_THREADS": os.environ.get("ELBO_AUDIT_NUM_THREADS", "1")}
    # The nannies' default MALLOC_TRIM_THRESHOLD_=65536 fixes glibc's mmap
    # threshold at 128 KiB, so every tile of the numpy kernels is a fresh
    # mmap (page faults): about 1.5x slower. Unset here (unless set in this
    # environment, which the workers inherit).
    with dask.config.set({_TRIM_KEY: None}):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # None still binds :8787 and warns when taken
            silence_logs=logging.ERROR,
            env=env,
        )
    try:
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return cluster, client


# (address, None) or (None, n_workers) -> the client and the LocalCluster it runs on
_Key = tuple[str | None, int | None]
_pool: dict[_Key, tuple[Client, LocalCluster | None]] = {}
_pool_lock = threading.Lock()


def _close(client: Client, cluster: LocalCluster | None) -> None:
    from distributed.utils import silence_logging_cmgr

    # a LocalCluster logs every step of its shutdown at INFO on stderr
    with silence_logging_cmgr(logging.ERROR):
        try:
            client.close()
        finally:
            if cluster is not None:
                cluster.close()


def client_for(address: str | None, *, timeout: float, n_workers: int | None) -> Client:
    """The pooled client of the scheduler at ``address``, or of the local cluster when None.

    A pooled client that is no longer running is closed and replaced.

    Raises
    ------
    UsageError
        When the scheduler cannot be reached (see :func:`connect_scheduler`).
    """
    if address is None and n_workers is None:
        n_workers = int(env_number(WORKERS_ENV, usable_cores(), integer=True))
    key: _Key = (address, None) if address is not None else (None, n_workers)
    with _pool_lock:
        hit = _pool.pop(key, None)
        if hit is not None:
            if hit[0].status == "running":
                _pool[key] = hit
                return hit[0]
            _close(*hit)
        if address is None:
            cluster, client = start_local_cluster(n_workers)
            _pool[key] = (client, cluster)
        else:
            client = connect_scheduler(address, timeout)
            _pool[key] = (client, None)
        return client


def close_all() -> int:
    """Close every pooled client and the LocalClusters started; returns how many.

    Runs at interpreter exit; call it to let go of a cluster earlier (tests,
    notebooks, after command-line runs made in this process).
    """
    with _pool_lock:
        entries = list(_pool.values())
        _pool.clear()
    for client, cluster in reversed(entries):
        _close(client, cluster)
    return len(entries)


atexit.register(close_all)
