"""Compute backends by name: the built-in numpy reference and whatever plugins register.

``--backend NAME`` (config ``estimation.backend``) picks one; without it the
available backend with the highest ``speed_rank`` runs. ``--precision``
defaults to the backend's first precision (float32 for compiled kernels, float64
for the numpy reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast, final

from .._errors import PluginError, UsageError
from .._kernels.mixture import Engine
from .._kernels.protocol import PRECISIONS, ComputeBackend, Precision
from ..hookspecs import BackendInfo
from .plugins import PluginHost

__all__ = ["BackendStatus", "backend_table", "make_engine", "resolve_engine"]


@final
@dataclass(frozen=True)
class BackendStatus:
    """One row of ``elbo-audit backends``."""

    name: str
    plugin: str
    available: bool
    reason: str
    devices: tuple[str, ...]
    precision: tuple[str, ...]
    speed_rank: int
    description: str
    backend: ComputeBackend | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "available": self.available,
            "reason": self.reason,
            "devices": list(self.devices),
            "precision": list(self.precision),
            "description": self.description,
        }


def _status(plugin: str, info: BackendInfo) -> BackendStatus:
    try:
        backend = info.factory()
        reason = backend.availability()
        devices = tuple(backend.devices()) if reason is None else ()
        rank = getattr(backend, "speed_rank", info.speed_rank)
        rank = rank if isinstance(rank, int) and not isinstance(rank, bool) else info.speed_rank
    except Exception as exc:  # noqa: BLE001 - a backend's failure is reported, not raised
        backend, reason, devices = None, f"{type(exc).__name__}: {exc}", ()
        rank = info.speed_rank
    return BackendStatus(
        info.name, plugin, reason is None, reason or "", devices, tuple(info.precisions),
        rank, info.description, backend,
    )


def _runs_on(row: BackendStatus, device: str) -> bool:
    return not row.devices or device in row.devices or device.split(":")[0] in row.devices


def _clustered(row: BackendStatus) -> bool:
    return callable(getattr(row.backend, "connect", None))


def backend_table(host: PluginHost) -> list[BackendStatus]:
    """Every registered backend with whether it can run here, fastest first."""
    rows = [_status(p, info) for p, info in host.backends().values()]
    return sorted(rows, key=lambda r: (-r.speed_rank, r.name))


def resolve_engine(
    host: PluginHost,
    name: str | None,
    precision: str | None,
    device: str | None = None,
    scheduler: str | None = None,
    *,
    adapters: bool = True,
) -> Engine:
    """The engine for ``--backend``, ``--precision``, ``--device`` and ``--scheduler``.

    Defaults: the fastest available backend (a cluster backend when a
    scheduler is named), in its own precision, on its own default device.
    A backend that runs on the CPU only ignores ``--device``, which then names
    the adapters' device; with ``adapters=False`` (saved encodings: no model
    to place) such a device would name nothing, and is refused, naming the
    backends that do run on it.
    """
    if name is not None:  # only the named backend is built and probed (a GPU
        # framework's probe can take seconds and reserve device memory)
        registered = host.backends()
        if name not in registered:
            known = ", ".join(sorted(registered))
            raise UsageError(f"--backend {name}: unknown backend (registered: {known})")
        rows = [_status(*registered[name])]
    else:
        rows = backend_table(host)
    if name is None:
        usable = [r for r in rows if r.available and (scheduler is None or _clustered(r))]
        if device is not None:  # the fastest that runs on the named device first
            usable.sort(key=lambda r: not _runs_on(r, device))
        if not usable:
            if scheduler is not None:
                raise UsageError(
                    f"--scheduler {scheduler}: no cluster backend is available "
                    "(install elbo-audit-dask)"
                )
            raise PluginError("no compute backend is available")  # pragma: no cover
        row = usable[0]
    else:
        row = rows[0]
        if not row.available:
            raise UsageError(f"--backend {name}: not available here: {row.reason}")
    if precision is not None and precision not in PRECISIONS:
        raise UsageError(f"--precision {precision}: expected float32 or float64")
    prec = precision or row.precision[0]
    if prec not in row.precision:
        raise UsageError(
            f"--precision {prec}: backend {row.name!r} computes in {', '.join(row.precision)} only"
        )
    assert row.backend is not None
    own = getattr(row.backend, "default_device", "cpu")
    dev = device or (own if isinstance(own, str) else "cpu")
    if row.devices == ("cpu",):
        if device is not None and not adapters and not _runs_on(row, device):
            raise UsageError(_unused_device(host, device, row.name))
        dev = "cpu"  # --device then names the adapters' device only
    elif not _runs_on(row, dev):
        raise UsageError(
            f"--device {dev}: backend {row.name!r} runs on {', '.join(row.devices)}"
        )
    if scheduler is not None or _clustered(row):
        if not _clustered(row):
            raise UsageError(
                f"--scheduler {scheduler}: backend {row.name!r} runs on one machine "
                "(use --backend dask)"
            )
        row.backend.connect(scheduler)  # type: ignore[attr-defined]
    return Engine(row.backend, cast(Precision, prec), dev)


def _unused_device(host: PluginHost, device: str, backend: str) -> str:
    """Why ``--device`` would be ignored, and which backends run on it (probes them all)."""
    rows = [r for r in backend_table(host) if r.available and r.devices]
    takers = [r.name for r in rows if _runs_on(r, device)]
    where = (
        f"backends that run on it: {', '.join(takers)} (choose one with --backend NAME)" if takers
        else "no backend here runs on it (" + "; ".join(f"{r.name}: {', '.join(r.devices)}" for r in rows) + ")"
    )
    return (
        f"--device {device}: backend {backend!r} runs on cpu only and saved encodings have no model "
        f"to place on a device; {where}"
    )


def make_engine(
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    *,
    scheduler: str | None = None,
    blocked: Sequence[str] = (),
) -> Engine:
    """An engine from the installed backends, as ``--backend``/``--precision``/``--device`` pick it.

    Parameters
    ----------
    backend : str, optional
        Backend name; the fastest available when omitted.
    precision : {"float32", "float64"}, optional
        The backend's own default when omitted.
    device : str, optional
    scheduler : str, optional
        Address of a Dask scheduler (a cluster backend; a local cluster when
        that backend is chosen without one).
    blocked : sequence of str
        Plugins not to load.
    """
    return resolve_engine(PluginHost(blocked=blocked), backend, precision, device, scheduler)
