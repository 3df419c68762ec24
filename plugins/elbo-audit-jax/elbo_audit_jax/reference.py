"""The reference model: the MLP VAE of Kingma & Welling (2014), in JAX.

Same architecture and parameter names as ``elbo_audit_torch.reference``::

    encoder:  x (x_dim) -> hidden (H, tanh or relu) -> mean (D), log_var (D)
    decoder:  z (D)     -> hidden (H, tanh or relu) -> logits (x_dim), Bernoulli
    prior:    N(0, I)

Parameters use the PyTorch ``nn.Linear`` layout (weight is (out, in); a layer
computes ``x @ weight.T + bias``) under these dotted key paths::

    encoder.hidden.weight   (H, x_dim)     encoder.hidden.bias   (H,)
    encoder.mean.weight     (D, H)         encoder.mean.bias     (D,)
    encoder.log_var.weight  (D, H)         encoder.log_var.bias  (D,)
    decoder.hidden.weight   (H, D)         decoder.hidden.bias   (H,)
    decoder.logits.weight   (x_dim, H)     decoder.logits.bias   (x_dim,)

so one safetensors file loads into both frameworks. Data points of any
trailing shape are flattened to x_dim values.

References
----------
.. [1] D. P. Kingma and M. Welling, "Auto-encoding variational Bayes", ICLR 2014.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from elbo_audit._model.reference import reference_parameter_shapes

from ._spec import JaxVAE

__all__ = ["init_params", "make_functions", "mlp_vae", "parameter_shapes"]


#: The reference model's parameter names and shapes: ``parameter_shapes(x_dim, hidden, latent)``.
parameter_shapes = reference_parameter_shapes


def init_params(
    x_dim: int = 784, hidden: int = 500, latent: int = 20, seed: int = 0, dtype: str = "float32"
) -> dict[str, Any]:
    """Random parameters as nested dicts of numpy arrays.

    Each layer is drawn U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the default of
    ``torch.nn.Linear``.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    for key, shape in parameter_shapes(x_dim, hidden, latent).items():
        part, layer, leaf = key.split(".")
        fan_in = parameter_shapes(x_dim, hidden, latent)[f"{part}.{layer}.weight"][1]
        bound = 1.0 / np.sqrt(fan_in)
        arr = rng.uniform(-bound, bound, size=shape).astype(dtype)
        params.setdefault(part, {}).setdefault(layer, {})[leaf] = arr
    return params


def make_functions(activation: str = "tanh") -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``encode(params, x) -> (mean, log_var)`` and ``decode(params, z) -> logits``."""
    import jax
    import jax.numpy as jnp

    acts = {"tanh": jnp.tanh, "relu": jax.nn.relu}
    if activation not in acts:
        raise ValueError(f"activation {activation!r}: expected one of {', '.join(acts)}")
    act = acts[activation]

    def linear(layer: dict[str, Any], h: Any) -> Any:
        return h @ layer["weight"].T + layer["bias"]

    def encode(params: dict[str, Any], x: Any) -> tuple[Any, Any]:
        e = params["encoder"]
        h = act(linear(e["hidden"], x.reshape(x.shape[0], -1)))
        return linear(e["mean"], h), linear(e["log_var"], h)

    def decode(params: dict[str, Any], z: Any) -> Any:
        d = params["decoder"]
        return linear(d["logits"], act(linear(d["hidden"], z)))

    return encode, decode


def mlp_vae(
    x_dim: int = 784,
    hidden: int = 500,
    latent: int = 20,
    activation: str = "tanh",
    dtype: str = "float32",
    seed: int = 0,
    precision: str = "model",
) -> JaxVAE:
    """Factory ``elbo_audit_jax.reference:mlp_vae`` for ``elbo-audit run --model``.

    Parameters
    ----------
    x_dim, hidden, latent : int
    activation : {"tanh", "relu"}
    dtype : {"float32", "float64"}
        dtype of the params (a weights file is cast to it).
    seed : int
        Seed of the random initialisation (the weights file replaces it).
    precision : {"model", "float32", "float64"}
        See :class:`elbo_audit_jax.JaxVAE`.
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype {dtype!r}: expected 'float32' or 'float64'")
    encode, decode = make_functions(activation)
    return JaxVAE(
        encode,
        decode,
        init_params(int(x_dim), int(hidden), int(latent), seed, dtype),
        prior=None,
        likelihood="bernoulli",
        precision=precision,  # type: ignore[arg-type]
        latent_dim=int(latent),
    )
