"""The decoder: log p(x|z) of ``decode_fn(params, z)`` under a named or given likelihood.

The named likelihoods are per-element functions of the decoder's output and x
(:func:`elementwise_log_likelihood`); :class:`JaxDecoder` checks shapes and the
data's support, and sums each data point's elements in float64 on the host.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from elbo_audit import ModelError, UsageError

from ._context import _bucket, _cached, _Context, _np64, _pad, _rows
from ._spec import LIKELIHOODS

__all__ = ["JaxDecoder", "elementwise_log_likelihood"]


# ----------------------------------------------------------------------------- likelihoods


def _bernoulli(logits: jax.Array, x: jax.Array) -> jax.Array:
    return x * logits - jnp.logaddexp(0.0, logits)


def _cb_log_norm(logits: jax.Array) -> jax.Array:
    """log C of the continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019), from the logits l.

    C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) with lambda = sigmoid(l)
    is l / tanh(l / 2): finite for every l, log 2 at l = 0, where the series
    log 2 + l^2/12 - 7 l^4/1440 (error O(l^6)) replaces the 0/0 form.
    """
    small = jnp.abs(logits) < 1e-2
    safe = jnp.where(small, jnp.ones_like(logits), logits)
    exact = jnp.log(safe / jnp.tanh(safe / 2.0))
    l2 = logits * logits
    series = math.log(2.0) + l2 / 12.0 - 7.0 * l2 * l2 / 1440.0
    return jnp.where(small, series, exact)


def _continuous_bernoulli(logits: jax.Array, x: jax.Array) -> jax.Array:
    return _bernoulli(logits, x) + _cb_log_norm(logits)


def _categorical(logits: jax.Array, x: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    idx = x.astype(jnp.int32)[..., None]
    return jnp.take_along_axis(logp, idx, axis=-1)[..., 0]


def _normal(out: Any, x: jax.Array) -> jax.Array:
    mean, log_var = out
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * jnp.exp(-log_var))


_ELEMENTWISE: dict[str, Callable[[Any, jax.Array], jax.Array]] = {
    "bernoulli": _bernoulli,
    "continuous_bernoulli": _continuous_bernoulli,
    "categorical": _categorical,
    "normal": _normal,
}


def elementwise_log_likelihood(name: str, output: Any, x: Any) -> jax.Array:
    """Per-element log p(x | output) of a named likelihood (x shaped like the output)."""
    return _ELEMENTWISE[name](output, x)


def _target_shape(name: str, out: Any) -> tuple[int, ...] | None:
    """The shape x must take to line up with the decoder's output."""
    if name in ("bernoulli", "continuous_bernoulli"):
        return tuple(out.shape)
    if name == "categorical":
        return tuple(out.shape[:-1])
    if name == "normal":
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            return None
        return tuple(out[0].shape)
    return None

# ----------------------------------------------------------------------------- decoder


@functools.lru_cache(maxsize=64)
def _decoder_fn(decode_fn: Callable[..., Any], likelihood: Any, use_jit: bool) -> Callable[..., Any]:
    """``(params, x, z) -> per-element log p(x | decode_fn(params, z))``, jitted once per pair."""
    elementwise = _ELEMENTWISE[likelihood] if isinstance(likelihood, str) else likelihood

    def fn(p: Any, x: Any, z: Any) -> Any:
        return elementwise(decode_fn(p, z), x)

    return jax.jit(fn) if use_jit else fn


@functools.lru_cache(maxsize=64)
def _decoder_grad_fn(decode_fn: Callable[..., Any], likelihood: Any, use_jit: bool) -> Callable[..., Any]:
    """``(params, x, z) -> ((sum, per-row log p(x|z)), d sum / dz)``: each row's own gradient."""
    elementwise = _ELEMENTWISE[likelihood] if isinstance(likelihood, str) else likelihood

    def total(p: Any, x: Any, z: Any) -> tuple[Any, Any]:
        lp = elementwise(decode_fn(p, z), x)
        rows = lp.reshape(lp.shape[0], -1).sum(axis=1)
        return rows.sum(), rows

    fn = jax.value_and_grad(total, argnums=2, has_aux=True)
    return jax.jit(fn) if use_jit else fn


