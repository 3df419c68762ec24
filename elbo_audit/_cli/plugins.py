"""The plugin host: finds, loads and queries elbo-audit plugins.

Plugins come only from the ``elbo_audit`` entry-point group of installed
distributions (never from the current folder) plus the core's own built-in
plugin. Each hook implementation is called on its own, so a plugin that raises
or returns the wrong type is named in the error.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pluggy

from .. import hookspecs
from .._errors import PluginError, UsageError
from .._version import __version__
from ..hookspecs import PROJECT, AdapterInfo, BackendInfo, DatasetInfo, PriorInfo
from . import builtin as _builtin

__all__ = ["PluginHost", "PluginRecord"]

T = TypeVar("T")


@dataclass(frozen=True)
class PluginRecord:
    """What ``elbo-audit plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    status: str


class PluginHost:
    """Loads plugins and collects what they register.

    Parameters
    ----------
    blocked : sequence of str
        Plugin names not to load (``-p no:NAME``).
    entry_points : bool
        Whether to load installed plugins (tests may turn this off).
    """

    def __init__(self, blocked: Sequence[str] = (), entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._records: dict[str, PluginRecord] = {}
        self.failures: dict[str, str] = {}
        for name in blocked:
            self.pm.set_blocked(name)
        self.register(_builtin, "core", "elbo-audit", _version())
        if entry_points:
            self._load_entry_points()

    def register(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> None:
        """Register a plugin object under ``name`` (no-op when blocked)."""
        if self.pm.is_blocked(name):
            self._records[name] = PluginRecord(name, distribution, version, (), "blocked")
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy validates hook signatures here
            msg = f"plugin {name!r} ({distribution or 'unknown distribution'}) is invalid: {exc}"
            self.failures[name] = msg
            self._records[name] = PluginRecord(name, distribution, version, (), f"failed: {exc}")
            return
        hooks = tuple(
            sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        )
        self._records[name] = PluginRecord(name, distribution, version, hooks, "loaded")

    def _load_entry_points(self) -> None:
        for ep in sorted(md.entry_points(group=PROJECT), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in self._records:
                continue
            if self.pm.is_blocked(ep.name):
                self._records[ep.name] = PluginRecord(ep.name, dist, version, (), "blocked")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                msg = (
                    f"plugin {ep.name!r} (distribution {dist} {version}) failed to import: "
                    f"{type(exc).__name__}: {exc} (block it with -p no:{ep.name})"
                )
                self.failures[ep.name] = msg
                self._records[ep.name] = PluginRecord(ep.name, dist, version, (), f"failed: {exc}")
                continue
            self.register(plugin, ep.name, dist, version)

    def records(self) -> list[PluginRecord]:
        """Every plugin seen, loaded or not."""
        return list(self._records.values())

    def raise_failures(self) -> None:
        """Raise the first plugin failure, if any, as a :class:`PluginError`."""
        for msg in self.failures.values():
            raise PluginError(msg)

    def _collect(self, hook: str, kind: type[T]) -> list[tuple[str, T]]:
        out: list[tuple[str, T]] = []
        caller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            try:
                result: Iterable[Any] = impl.function() or ()
                items = list(result)
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} raised in {hook}: {type(exc).__name__}: {exc}"
                ) from exc
            for item in items:
                if not isinstance(item, kind):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} returned {type(item).__name__} from {hook}, "
                        f"expected {kind.__name__}"
                    )
                out.append((impl.plugin_name, item))
        return out

    def adapters(self) -> dict[str, tuple[str, AdapterInfo]]:
        """Registered adapters by name, with the plugin that provided each."""
        return {a.name: (p, a) for p, a in self._collect("elbo_audit_adapters", AdapterInfo)}

    def datasets(self) -> dict[str, tuple[str, DatasetInfo]]:
        """Registered built-in datasets by name."""
        return {d.name: (p, d) for p, d in self._collect("elbo_audit_datasets", DatasetInfo)}

    def priors(self) -> dict[str, tuple[str, PriorInfo]]:
        """Registered prior families by name."""
        return {d.name: (p, d) for p, d in self._collect("elbo_audit_priors", PriorInfo)}

    def backends(self) -> dict[str, tuple[str, BackendInfo]]:
        """Registered compute backends by name."""
        return {b.name: (p, b) for p, b in self._collect("elbo_audit_backends", BackendInfo)}

    def adapter(self, name: str) -> tuple[str, AdapterInfo]:
        """The adapter called ``name``."""
        found = self.adapters()
        if name not in found:
            known = ", ".join(sorted(found)) or "none installed"
            raise UsageError(f"unknown adapter {name!r} (installed: {known})")
        return found[name]


def _version() -> str:
    return __version__
