"""Calling the model: encode every data point, decode draws of z, with every answer checked.

An adapter's encoder and decoder are user code: what they return is checked for
type, shape and finiteness here, and every failure becomes a ModelError that
names the model and the data points.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import ModelError
from .._estimation.mc import TermEstimate, stratified_estimate
from .._model.families import DiagonalGaussian
from .._model.protocols import Decoder, Encoder
from .._reporting import SILENT, Reporter

__all__ = [
    "call_decoder", "call_decoder_grad", "check_gradient", "encode_all", "reconstruction_term",
    "supplied_reconstruction", "user_code",
]

_RECON = "Monte Carlo over z ~ q(z|x_n), {k} draw(s) per data point"


def _bad_rows(mask: NDArray[np.bool_], offset: int) -> str:
    rows = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)) + offset
    more = f" and {rows.size - 5} more" if rows.size > 5 else ""
    return ", ".join(str(int(r)) for r in rows[:5]) + more


def encode_all(
    encoder: Encoder, x: NDArray[Any], batch_size: int, model: str, reporter: Reporter = SILENT
) -> DiagonalGaussian:
    """Encode every row of ``x``, checking what the model returns.

    Raises
    ------
    ModelError
        The encoder raised, returned the wrong type or shape, non-finite or
        non-positive values, or values beyond ``ENCODING_BOUNDS``; the message
        names the model and data points.
    """
    n = x.shape[0]
    means: list[NDArray[np.float64]] = []
    stds: list[NDArray[np.float64]] = []
    with reporter.task(f"encoding {model}", -(-n // batch_size)) as bar:
        for start in range(0, n, batch_size):
            _encode_batch(encoder, x, start, batch_size, model, means, stds)
            bar.advance()
    mean, std = np.concatenate(means), np.concatenate(stds)
    if mean.ndim != 2 or len({m.shape[1] for m in means}) != 1:
        raise ModelError(f"model {model!r}: encoder returned posteriors of varying latent size")
    q = DiagonalGaussian(mean, std, source=f"model {model!r}").require_mixture()
    beyond = q.beyond_bounds()
    if beyond is not None:
        raise ModelError(
            f"model {model!r}: encoder returned a {beyond}; beyond it the terms overflow "
            "(docs/posteriors.md, value ranges)"
        )
    return q


def _encode_batch(
    encoder: Encoder, x: NDArray[Any], start: int, batch_size: int, model: str,
    means: list[NDArray[np.float64]], stds: list[NDArray[np.float64]],
) -> None:
    xb = x[start : start + batch_size]
    with user_code(model, "encoder", start, start + len(xb)):
        q = encoder.encode(xb)
    if not isinstance(q, DiagonalGaussian):
        raise ModelError(
            f"model {model!r}: encoder returned {type(q).__name__}, expected DiagonalGaussian"
        )
    if q.mean.shape[0] != xb.shape[0]:
        raise ModelError(
            f"model {model!r}: encoder returned {q.mean.shape[0]} posteriors for a batch of "
            f"{xb.shape[0]} data points (starting at {start})"
        )
    means.append(q.mean)
    stds.append(q.std)


def _check_loglik(ll: Any, shape: tuple[int, int], start: int, model: str) -> NDArray[np.float64]:
    ll = np.asarray(ll, dtype=np.float64)
    if ll.shape != shape:
        raise ModelError(
            f"model {model!r}: decoder returned log-likelihoods of shape {ll.shape}, "
            f"expected {shape} (batch starting at data point {start})"
        )
    bad = ~np.isfinite(ll)
    if bad.any():
        raise ModelError(
            f"model {model!r}: decoder returned NaN or infinite log-likelihoods at data points "
            f"{_bad_rows(bad, start)}"
        )
    return np.asarray(ll, np.float64)


def reconstruction_term(
    decoder: Decoder,
    x: NDArray[Any],
    q: DiagonalGaussian,
    rng: np.random.Generator,
    k: int,
    batch_size: int,
    model: str,
    reporter: Reporter = SILENT,
) -> TermEstimate:
    """(1/N) sum_n E_{q(z|x_n)}[log p(x_n | z)] by Monte Carlo.

    References
    ----------
    .. [1] D. P. Kingma and M. Welling, "Auto-encoding variational Bayes", ICLR 2014.
    """
    n = q.n_points
    f = np.empty((n, k))
    with reporter.task(f"decoding {model}", -(-n // batch_size)) as bar:
        for start in range(0, n, batch_size):
            f[start : start + batch_size] = _decode_batch(decoder, x, q, rng, k, start, batch_size, model)
            bar.advance()
    return stratified_estimate(f, None, _RECON.format(k=k))


def _decode_batch(
    decoder: Decoder, x: NDArray[Any], q: DiagonalGaussian, rng: np.random.Generator,
    k: int, start: int, batch_size: int, model: str,
) -> NDArray[np.float64]:
    n = q.n_points
    stop = min(n, start + batch_size)
    idx = np.arange(start, stop)
    eps = rng.standard_normal((idx.size, k, q.n_latent))
    z = q.mean[idx, None, :] + q.std[idx, None, :] * eps
    return call_decoder(decoder, x, z, start, stop, model)


def call_decoder(
    decoder: Decoder, x: NDArray[Any], z: NDArray[np.float64], start: int, stop: int, model: str
) -> NDArray[np.float64]:
    """log p(x_b | z_bk) for the data points start..stop-1, checked (ModelError naming them)."""
    with user_code(model, "decoder", start, stop):
        ll = decoder.log_likelihood(x[start:stop], z)
    return _check_loglik(ll, (stop - start, z.shape[1]), start, model)


def call_decoder_grad(
    grad: Callable[..., Any], x: NDArray[Any], z: NDArray[np.float64], start: int, stop: int, model: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The decoder's ``log_likelihood_grad`` for the data points start..stop-1, checked."""
    with user_code(model, "log_likelihood_grad", start, stop):
        out = grad(x[start:stop], z)
    return check_gradient(out, z.shape, start, model)


