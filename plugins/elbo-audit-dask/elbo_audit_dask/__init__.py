"""Cluster compute backend for elbo-audit: the pairwise pass on Dask workers.

Registered as the ``dask`` backend through the ``elbo_audit`` entry-point
group (``--backend dask``, ``--scheduler tcp://host:8786``). The core's driver
centres, splits float32-unsafe components and hands over many draws per call;
this backend scatters each mixture once to every worker, runs one task per
chunk of :data:`elbo_audit._kernels.mixture.DEFAULT_CHUNK` draws on the best
backend each worker has, and collects the results in order, so they equal a
single-machine run with the same inner backend.

This module is the plugin object itself: it carries the hook implementation.
"""

from __future__ import annotations

from ._backend import CHUNK_DRAWS, DaskBackend
from ._cluster import close_all
from ._mixture import DaskMixture
from ._version import __version__
from .plugin import elbo_audit_backends, hookimpl

__all__ = [
    "CHUNK_DRAWS",
    "DaskBackend",
    "DaskMixture",
    "__version__",
    "close_all",
    "elbo_audit_backends",
    "hookimpl",
]
