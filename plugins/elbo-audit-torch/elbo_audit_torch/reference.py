"""The reference model: the MLP VAE of Kingma & Welling (2014).

Architecture (identical in ``elbo_audit_jax.reference``)::

    encoder:  x (x_dim) -> hidden (H, tanh or relu) -> mean (D), log_var (D)
    decoder:  z (D)     -> hidden (H, tanh or relu) -> logits (x_dim), Bernoulli
    prior:    N(0, I)

Parameter names and shapes (PyTorch ``nn.Linear`` layout, weight is
(out, in) and the layer computes ``x @ weight.T + bias``); a safetensors file
with exactly these keys loads into both the PyTorch and the JAX reference::

    encoder.hidden.weight   (H, x_dim)     encoder.hidden.bias   (H,)
    encoder.mean.weight     (D, H)         encoder.mean.bias     (D,)
    encoder.log_var.weight  (D, H)         encoder.log_var.bias  (D,)
    decoder.hidden.weight   (H, D)         decoder.hidden.bias   (H,)
    decoder.logits.weight   (x_dim, H)     decoder.logits.bias   (x_dim,)

Data points of any trailing shape are flattened to x_dim values.

References
----------
.. [1] D. P. Kingma and M. Welling, "Auto-encoding variational Bayes", ICLR 2014.
"""

from __future__ import annotations

import torch
from torch import nn

from elbo_audit._model.reference import reference_parameter_shapes

from ._spec import TorchVAE

__all__ = ["MLPVAE", "PARAMETER_SHAPES", "MLPDecoder", "MLPEncoder", "mlp_vae"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


#: The reference model's parameter names and shapes: ``PARAMETER_SHAPES(x_dim, hidden, latent)``.
PARAMETER_SHAPES = reference_parameter_shapes


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation {name!r}: expected one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()  # type: ignore[no-any-return]


class MLPEncoder(nn.Module):
    """x -> (mean, log_var) of q(z|x)."""

    def __init__(self, x_dim: int, hidden: int, latent: int, activation: str = "tanh") -> None:
        super().__init__()
        self.hidden = nn.Linear(x_dim, hidden)
        self.act = _activation(activation)
        self.mean = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.hidden(x.reshape(x.shape[0], -1)))
        return self.mean(h), self.log_var(h)


class MLPDecoder(nn.Module):
    """z -> Bernoulli logits of p(x|z)."""

    def __init__(self, x_dim: int, hidden: int, latent: int, activation: str = "tanh") -> None:
        super().__init__()
        self.hidden = nn.Linear(latent, hidden)
        self.act = _activation(activation)
        self.logits = nn.Linear(hidden, x_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(self.act(self.hidden(z)))  # type: ignore[no-any-return]


class MLPVAE(nn.Module):
    """The Kingma & Welling MLP VAE: Gaussian encoder, Bernoulli decoder, N(0, I) prior."""

    def __init__(self, x_dim: int = 784, hidden: int = 500, latent: int = 20, activation: str = "tanh") -> None:
        super().__init__()
        self.x_dim, self.hidden, self.latent_dim = x_dim, hidden, latent
        self.encoder = MLPEncoder(x_dim, hidden, latent, activation)
        self.decoder = MLPDecoder(x_dim, hidden, latent, activation)

    def elbo_audit_spec(self) -> TorchVAE:
        return TorchVAE(
            self.encoder, self.decoder, prior=None, likelihood="bernoulli", module=self,
            latent_dim=self.latent_dim,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised pass: (Bernoulli logits, mean, log_var)."""
        mean, log_var = self.encoder(x)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        return self.decoder(z), mean, log_var


def mlp_vae(
    x_dim: int = 784,
    hidden: int = 500,
    latent: int = 20,
    activation: str = "tanh",
    dtype: str = "float32",
    seed: int | None = None,
) -> MLPVAE:
    """Factory ``elbo_audit_torch.reference:mlp_vae`` for ``elbo-audit run --model``.

    Parameters
    ----------
    x_dim, hidden, latent : int
        Data, hidden and latent sizes.
    activation : {"tanh", "relu"}
    dtype : {"float32", "float64"}
    seed : int, optional
        Seed of the random initialisation (the weights file replaces it).
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype {dtype!r}: expected 'float32' or 'float64'")
    gen = torch.random.fork_rng(devices=[]) if seed is not None else None
    if gen is None:
        model = MLPVAE(int(x_dim), int(hidden), int(latent), activation)
    else:
        with gen:
            torch.manual_seed(int(seed))  # type: ignore[arg-type]  # not None here
            model = MLPVAE(int(x_dim), int(hidden), int(latent), activation)
    return model.to(getattr(torch, dtype))
