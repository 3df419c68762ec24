"""The priors: what a TorchVAE says about p(z), as a core :class:`elbo_audit.Prior`.

A ``torch.distributions`` object over (D,) or a module returning one
(:class:`TorchDistributionPrior`), a log-density callable
(:class:`TorchCallablePrior`), a VampPrior, a prior of elbo_audit itself or
the standard normal, chosen by :func:`build_prior`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import distributions as td

from elbo_audit import (
    LazyStandardNormal,
    ModelError,
    StandardNormal,
    UsageError,
    vamp_prior,
)
from elbo_audit import Prior as CorePrior

from ._networks import TorchEncoder, _Context, _np64, full_precision
from ._spec import TorchPrior, VampPrior

__all__ = ["TorchCallablePrior", "TorchDistributionPrior", "build_prior"]

_PRIOR_CHUNK = 8192


def _as_float64(dist: td.Distribution) -> td.Distribution:
    """The same distribution with float64 parameters on the CPU, where we know how."""
    if isinstance(dist, td.Normal):
        return td.Normal(_cpu64(dist.loc), _cpu64(dist.scale), validate_args=False)
    if isinstance(dist, td.Independent):
        return td.Independent(
            _as_float64(dist.base_dist), dist.reinterpreted_batch_ndims, validate_args=False
        )
    if isinstance(dist, td.MixtureSameFamily):
        mix = td.Categorical(logits=_cpu64(dist.mixture_distribution.logits), validate_args=False)
        return td.MixtureSameFamily(mix, _as_float64(dist.component_distribution), validate_args=False)
    return dist


def _cpu64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


def _univariate_base(dist: td.Distribution) -> td.Distribution | None:
    """The per-dimension distribution of a factorised prior over (D,), else None."""
    if isinstance(dist, td.Independent) and dist.reinterpreted_batch_ndims == 1:
        base = dist.base_dist
        if tuple(base.event_shape) == () and len(base.batch_shape) == 1:
            return base  # type: ignore[no-any-return]
        return None
    if tuple(dist.event_shape) == () and len(dist.batch_shape) == 1:
        return dist
    return None


class TorchDistributionPrior:
    """A prior given as a ``torch.distributions`` object over (D,).

    ``log_prob`` is evaluated by torch (in float64 for Normal, Independent and
    MixtureSameFamily of Normals); ``cross_entropy`` is the closed form when
    the prior is a diagonal Gaussian; ``sample`` uses the core's numpy
    generator for Gaussians and Gaussian mixtures.
    """

    def __init__(self, dist: td.Distribution, where: str, name: str | None = None) -> None:
        shape = tuple(dist.batch_shape) + tuple(dist.event_shape)
        if len(shape) != 1:
            raise ModelError(
                f"{where}: the prior {type(dist).__name__} has shape {shape}; expected (D,) "
                "(use Independent(Normal(loc, scale), 1) or Normal with loc of shape (D,))"
            )
        self.where = where
        self.dist = _as_float64(dist)
        self._d = int(shape[0])
        self.name = name or _dist_name(dist)
        base = _univariate_base(self.dist)
        self.factorised = base is not None
        self._base = base
        self._gauss: tuple[np.ndarray, np.ndarray] | None = None
        if isinstance(base, td.Normal):
            loc = np.broadcast_to(_np64(base.loc), (self._d,)).copy()
            scale = np.broadcast_to(_np64(base.scale), (self._d,)).copy()
            self._gauss = (loc, scale)
        if self._gauss is not None:
            loc_, scale_ = self._gauss
            # only Gaussian priors have a closed-form cross-entropy (the core looks it up)
            self.cross_entropy = lambda q: q.cross_entropy_gaussian(loc_, scale_)
        self._mixture: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if isinstance(self.dist, td.MixtureSameFamily):
            comp = self.dist.component_distribution
            if isinstance(comp, td.Independent) and isinstance(comp.base_dist, td.Normal):
                k = int(self.dist.mixture_distribution.logits.shape[-1])
                self._mixture = (
                    _np64(self.dist.mixture_distribution.probs),
                    np.broadcast_to(_np64(comp.base_dist.loc), (k, self._d)).copy(),
                    np.broadcast_to(_np64(comp.base_dist.scale), (k, self._d)).copy(),
                )

    @property
    def n_latent(self) -> int:
        return self._d

    def _eval(self, dist: td.Distribution, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        dtype = dist.mean.dtype if _has_mean(dist) else torch.float64
        out = []
        with torch.no_grad():
            for s in range(0, z.shape[0], _PRIOR_CHUNK):
                zt = torch.as_tensor(z[s : s + _PRIOR_CHUNK]).to(dtype)
                dev = _device_of(dist)
                out.append(_np64(dist.log_prob(zt.to(dev))))
        return np.concatenate(out) if out else np.zeros((0,) + z.shape[1:])

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        lp = self._eval(self.dist, z)
        if lp.ndim == 2:  # Normal with batch shape (D,): per dimension
            lp = lp.sum(axis=1)
        return lp

    def grad_log_prob(self, z: np.ndarray) -> np.ndarray:
        """d log p(z) / dz by torch autograd (rows independent), shape (S, D)."""
        z = np.asarray(z, dtype=np.float64)
        dtype = self.dist.mean.dtype if _has_mean(self.dist) else torch.float64
        out = []
        with torch.enable_grad():
            for s in range(0, z.shape[0], _PRIOR_CHUNK):
                zt = torch.as_tensor(z[s : s + _PRIOR_CHUNK]).to(dtype).to(_device_of(self.dist))
                zt.requires_grad_(True)
                lp = self.dist.log_prob(zt)
                (g,) = torch.autograd.grad(lp.sum(), zt)
                out.append(_np64(g))
        return np.concatenate(out) if out else np.zeros(z.shape)

    def marginal_log_prob(self, z: np.ndarray) -> np.ndarray:
        if self._base is None:
            raise ModelError(f"{self.where}: prior {self.name!r} is not factorised")
        return self._eval(self._base, z)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self._gauss is not None:
            loc, scale = self._gauss
            return loc + scale * rng.standard_normal((n, self._d))
        if self._mixture is not None:
            w, mean, std = self._mixture
            k = rng.choice(w.size, size=n, p=w / w.sum())
            return mean[k] + std[k] * rng.standard_normal((n, self._d))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            return _np64(self.dist.sample((n,)))


def _has_mean(dist: td.Distribution) -> bool:
    try:
        return isinstance(dist.mean, torch.Tensor)
    except (NotImplementedError, AttributeError):
        return False


def _device_of(dist: td.Distribution) -> torch.device:
    for v in vars(dist).values():
        if isinstance(v, torch.Tensor):
            return v.device
        if isinstance(v, td.Distribution):
            return _device_of(v)
    return torch.device("cpu")


def _dist_name(dist: td.Distribution) -> str:
    if isinstance(dist, td.Independent):
        return _dist_name(dist.base_dist)
    if isinstance(dist, td.Normal):
        return "gaussian"
    if isinstance(dist, td.MixtureSameFamily):
        return "mixture"
    return type(dist).__name__.lower()


class TorchCallablePrior:
    """A prior given by a torch log-density callable (see :class:`TorchPrior`)."""

    def __init__(self, spec: TorchPrior, ctx: _Context) -> None:
        self.spec = spec
        self.ctx = ctx
        self.name = spec.name
        self.factorised = spec.marginal_log_prob is not None

    @property
    def n_latent(self) -> int:
        d = self.spec.n_latent or self.ctx.n_latent
        if d is None:
            raise ModelError(
                f"{self.ctx.where()}: the latent size is unknown until the encoder has run; "
                "give TorchPrior(n_latent=...)"
            )
        return int(d)

    def _call(self, fn: Callable[[Any], Any], z: np.ndarray, ndim: int, label: str) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        out = []
        with torch.no_grad(), full_precision(self.ctx.device):
            for s in range(0, z.shape[0], _PRIOR_CHUNK):
                zt = self.ctx.tensor(z[s : s + _PRIOR_CHUNK])
                r = fn(zt)
                r = _np64(r) if isinstance(r, torch.Tensor) else np.asarray(r, np.float64)
                if r.shape != zt.shape[: ndim]:
                    raise ModelError(
                        f"{self.ctx.where()}: prior {label} returned shape {r.shape}, expected "
                        f"{tuple(zt.shape[:ndim])}"
                    )
                out.append(r)
        return np.concatenate(out) if out else np.zeros(z.shape[:ndim])

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        return self._call(self.spec.log_prob, z, 1, "log_prob")

    def marginal_log_prob(self, z: np.ndarray) -> np.ndarray:
        if self.spec.marginal_log_prob is None:
            raise ModelError(f"{self.ctx.where()}: prior {self.name!r} is not factorised")
        return self._call(self.spec.marginal_log_prob, z, 2, "marginal_log_prob")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.spec.sample is None:
            raise ModelError(f"{self.ctx.where()}: prior {self.name!r} has no sampler")
        s = self.spec.sample(rng, n)
        return _np64(s) if isinstance(s, torch.Tensor) else np.asarray(s, np.float64)


def _zero_arg_callable(obj: Any) -> bool:
    if isinstance(obj, torch.nn.Module):
        fn = obj.forward
    elif callable(obj):
        fn = obj
    else:
        return False
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


def _is_core_prior(obj: Any) -> bool:
    return (
        not isinstance(obj, (torch.nn.Module, td.Distribution))
        and isinstance(obj, CorePrior)
    )


def build_prior(prior: Any, ctx: _Context, encoder: TorchEncoder) -> Any:
    """Turn what the spec says about the prior into a core :class:`elbo_audit.Prior`."""
    where = ctx.where()
    if prior is None or prior == "standard_normal":
        if ctx.n_latent is not None:
            return StandardNormal(ctx.n_latent)
        return LazyStandardNormal(lambda: ctx.n_latent, where, "give TorchVAE(latent_dim=...)")
    if isinstance(prior, str):
        raise UsageError(f"{where}: unknown prior {prior!r} (a torch distribution or 'standard_normal')")
    if isinstance(prior, VampPrior):
        pseudo = prior.pseudo_inputs
        if isinstance(pseudo, torch.nn.Module) or (
            callable(pseudo) and not isinstance(pseudo, torch.Tensor)
        ):
            with torch.no_grad():
                pseudo = pseudo()
        if isinstance(pseudo, torch.Tensor):
            pseudo = pseudo.detach().cpu().numpy()
        q = encoder.encode(np.asarray(pseudo))
        return vamp_prior(q)
    if isinstance(prior, TorchPrior):
        return TorchCallablePrior(prior, ctx)
    if isinstance(prior, td.Distribution):
        return TorchDistributionPrior(prior, where)
    if _is_core_prior(prior):
        return prior
    if _zero_arg_callable(prior):
        with torch.no_grad():
            dist = prior()
        if not isinstance(dist, td.Distribution):
            raise ModelError(
                f"{where}: the prior {type(prior).__name__}() returned {type(dist).__name__}, "
                "expected a torch.distributions.Distribution"
            )
        return TorchDistributionPrior(dist, where)
    log_prob = getattr(prior, "log_prob", None)
    if callable(log_prob):
        return TorchCallablePrior(TorchPrior(log_prob, name=type(prior).__name__.lower()), ctx)
    raise ModelError(
        f"{where}: cannot use a {type(prior).__name__} as the prior; give a torch distribution, "
        "a module returning one, a TorchPrior or a VampPrior"
    )
