"""The priors: what a JaxVAE says about p(z), as a core :class:`elbo_audit.Prior`.

A Gaussian or mixture whose parameters are keys of the params, callables of
them or arrays, a VampPrior, a JAX log-density (:class:`JaxFunctionPrior`), a
prior of elbo_audit itself or the standard normal, chosen by :func:`build_prior`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from elbo_audit import (
    DiagonalGaussianPrior,
    LazyStandardNormal,
    MixtureOfGaussians,
    ModelError,
    StandardNormal,
    UsageError,
    vamp_prior,
)
from elbo_audit import Prior as CorePrior

from ._context import _bucket, _Context, _np64, _pad
from ._encoder import JaxEncoder
from ._spec import GaussianPrior, JaxPrior, MixturePrior, VampPrior
from ._weights import flatten_params

__all__ = ["JaxFunctionPrior", "build_prior"]

_PRIOR_CHUNK = 8192


class JaxFunctionPrior:
    """A prior given by a JAX log-density ``log_prob_fn(params, z)`` (see :class:`JaxPrior`)."""

    def __init__(self, spec: JaxPrior, params: Any, ctx: _Context) -> None:
        self.spec = spec
        self.params = params
        self.ctx = ctx
        self.name = spec.name
        self.factorised = spec.marginal_log_prob_fn is not None
        self._lp = ctx.jit(spec.log_prob_fn)
        self._mlp = ctx.jit(spec.marginal_log_prob_fn) if self.factorised else None
        self._grad = ctx.jit(jax.grad(lambda p, z: spec.log_prob_fn(p, z).sum(), argnums=1))

    @property
    def n_latent(self) -> int:
        d = self.spec.n_latent or self.ctx.n_latent
        if d is None:
            raise ModelError(
                f"{self.ctx.where()}: the latent size is unknown until the encoder has run; "
                "give JaxPrior(n_latent=...)"
            )
        return int(d)

    def _call(self, fn: Callable[..., Any], z: np.ndarray, ndim: int, label: str) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        out = []
        with self.ctx.compute():
            for s in range(0, z.shape[0], _PRIOR_CHUNK):
                zc = z[s : s + _PRIOR_CHUNK]
                r = _np64(fn(self.params, self.ctx.put(_pad(zc, _bucket(zc.shape[0], _PRIOR_CHUNK)))))
                r = r[: zc.shape[0]]
                if r.shape != zc.shape[:ndim]:
                    raise ModelError(
                        f"{self.ctx.where()}: prior {label} returned shape {r.shape}, expected "
                        f"{zc.shape[:ndim]}"
                    )
                out.append(r)
        return np.concatenate(out) if out else np.zeros(z.shape[:ndim])

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        return self._call(self._lp, z, 1, "log_prob_fn")

    def grad_log_prob(self, z: np.ndarray) -> np.ndarray:
        """d log p(z) / dz by ``jax.grad`` (rows independent), shape (S, D)."""
        return self._call(self._grad, z, 2, "log_prob_fn's gradient")

    def marginal_log_prob(self, z: np.ndarray) -> np.ndarray:
        if self._mlp is None:
            raise ModelError(f"{self.ctx.where()}: prior {self.name!r} is not factorised")
        return self._call(self._mlp, z, 2, "marginal_log_prob_fn")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.spec.sample is None:
            raise ModelError(f"{self.ctx.where()}: prior {self.name!r} has no sampler")
        return _np64(self.spec.sample(rng, n))


def _lookup(params: Any, ref: Any, what: str, where: str) -> np.ndarray | None:
    if ref is None:
        return None
    if isinstance(ref, str):
        flat = flatten_params(params)
        if ref not in flat:
            near = ", ".join(sorted(flat)[:5])
            raise ModelError(f"{where}: {what} refers to {ref!r}, not a key of the params (keys: {near}, ...)")
        return np.asarray(flat[ref], dtype=np.float64)
    if callable(ref):
        return _np64(ref(params))
    return _np64(ref)


def _std(params: Any, spec: Any, where: str) -> np.ndarray:
    std = _lookup(params, spec.std, "std", where)
    log_std = _lookup(params, spec.log_std, "log_std", where)
    if (std is None) == (log_std is None):
        raise UsageError(f"{where}: give exactly one of std and log_std for the prior")
    return std if std is not None else np.exp(log_std)


def build_prior(prior: Any, params: Any, ctx: _Context, encoder: JaxEncoder) -> Any:
    """Turn what the spec says about the prior into a core :class:`elbo_audit.Prior`."""
    where = ctx.where()
    if prior is None or prior == "standard_normal":
        if ctx.n_latent is not None:
            return StandardNormal(ctx.n_latent)
        return LazyStandardNormal(lambda: ctx.n_latent, where, "give JaxVAE(latent_dim=...)")
    if isinstance(prior, str):
        raise UsageError(f"{where}: unknown prior {prior!r}")
    if isinstance(prior, GaussianPrior):
        mean = _lookup(params, prior.mean, "mean", where)
        return DiagonalGaussianPrior(mean, _std(params, prior, where), name=prior.name)
    if isinstance(prior, MixturePrior):
        logits = _lookup(params, prior.logits, "logits", where)
        w = np.exp(logits - logits.max())
        return MixtureOfGaussians(
            w / w.sum(), _lookup(params, prior.mean, "mean", where), _std(params, prior, where), name=prior.name
        )
    if isinstance(prior, VampPrior):
        pseudo = prior.pseudo_inputs
        if isinstance(pseudo, str) or callable(pseudo):
            with ctx.compute():
                pseudo = _lookup(params, pseudo, "pseudo_inputs", where)
        return vamp_prior(encoder.encode(np.asarray(pseudo)))
    if isinstance(prior, JaxPrior):
        return JaxFunctionPrior(prior, params, ctx)
    if isinstance(prior, CorePrior):
        return prior
    raise ModelError(
        f"{where}: cannot use a {type(prior).__name__} as the prior; give 'standard_normal', a "
        "GaussianPrior, MixturePrior, VampPrior, JaxPrior or a prior of elbo_audit"
    )