class JaxDecoder:
    """:class:`elbo_audit.Decoder` over ``decode_fn(params, z)`` and a likelihood."""

    def __init__(self, decode_fn: Callable[..., Any], params: Any, ctx: _Context, likelihood: Any) -> None:
        self.params = params
        self.ctx = ctx
        self.decode_fn = decode_fn
        if isinstance(likelihood, str):
            if likelihood not in _ELEMENTWISE:
                raise UsageError(
                    f"{ctx.where()}: unknown likelihood {likelihood!r}; expected one of "
                    f"{', '.join(LIKELIHOODS)} or a callable"
                )
            self.name = likelihood
        elif callable(likelihood):
            self.name = getattr(likelihood, "__name__", "custom")
        else:
            raise UsageError(f"{ctx.where()}: likelihood must be a name or a callable")
        self.named = isinstance(likelihood, str)
        self._fn = _cached(_decoder_fn, decode_fn, likelihood, ctx.use_jit)
        self._grad_fn = _cached(_decoder_grad_fn, decode_fn, likelihood, ctx.use_jit)
        self._shapes: dict[tuple[int, int], Any] = {}

    def _out_struct(self, z: jax.Array) -> Any:
        key = tuple(z.shape)
        if key not in self._shapes:
            self._shapes[key] = jax.eval_shape(self.decode_fn, self.params, z)
        return self._shapes[key]

    def _check_support(self, x: np.ndarray, levels: int | None) -> None:
        name = self.name
        if name == "bernoulli":
            bad = (x != 0) & (x != 1)
            what = "{0, 1}"
        elif name == "continuous_bernoulli":
            bad = ~((x >= 0) & (x <= 1))
            what = "[0, 1]"
        elif name == "categorical":
            bad = ~((x == np.round(x)) & (x >= 0) & (x < (levels or 0)))
            what = f"integers 0..{(levels or 0) - 1}"
        else:
            bad = ~np.isfinite(x)
            what = "finite reals"
        if bad.any():
            hint = "; binarize the data (--binarize T) or use a likelihood for grey levels" if name == "bernoulli" else ""
            raise ModelError(
                f"{self.ctx.where()}: data at rows {_rows(bad)} of the batch lie outside the support "
                f"of the decoder's {name} likelihood ({what}) (e.g. value {float(x[bad][0]):g}){hint}"
            )

    def _inputs(self, x: Any, z: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x)
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 3 or z.shape[0] != x.shape[0]:
            raise ModelError(
                f"{self.ctx.where()}: {what} needs z of shape (B, K, D) with B = "
                f"{x.shape[0]}, got {z.shape}"
            )
        return x, z

    def _chunks(self, x: np.ndarray, z: np.ndarray) -> Iterator[tuple[int, int, jax.Array, jax.Array]]:
        """(start, stop, x rows, z rows) on the device, padded to a bucket, after the checks."""
        b, k, d = z.shape
        zf = z.reshape(b * k, d)
        per_x = math.prod(x.shape[1:])
        checked = False
        for start in range(0, b * k, self.ctx.chunk):
            stop = min(b * k, start + self.ctx.chunk)
            m = stop - start
            rows = _bucket(m, self.ctx.chunk)
            zc = self.ctx.put(_pad(zf[start:stop], rows))
            xr = _pad(x[np.arange(start, stop) // k], rows)
            if self.named:
                struct = self._out_struct(zc)
                shape = _target_shape(self.name, struct)
                if shape is None:
                    raise ModelError(
                        f"{self.ctx.where()}: likelihood 'normal' needs decode_fn to return "
                        "(mean, log_var)"
                    )
                if not shape or shape[0] != rows or math.prod(shape[1:]) != per_x:
                    raise ModelError(
                        f"{self.ctx.where()}: decode_fn returned output of shape {shape} (for the "
                        f"{self.name} likelihood) for {rows} latents and data points of shape "
                        f"{x.shape[1:]}; expected ({rows}, ...) with {per_x} values per row"
                    )
                if not checked:
                    levels = int(struct.shape[-1]) if self.name == "categorical" else None
                    self._check_support(x, levels)
                    checked = True
                xr = xr.reshape(shape)
            yield start, stop, self.ctx.put(xr), zc

    def _rowwise(self, lp: np.ndarray, rows: int, m: int) -> np.ndarray:
        if lp.ndim < 1 or lp.shape[0] != rows:
            raise ModelError(
                f"{self.ctx.where()}: the likelihood returned shape {lp.shape} for {rows} latents"
            )
        return lp[:m].reshape(m, -1).sum(axis=1)

    def log_likelihood(self, x: Any, z: Any) -> np.ndarray:
        x, z = self._inputs(x, z, "log_likelihood")
        b, k, _ = z.shape
        out = np.empty(b * k)
        with self.ctx.compute():
            for start, stop, xr, zc in self._chunks(x, z):
                lp = _np64(self._fn(self.params, xr, zc))
                out[start:stop] = self._rowwise(lp, zc.shape[0], stop - start)
        return out.reshape(b, k)

    def log_likelihood_grad(self, x: Any, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """log p(x_b | z_bk) and its gradient in z by ``jax.grad``: (B, K) and (B, K, D)."""
        x, z = self._inputs(x, z, "log_likelihood_grad")
        b, k, d = z.shape
        out = np.empty(b * k)
        grad = np.empty((b * k, d))
        with self.ctx.compute():
            for start, stop, xr, zc in self._chunks(x, z):
                (_, rows), g = self._grad_fn(self.params, xr, zc)
                m = stop - start
                out[start:stop] = self._rowwise(_np64(rows), zc.shape[0], m)
                grad[start:stop] = _np64(g)[:m]
        return out.reshape(b, k), grad.reshape(b, k, d)
