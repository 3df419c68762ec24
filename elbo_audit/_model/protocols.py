"""Backend-neutral protocols for the pieces of a VAE.

The core never sees a tensor: an adapter (PyTorch, JAX, scikit-learn, ...)
wraps a model so that its encoder returns posterior parameters as numpy arrays,
its decoder returns log-likelihoods as numpy arrays, and its prior evaluates
log-densities of numpy arrays. All randomness is drawn by the core, so the
same weights audited in two frameworks see the same noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from .families import DiagonalGaussian

__all__ = ["AuditModel", "Decoder", "Encoder", "Prior"]


@runtime_checkable
class Prior(Protocol):
    """A prior p(z) over D latents.

    Required: ``name``, ``n_latent``, ``factorised``, ``log_prob`` and
    ``sample``. Optional: ``cross_entropy(q) -> (N,)`` (closed-form
    -E_q[log p(z)], enables an analytic ``avg_kl``) and
    ``marginal_log_prob(z) -> (S, D)`` (needed for ``dimwise_kl`` when
    ``factorised`` is true) and ``marginal_cross_entropy(q) -> (N, D)``
    (closed-form -E_q[log p_j(z_j)] per latent, enables ``latent_kl``) and
    ``grad_log_prob(z) -> (S, D)`` (d log p(z)/dz, used by ``--refine-steps``;
    central differences of ``log_prob`` without it).
    """

    @property
    def name(self) -> str: ...

    @property
    def n_latent(self) -> int: ...

    @property
    def factorised(self) -> bool: ...

    def log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log p(z) for z of shape (S, D); returns shape (S,)."""
        ...

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """n draws from p(z); returns shape (n, D)."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """Maps a batch of data to the parameters of q(z | x)."""

    def encode(self, x: NDArray[Any]) -> DiagonalGaussian:
        """Posteriors for a batch ``x`` of B data points (B rows)."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """Evaluates log p(x | z).

    Optional: ``log_likelihood_grad(x, z) -> (ll, grad)``, the log-likelihoods
    (B, K) and their gradients in z (B, K, D), computed by the adapter's
    framework; ``--refine-steps`` needs it.
    """

    def log_likelihood(self, x: NDArray[Any], z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log p(x_b | z_bk) for x of B rows and z of shape (B, K, D); returns (B, K)."""
        ...


@dataclass
class AuditModel:
    """A model ready for the audit: encoder, optional decoder and prior.

    Parameters
    ----------
    name : str
        The model's name in reports and messages.
    encoder : Encoder
    prior : Prior
    decoder : Decoder, optional
        Without a decoder the reconstruction side is not evaluated.
    adapter : str
        The plugin that built it.
    attrs : dict
        Provenance (artifacts and their sha256, flags) recorded in the report.
    release : callable, optional
        Called once by :meth:`close`: an adapter that had to change its caller's
        objects to run them (a torch module moved to the audit's device and put
        into eval mode) puts them back here.

    Notes
    -----
    Use it as a context manager, or call :meth:`close` when the audit is done::

        with adapter.wrap(module, ref) as model:
            audit = audit_model(model, x, settings)
    """

    name: str
    encoder: Encoder
    prior: Prior
    decoder: Decoder | None = None
    adapter: str = "core"
    attrs: dict[str, Any] = field(default_factory=dict)
    release: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def close(self) -> None:
        """Give the caller's objects back as they were (idempotent)."""
        release, self.release = self.release, None
        if release is not None:
            release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
