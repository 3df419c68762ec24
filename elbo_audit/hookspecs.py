"""Hook specifications and the typed records that plugins return.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose
names start with ``elbo_audit_``. It is found through the entry-point group
``elbo_audit``::

    [project.entry-points.elbo_audit]
    sklearn = "elbo_audit_sklearn"

Hooks *register* things by returning records; the core then calls what was
registered, so every failure can name the plugin at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from numpy.typing import NDArray

from ._kernels.protocol import ComputeBackend
from ._model.protocols import AuditModel, Prior

__all__ = [
    "AdapterInfo",
    "BackendInfo",
    "Dataset",
    "DatasetInfo",
    "ModelRef",
    "PriorInfo",
    "elbo_audit_adapters",
    "elbo_audit_backends",
    "elbo_audit_datasets",
    "elbo_audit_priors",
    "hookimpl",
    "hookspec",
]

PROJECT = "elbo_audit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class ModelRef:
    """How the user named a model.

    Attributes
    ----------
    name : str
        Name in the report.
    factory : str or None
        ``module:function`` or ``path.py:function`` (trusted code).
    weights : Path or None
        A weights or model file (untrusted).
    adapter : str or None
        Adapter to use; found by asking every adapter when None.
    device : str
        ``cpu``, ``cuda``, ``cuda:1``, ...
    allow_unsafe : bool
        Whether pickle-based files may be loaded (recorded in the report).
    no_weights : bool
        Whether a factory's own parameters are audited on purpose, without a
        weights file (``--no-weights``; recorded in the report).
    options : dict
        Keyword arguments for the factory.
    batch_size : int
    """

    name: str
    factory: str | None = None
    weights: Path | None = None
    adapter: str | None = None
    device: str = "cpu"
    allow_unsafe: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1000
    no_weights: bool = False


@dataclass(frozen=True)
class Dataset:
    """Data to audit on: ``x`` has one data point per row (any trailing shape)."""

    name: str
    x: NDArray[Any]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter for one family of model objects.

    Attributes
    ----------
    name : str
        Adapter name (``--adapter NAME``).
    description : str
    claims : callable(obj) -> bool
        Whether this adapter can wrap the object a factory returned.
    wrap : callable(obj, ModelRef) -> AuditModel
        Loads ``ref.weights`` into ``obj`` if given and wraps it.
    file_suffixes : tuple of str
        Suffixes of whole-model files this adapter can open without a factory.
    load_file : callable(Path, ModelRef) -> obj, optional
        Opens such a file safely (never unpickles unless ``ref.allow_unsafe``).
    needs_weights : bool
        Whether a factory's object holds only initial (random) parameters until
        weights are loaded into it, as a ``torch.nn.Module`` does. A factory
        model of such an adapter without ``--weights`` is refused (exit 2)
        unless ``--no-weights`` says the factory's parameters are meant.
    """

    name: str
    description: str
    claims: Callable[[Any], bool]
    wrap: Callable[[Any, ModelRef], AuditModel]
    file_suffixes: tuple[str, ...] = ()
    load_file: Callable[[Path, ModelRef], Any] | None = None
    needs_weights: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset that ships inside an installed package (``--data NAME``)."""

    name: str
    description: str
    load: Callable[[], Dataset]


@dataclass(frozen=True)
class PriorInfo:
    """A named prior family: ``build(n_latent, options)`` returns a Prior.

    With ``fitted=True`` the prior is fitted post hoc to the model's aggregate
    posterior: ``options`` then also holds ``posteriors`` (a DiagonalGaussian
    for all N data points) and ``seed`` (an int).
    """

    name: str
    description: str
    build: Callable[[int, dict[str, Any]], Prior]
    fitted: bool = False


@dataclass(frozen=True)
class BackendInfo:
    """A compute backend: the kernels of the pairwise pass (``--backend NAME``).

    Attributes
    ----------
    name : str
        Backend name.
    description : str
    factory : callable() -> ComputeBackend
        Builds the backend (cheap; its ``availability()`` says whether it can
        run on this machine).
    precisions : tuple of str
        ``float32`` and/or ``float64``; the first is the backend's default.
    speed_rank : int
        Higher is faster; the default backend is the available one with the
        highest rank (the numpy reference has 0).
    """

    name: str
    description: str
    factory: Callable[[], ComputeBackend]
    precisions: tuple[str, ...]
    speed_rank: int = 0


@hookspec
def elbo_audit_adapters() -> Sequence[AdapterInfo]:
    """Return the model adapters this plugin provides."""
    return ()


@hookspec
def elbo_audit_datasets() -> Sequence[DatasetInfo]:
    """Return the built-in datasets this plugin provides."""
    return ()


@hookspec
def elbo_audit_priors() -> Sequence[PriorInfo]:
    """Return the prior families this plugin provides."""
    return ()


@hookspec
def elbo_audit_backends() -> Sequence[BackendInfo]:
    """Return the compute backends this plugin provides."""
    return ()
