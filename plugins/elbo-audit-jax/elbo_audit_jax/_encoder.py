"""The encoder: q(z|x) from ``encode_fn(params, x)``, as a core diagonal Gaussian.

``encode_fn`` may return a (mean, second) pair, a dict or a Normal-like object
with ``loc`` and ``scale``; :class:`JaxEncoder` finds which once by tracing and
runs the jitted function on padded chunks of the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from elbo_audit import DiagonalGaussian, ModelError, UsageError, posterior_from_params

from ._context import _bucket, _cached, _Context, _np64, _pad
from ._spec import POSTERIOR_PARAMS

__all__ = ["JaxEncoder"]


def _posterior_parts(out: Any, kind: str) -> tuple[Any, Any, str]:
    base = getattr(out, "base_dist", None)  # numpyro / distrax Independent
    for d in (out, base):
        if d is not None and hasattr(d, "loc") and hasattr(d, "scale"):
            return d.loc, d.scale, "std"
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], out[1], kind
    if isinstance(out, dict) and "mean" in out:
        for key in POSTERIOR_PARAMS:
            if key in out:
                return out["mean"], out[key], key
    raise TypeError(type(out).__name__)


@functools.lru_cache(maxsize=64)
def _encoder_parts(encode_fn: Callable[..., Any], posterior: str, use_jit: bool) -> Callable[..., Any]:
    """``(params, x) -> (mean, second)``, jitted once per function (compilations are reused)."""

    def parts(p: Any, x: Any) -> tuple[Any, Any]:
        out = encode_fn(p, x)
        try:
            mean, second, _ = _posterior_parts(out, posterior)
        except TypeError:
            raise ModelError(
                f"encode_fn {getattr(encode_fn, '__qualname__', encode_fn)!s} returned "
                f"{type(out).__name__}; expected a (mean, log_var) tuple or a Normal with loc and scale"
            ) from None
        return mean, second

    return jax.jit(parts) if use_jit else parts


class JaxEncoder:
    """:class:`elbo_audit.Encoder` over ``encode_fn(params, x)``."""

    def __init__(self, encode_fn: Callable[..., Any], params: Any, ctx: _Context, posterior: str) -> None:
        if posterior not in POSTERIOR_PARAMS:
            raise UsageError(
                f"{ctx.where()}: posterior={posterior!r}; expected one of {', '.join(POSTERIOR_PARAMS)}"
            )
        self.params = params
        self.ctx = ctx
        self.posterior = posterior
        self.kind = posterior
        self._encode_fn = encode_fn
        self._parts = _cached(_encoder_parts, encode_fn, posterior, ctx.use_jit)
        self._kind_known = False

    def _kind(self, x: jax.Array) -> str:
        """What the second output is: from the output's type, found once by tracing."""
        if not self._kind_known:
            found: dict[str, str] = {}

            def probe(p: Any, xb: Any) -> Any:
                out = self._encode_fn(p, xb)
                try:
                    mean, second, found["kind"] = _posterior_parts(out, self.posterior)
                except TypeError:
                    return ()  # reported by the jitted call with a clear message
                return mean, second

            jax.eval_shape(probe, self.params, x)
            self.kind = found.get("kind", self.posterior)
            self._kind_known = True
        return self.kind

    def encode(self, x: Any) -> DiagonalGaussian:
        x = np.asarray(x)
        b = int(x.shape[0])
        means, seconds = [], []
        kind = self.kind
        with self.ctx.compute():
            for start in range(0, b, self.ctx.chunk):
                xs = x[start : start + self.ctx.chunk]
                m = xs.shape[0]
                xb = self.ctx.put(_pad(xs, _bucket(m, self.ctx.chunk)))
                kind = self._kind(xb)
                mean, second = self._parts(self.params, xb)
                means.append(_np64(mean)[:m])
                seconds.append(_np64(second)[:m])
        q = posterior_from_params(
            means, seconds, kind, self.ctx.where(), b, producer="encode_fn",
            source=f"model {self.ctx.name!r}",
        )
        self.ctx.bind_latent(q.n_latent)
        return q
