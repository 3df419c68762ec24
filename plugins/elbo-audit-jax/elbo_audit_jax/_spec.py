"""How a factory describes a JAX VAE to the adapter (importable without jax)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from elbo_audit import POSTERIOR_PARAMS  # what the second part of a (mean, second) output may be

__all__ = [
    "LIKELIHOODS",
    "POSTERIOR_PARAMS",
    "GaussianPrior",
    "JaxPrior",
    "JaxVAE",
    "MixturePrior",
    "VampPrior",
]

#: Names accepted by ``JaxVAE(likelihood=...)``.
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "categorical", "normal")

#: An array, or a dotted key path (``"prior.mean"``) into the params pytree.
ParamRef = Any


@dataclass
class JaxVAE:
    """A VAE written as pure JAX functions of a parameter pytree.

    Parameters
    ----------
    encode_fn : callable
        ``encode_fn(params, x) -> (mean, second)``, arrays of shape (B, D),
        for a batch ``x`` (one data point per row, the data's own trailing
        shape, in the params' float dtype). ``second`` is named by
        ``posterior``. An object with ``loc`` and ``scale`` attributes (a
        Normal of distrax, numpyro or TFP) is also accepted.
    decode_fn : callable, optional
        ``decode_fn(params, z) -> output`` for latents z of shape (M, D); the
        output is what ``likelihood`` says. Without a decoder only the KL
        side is audited.
    params : pytree, optional
        Nested dicts/lists/tuples of arrays. A weights file replaces its
        leaves by flattened key path (``encoder.hidden.weight``; list items by
        index). Without ``params``, the weights file alone defines them
        (nested dicts from the dotted keys).
    prior : optional
        ``None`` or ``"standard_normal"`` for N(0, I); a core prior
        (``elbo_audit.MixtureOfGaussians``, ...); a :class:`GaussianPrior` or
        :class:`MixturePrior` whose arrays may be key paths into ``params``
        (learned priors); a :class:`VampPrior`; or a :class:`JaxPrior` (any
        log-density).
    likelihood : str or callable
        ``"bernoulli"`` or ``"continuous_bernoulli"`` (decoder returns logits
        shaped like a data point, or flattened), ``"categorical"`` (logits
        with the levels on the last axis), ``"normal"`` (decoder returns
        ``(mean, log_var)``), or a callable ``likelihood(output, x) ->``
        per-element or per-row log-probabilities, shape (M, ...).
    posterior : {"log_var", "log_std", "std", "var"}
    precision : {"model", "float32", "float64"}
        ``"model"`` computes in the params' own dtype. ``"float64"`` converts
        the params and computes inside ``jax.enable_x64(True)``, leaving the
        global flag alone. Outputs always reach the core as float64 and
        per-element log-likelihoods are summed in float64.
    jit : bool
        Compile ``encode_fn``, ``decode_fn`` + likelihood and prior functions with ``jax.jit``.
    latent_dim : int, optional
        D; only needed before the first encoding when the prior does not say.
    """

    encode_fn: Callable[..., Any]
    decode_fn: Callable[..., Any] | None = None
    params: Any = None
    prior: Any = None
    likelihood: str | Callable[..., Any] = "bernoulli"
    posterior: Literal["log_var", "log_std", "std", "var"] = "log_var"
    precision: Literal["model", "float32", "float64"] = "model"
    jit: bool = True
    latent_dim: int | None = None


@dataclass
class JaxPrior:
    """A prior given by a JAX log-density of the params.

    Parameters
    ----------
    log_prob_fn : callable
        ``log_prob_fn(params, z) -> (S,)`` for z of shape (S, D).
    n_latent : int, optional
    sample : callable, optional
        ``sample(rng, n) -> (n, D)``, drawing from the numpy ``Generator`` ``rng``.
    marginal_log_prob_fn : callable, optional
        ``(params, z) -> (S, D)``; makes the prior factorised.
    name : str
    """

    log_prob_fn: Callable[..., Any]
    n_latent: int | None = None
    sample: Callable[[Any, int], Any] | None = None
    marginal_log_prob_fn: Callable[..., Any] | None = None
    name: str = "jax_prior"


@dataclass
class GaussianPrior:
    """N(mean, diag(std^2)); give ``std`` or ``log_std``. Each an array or a key path."""

    mean: ParamRef
    std: ParamRef = None
    log_std: ParamRef = None
    name: str = "gaussian"


@dataclass
class MixturePrior:
    """sum_k softmax(logits)_k N(mean_k, diag(std_k^2)); ``std`` or ``log_std``, (K, D)."""

    logits: ParamRef
    mean: ParamRef
    std: ParamRef = None
    log_std: ParamRef = None
    name: str = "mixture"


@dataclass
class VampPrior:
    """Uniform mixture of the encoder's posteriors at K pseudo-inputs.

    ``pseudo_inputs`` is an array, a key path into ``params``, or a callable
    ``f(params) -> (K, ...)``.

    References
    ----------
    .. [1] J. M. Tomczak and M. Welling, "VAE with a VampPrior", AISTATS 2018.
    """

    pseudo_inputs: Any
