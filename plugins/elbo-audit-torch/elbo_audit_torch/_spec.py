"""How a factory describes a PyTorch VAE to the adapter (importable without torch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from elbo_audit import POSTERIOR_PARAMS  # what the second part of a (mean, second) output may be

__all__ = ["LIKELIHOODS", "POSTERIOR_PARAMS", "TorchPrior", "TorchVAE", "VampPrior"]

#: Names accepted by ``TorchVAE(likelihood=...)`` for a decoder that returns a tensor.
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "categorical", "normal")


@dataclass
class TorchVAE:
    """A PyTorch VAE as the torch adapter sees it.

    Parameters
    ----------
    encoder : torch.nn.Module or callable
        Called on a batch ``x`` (a tensor of the model's dtype on its device,
        one data point per row, the data's own trailing shape). Returns a
        ``torch.distributions.Normal`` with batch shape (B, D), an
        ``Independent(Normal, 1)`` with event shape (D,), or a tuple
        ``(mean, second)`` of (B, D) tensors, ``second`` as named by
        ``posterior`` (log variance by default).
    decoder : torch.nn.Module or callable
        Called on latents ``z`` of shape (M, D). Returns a
        ``torch.distributions.Distribution`` over one data point per row
        (``Bernoulli``, ``ContinuousBernoulli``, ``Normal``, ``Categorical``
        over pixel levels, any ``Independent`` of these, ...), or a tensor
        (or tuple) that ``likelihood`` turns into one.
    prior : optional
        ``None`` or ``"standard_normal"`` for N(0, I); a
        ``torch.distributions.Distribution`` over (D,) (``Normal``,
        ``Independent(Normal)``: closed-form KL; ``MixtureSameFamily``: Monte
        Carlo KL); an ``nn.Module`` or zero-argument callable returning such a
        distribution (a learned prior, evaluated after the weights are
        loaded); a :class:`TorchPrior` (any log-density); a :class:`VampPrior`;
        or a prior of the core (``elbo_audit.MixtureOfGaussians``, ...).
    likelihood : str or callable, optional
        For a decoder that returns a tensor: ``"bernoulli"``,
        ``"continuous_bernoulli"`` (logits), ``"categorical"`` (logits with
        the levels on the last axis), ``"normal"`` (a ``(mean, log_var)``
        tuple), or a callable mapping the decoder's output to a distribution.
    posterior : {"log_var", "log_std", "std", "var"}
        Meaning of the second tensor of a tuple returned by the encoder.
    module : torch.nn.Module, optional
        The module whose ``state_dict`` a weights file holds. Default: the
        ``nn.Module`` the factory returned, or else a container with the
        children ``encoder``, ``decoder`` (and ``prior`` when it is a module),
        so that keys read ``encoder.*``, ``decoder.*``, ``prior.*``.
    latent_dim : int, optional
        D; only needed before the first encoding when the prior does not say.
    precision : {"model", "float32", "float64"}
        ``"model"`` runs the network in its own dtype; the others convert it.
        Either way posterior parameters and log-likelihoods reach the core
        as float64, and per-element log-likelihoods are summed in float64.
    """

    encoder: Any
    decoder: Any = None
    prior: Any = None
    likelihood: str | Callable[[Any], Any] | None = None
    posterior: Literal["log_var", "log_std", "std", "var"] = "log_var"
    module: Any = None
    latent_dim: int | None = None
    precision: Literal["model", "float32", "float64"] = "model"


@dataclass
class TorchPrior:
    """A prior given by its log-density (for priors that are not torch distributions).

    Parameters
    ----------
    log_prob : callable
        ``log_prob(z) -> (S,)`` for a tensor ``z`` of shape (S, D).
    sample : callable, optional
        ``sample(rng, n) -> (n, D)`` array-like, drawing from the numpy
        ``Generator`` ``rng`` (the core draws all randomness).
    n_latent : int, optional
        D; else taken from the encoder.
    marginal_log_prob : callable, optional
        ``(S, D) -> (S, D)`` per-dimension log-densities; makes the prior factorised.
    name : str
    """

    log_prob: Callable[[Any], Any]
    sample: Callable[[Any, int], Any] | None = None
    n_latent: int | None = None
    marginal_log_prob: Callable[[Any], Any] | None = None
    name: str = "torch_prior"


@dataclass
class VampPrior:
    """The VampPrior: a uniform mixture of the encoder's posteriors at pseudo-inputs.

    Parameters
    ----------
    pseudo_inputs : tensor, array, nn.Module or callable
        The K pseudo-inputs (K rows of the data's shape), or a module or
        zero-argument callable that returns them (learned pseudo-inputs are
        read after the weights are loaded).

    References
    ----------
    .. [1] J. M. Tomczak and M. Welling, "VAE with a VampPrior", AISTATS 2018.
    """

    pseudo_inputs: Any