@contextlib.contextmanager
def user_code(model: str, what: str, start: int, stop: int) -> Iterator[None]:
    """Whatever the model's own code raises becomes a ModelError naming the model and data points."""
    try:
        yield
    except ModelError as exc:
        raise ModelError(f"{exc} (in the batch starting at data point {start})") from exc
    except Exception as exc:
        raise ModelError(
            f"model {model!r}: {what} raised on data points {start}..{stop - 1}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def check_gradient(
    out: Any, shape: tuple[int, int, int], start: int, model: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The decoder's (log-likelihoods, gradients), checked for shape and finiteness."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ModelError(
            f"model {model!r}: log_likelihood_grad must return (log-likelihoods, gradients), "
            f"got {type(out).__name__}"
        )
    ll, g = (np.asarray(a, np.float64) for a in out)
    if ll.shape != shape[:2] or g.shape != shape:
        raise ModelError(
            f"model {model!r}: log_likelihood_grad returned shapes {ll.shape} and {g.shape}, expected "
            f"{shape[:2]} and {shape} (batch starting at data point {start})"
        )
    bad = ~(np.isfinite(ll) & np.isfinite(g).all(axis=2))
    if bad.any():
        row = start + int(np.flatnonzero(bad.any(axis=1))[0])
        raise ModelError(
            f"model {model!r}: decoder gradient is NaN or infinite at data point {row} "
            "(while refining the posteriors)"
        )
    return ll, g


def supplied_reconstruction(samples: NDArray[np.float64]) -> TermEstimate:
    """``reconstruction`` from user-supplied samples of log p(x_n | z), shape (N,) or (N, K)."""
    f = samples.reshape(samples.shape[0], -1)
    how = f"user-supplied Monte Carlo samples, {f.shape[1]} per data point"
    if f.shape[1] == 1:
        how += " (standard error includes the spread between data points: conservative)"
    return stratified_estimate(f, None, how)
