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

from pathlib import Path
from typing import Any

import jax
import numpy as np

from elbo_audit import AuditError, AuditModel, ModelError, ModelRef, UsageError

from ._context import _Context
from ._decoder import JaxDecoder, elementwise_log_likelihood
from ._encoder import JaxEncoder
from ._priors import build_prior
from ._spec import JaxVAE
from ._weights import assign, read_flat, unflatten

__all__ = ["claims", "elementwise_log_likelihood", "wrap"]


def claims(obj: Any) -> bool:
    """Whether the JAX adapter handles ``obj``."""
    return isinstance(obj, JaxVAE)


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
