"""What a conformance check is given (:class:`CheckContext`), and the helpers the checks share."""

from __future__ import annotations

import unittest
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from .._audit.audit import AuditSettings
from .._model.families import DiagonalGaussian
from .._model.protocols import AuditModel, Prior

__all__ = ["FLOAT32_RTOL", "Z_LIMIT", "CheckContext"]

#: Relative tolerance for results that may differ by float32 rounding only
#: (the same data point in batches of different sizes: BLAS kernels block
#: differently). A few units of float32 epsilon (1.2e-7) times sqrt(fan-in).
FLOAT32_RTOL = 1e-5

#: A Monte Carlo comparison fails beyond this many standard errors (a false
#: alarm has probability below 1e-6 under a normal approximation).
Z_LIMIT = 5.0

_SHAPE_POINTS = 16


@dataclass
class CheckContext:
    """What a check needs.

    Parameters
    ----------
    model : AuditModel
    x : ndarray
        Data the model accepts (at least 8 points; a few hundred for the
        statistical checks).
    reference_prior : Prior, optional
        The core's equivalent of the model's prior, built independently (e.g.
        ``StandardNormal(D)`` or ``MixtureOfGaussians(w, mu, sigma)`` from the
        parameters the test put into the model).
    load : callable, optional
        ``load(path) -> AuditModel``: how the adapter opens a weights file,
        for the unsafe-file check.
    unsafe_file : path, optional
        A booby-trapped file :func:`load` must refuse (see :func:`write_pickle_trap`).
    marker : path, optional
        The file the trap's payload would create.
    settings : AuditSettings
        For the audit-level checks.
    """

    model: AuditModel
    x: NDArray[Any]
    reference_prior: Prior | None = None
    load: Callable[[Path], Any] | None = None
    unsafe_file: Path | None = None
    marker: Path | None = None
    settings: AuditSettings = field(default_factory=lambda: AuditSettings(seed=12345))


# ----------------------------------------------------------------------------- helpers


def _skip(why: str) -> NoReturn:
    raise unittest.SkipTest(why)


def _close(a: NDArray[Any], b: NDArray[Any], rtol: float, atol: float, what: str) -> None:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape} differ"
    err = np.abs(a - b)
    tol = atol + rtol * np.abs(b)
    if not (err <= tol).all():
        i = np.unravel_index(int(np.argmax(err - tol)), err.shape)
        raise AssertionError(
            f"{what}: {int((err > tol).sum())} of {err.size} values differ; worst at {tuple(int(j) for j in i)}: "
            f"{a[i]!r} vs {b[i]!r} (tolerance {tol[i]:.3g})"
        )


def _float64_array(value: Any, shape: tuple[int, ...], what: str) -> NDArray[np.float64]:
    assert isinstance(value, np.ndarray), f"{what} returned {type(value).__name__}, not a numpy array"
    assert value.dtype == np.float64, f"{what} returned dtype {value.dtype}, not float64"
    assert value.shape == shape, f"{what} returned shape {value.shape}, expected {shape}"
    assert np.isfinite(value).all(), f"{what} returned non-finite values"
    return value


def _subset(x: NDArray[Any], n: int) -> NDArray[Any]:
    assert x.shape[0] >= 8, f"the checks need at least 8 data points, got {x.shape[0]}"
    return x[: min(n, x.shape[0])]


def _encode(ctx: CheckContext, x: NDArray[Any]) -> DiagonalGaussian:
    q = ctx.model.encoder.encode(x)
    assert isinstance(q, DiagonalGaussian), (
        f"encode returned {type(q).__name__}, not elbo_audit.DiagonalGaussian"
    )
    return q


class _WithoutClosedForm:
    """A prior seen without its ``cross_entropy`` (forces the Monte Carlo avg_kl)."""

    def __init__(self, prior: Prior) -> None:
        self._prior = prior
        self.name = prior.name

    @property
    def n_latent(self) -> int:
        return self._prior.n_latent

    @property
    def factorised(self) -> bool:
        return self._prior.factorised

    def log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._prior.log_prob(z)

    def marginal_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        # marginal_log_prob is an optional member, outside the Prior protocol
        return self._prior.marginal_log_prob(z)  # type: ignore[attr-defined, no-any-return]

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return self._prior.sample(rng, n)
