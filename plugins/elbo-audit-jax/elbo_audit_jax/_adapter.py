"""The JAX adapter: pure functions of a params pytree, seen by the core as numpy.

The core draws every random number (numpy) and passes data batches and
latents z in float64. The adapter casts them to the params' float dtype,
runs the (jitted) functions on the requested device and returns float64
numpy arrays. Per-element log-likelihoods come back to the host and are
summed in float64 there, so float32 params need no global 64-bit mode;
``precision="float64"`` computes inside ``jax.enable_x64(True)``, a context
that leaves the global ``jax_enable_x64`` flag as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from elbo_audit import (
    AuditError,
    AuditModel,
    DiagonalGaussianPrior,
    LazyStandardNormal,
    MixtureOfGaussians,
    ModelError,
    ModelRef,
    StandardNormal,
    UsageError,
    vamp_prior,
)
from elbo_audit import Prior as CorePrior

from ._context import _bucket, _Context, _np64, _pad
from ._decoder import JaxDecoder, elementwise_log_likelihood
from ._encoder import JaxEncoder
from ._spec import (
    GaussianPrior,
    JaxPrior,
    JaxVAE,
    MixturePrior,
    VampPrior,
)
from ._weights import assign, flatten_params, read_flat, unflatten

__all__ = ["claims", "elementwise_log_likelihood", "wrap"]

_PRIOR_CHUNK = 8192


def claims(obj: Any) -> bool:
    """Whether the JAX adapter handles ``obj``."""
    return isinstance(obj, JaxVAE)


# ----------------------------------------------------------------------------- priors


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


# ----------------------------------------------------------------------------- wrap


def _device(ref: ModelRef) -> Any:
    spec = (ref.device or "cpu").lower()
    kind, _, index = spec.partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(kind, kind)
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:
        raise UsageError(
            f"model {ref.name!r}: device {ref.device!r} requested but JAX has no {platform} backend "
            f"({' '.join(str(exc).split())[:120]})"
        ) from exc
    i = int(index) if index.isdigit() else 0
    if i >= len(devices):
        raise UsageError(f"model {ref.name!r}: no {ref.device} (JAX sees {len(devices)} {platform} devices)")
    return devices[i]


def _float_dtype(params: Any) -> np.dtype:
    for leaf in jax.tree_util.tree_leaves(params):
        dt = np.dtype(getattr(leaf, "dtype", np.asarray(leaf).dtype))
        if dt.kind == "f":
            return dt
    return np.dtype(np.float32)


def _as_dtype(leaf: Any, dtype: np.dtype) -> Any:
    arr = np.asarray(leaf)
    return arr.astype(dtype) if arr.dtype.kind == "f" else arr


def _cast(params: Any, dtype: np.dtype, device: Any) -> Any:
    def one(leaf: Any) -> Any:
        arr = np.asarray(leaf)
        if arr.dtype.kind == "f":
            arr = arr.astype(dtype, copy=False)
        return jax.device_put(arr, device)

    return jax.tree_util.tree_map(one, params)


def wrap(obj: Any, ref: ModelRef) -> AuditModel:
    """Load ``ref.weights`` (array formats only) into the params and wrap the model.

    Raises
    ------
    UnsafeArtifactError
        The weights file is a pickle or holds object arrays (never loaded).
    ModelError, UsageError
        The weights do not fit the params, the device does not exist, ...
    """
    try:
        return _wrap(obj, ref)
    except AuditError as exc:
        if str(exc).startswith("model "):
            raise
        raise type(exc)(f"model {ref.name!r}: {exc}") from exc


def _wrap(obj: Any, ref: ModelRef) -> AuditModel:
    if not isinstance(obj, JaxVAE):
        raise ModelError(f"the jax adapter cannot use a {type(obj).__name__}: return a JaxVAE")
    spec = obj
    device = _device(ref)
    params = spec.params
    if spec.precision not in ("model", "float32", "float64"):
        raise UsageError(f"precision={spec.precision!r}; expected 'model', 'float32' or 'float64'")
    if spec.precision != "model" and params is not None:
        # convert before loading, so float64 weights in a file keep every digit
        params = jax.tree_util.tree_map(lambda a: _as_dtype(a, np.dtype(spec.precision)), params)
    attrs: dict[str, Any] = {}
    if ref.weights is not None:
        path = Path(ref.weights)
        flat = read_flat(path)
        params = unflatten(flat) if params is None else assign(params, flat, path)
        attrs["weights_format"] = path.suffix.lower().lstrip(".")
    if params is None:
        raise ModelError(f"model {ref.name!r}: the JaxVAE has no params and no weights file was given")
    dtype = _float_dtype(params) if spec.precision == "model" else np.dtype(spec.precision)
    x64 = dtype == np.float64
    ctx = _Context(ref.name, device, dtype, x64, ref.batch_size, spec.jit)
    if spec.latent_dim is not None:
        ctx.n_latent = int(spec.latent_dim)
    with ctx.compute():
        params = _cast(params, dtype, device)
    encoder = JaxEncoder(spec.encode_fn, params, ctx, spec.posterior)
    decoder = JaxDecoder(spec.decode_fn, params, ctx, spec.likelihood) if spec.decode_fn is not None else None
    prior = build_prior(spec.prior, params, ctx, encoder)
    attrs.update({"jax_version": jax.__version__, "device": str(device), "dtype": str(dtype)})
    return AuditModel(ref.name, encoder, prior, decoder, adapter="jax", attrs=attrs)
