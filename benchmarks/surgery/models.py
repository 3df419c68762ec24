"""Model factories for the ELBO-surgery reproduction (learned priors), for the torch adapter.

All three share the reference Kingma & Welling MLP encoder/decoder of
``elbo_audit_torch.reference`` (parameter names ``encoder.hidden.weight`` ...
``decoder.logits.bias``), so a standard-normal model's weights load into the reference
factory of both adapters. The learned-prior models add ``prior.*`` parameters:

``mog_vae``   prior.logits (K,), prior.means (K, D), prior.log_var (K, D): a learned
              mixture of K diagonal Gaussians, given to the adapter as a module that returns a
              ``torch.distributions.MixtureSameFamily``.
``vamp_vae``  prior.pseudo_logits (K, x_dim): a VampPrior (Tomczak & Welling 2018) whose K
              pseudo-inputs are sigmoid(pseudo_logits) in (0, 1); given to the adapter as
              ``elbo_audit_torch.VampPrior(pseudo_inputs=<module>)``.

Use in a config::

    [models.vae20_mog]
    factory = "models.py:mog_vae"        # relative to the config's folder
    weights = "../weights/torch_vae20_mog.safetensors"
    options = { latent = 20, hidden = 500, components = 10 }
"""

from __future__ import annotations

import math

import torch
import torch.distributions as td
from elbo_audit_torch import TorchVAE, VampPrior
from elbo_audit_torch.reference import MLPVAE, MLPDecoder, MLPEncoder, mlp_vae
from torch import nn

__all__ = ["MoGPrior", "MoGVAE", "PseudoInputs", "VampVAE", "build", "mlp_vae", "mog_vae", "vamp_vae"]


class MoGPrior(nn.Module):
    """A learned mixture of K diagonal Gaussians over (D,); ``forward()`` returns the distribution."""

    def __init__(self, latent: int, components: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(init_scale * torch.randn(components, latent))
        self.log_var = nn.Parameter(torch.zeros(components, latent))

    def forward(self) -> td.MixtureSameFamily:
        comp = td.Independent(td.Normal(self.means, torch.exp(0.5 * self.log_var)), 1)
        return td.MixtureSameFamily(td.Categorical(logits=self.logits), comp)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for (B, D) latents (the training path; same value as forward().log_prob)."""
        var = torch.exp(self.log_var)  # (K, D)
        diff = z[:, None, :] - self.means[None]  # (B, K, D)
        comp = -0.5 * (diff * diff / var + self.log_var + math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(comp + torch.log_softmax(self.logits, 0), dim=1)


class PseudoInputs(nn.Module):
    """K learned pseudo-inputs in (0, 1): ``forward()`` returns sigmoid(pseudo_logits)."""

    def __init__(self, components: int, x_dim: int, init: torch.Tensor | None = None) -> None:
        super().__init__()
        if init is None:
            init = torch.randn(components, x_dim) * 0.1 - 2.0
        self.pseudo_logits = nn.Parameter(init.clone())

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.pseudo_logits)


class MoGVAE(nn.Module):
    """The reference MLP VAE with a learned mixture-of-Gaussians prior."""

    def __init__(self, x_dim: int = 784, hidden: int = 500, latent: int = 20, components: int = 10,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.x_dim, self.hidden, self.latent_dim = x_dim, hidden, latent
        self.encoder = MLPEncoder(x_dim, hidden, latent, activation)
        self.decoder = MLPDecoder(x_dim, hidden, latent, activation)
        self.prior = MoGPrior(latent, components)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(z)

    def elbo_audit_spec(self) -> TorchVAE:
        return TorchVAE(self.encoder, self.decoder, prior=self.prior, likelihood="bernoulli",
                        module=self, latent_dim=self.latent_dim)


class VampVAE(nn.Module):
    """The reference MLP VAE with a VampPrior of K learned pseudo-inputs."""

    def __init__(self, x_dim: int = 784, hidden: int = 500, latent: int = 20, components: int = 100,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.x_dim, self.hidden, self.latent_dim = x_dim, hidden, latent
        self.encoder = MLPEncoder(x_dim, hidden, latent, activation)
        self.decoder = MLPDecoder(x_dim, hidden, latent, activation)
        self.prior = PseudoInputs(components, x_dim)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log (1/K) sum_k q(z | u_k) for (B, D) latents."""
        mean, log_var = self.encoder(self.prior())  # (K, D)
        diff = z[:, None, :] - mean[None]
        comp = -0.5 * (diff * diff / torch.exp(log_var) + log_var + math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(comp, dim=1) - math.log(mean.shape[0])

    def elbo_audit_spec(self) -> TorchVAE:
        return TorchVAE(self.encoder, self.decoder, prior=VampPrior(self.prior), likelihood="bernoulli",
                        module=self, latent_dim=self.latent_dim)


def _finish(model: nn.Module, dtype: str, seed: int | None) -> nn.Module:
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype {dtype!r}: expected 'float32' or 'float64'")
    return model.to(getattr(torch, dtype))


def _make(cls: type, seed: int | None, **kw: object) -> nn.Module:
    if seed is None:
        return cls(**kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return cls(**kw)


def mog_vae(x_dim: int = 784, hidden: int = 500, latent: int = 20, components: int = 10,
            activation: str = "tanh", dtype: str = "float32", seed: int | None = None) -> MoGVAE:
    """Factory ``models.py:mog_vae``: MLP VAE with a learned K-component Gaussian-mixture prior."""
    m = _make(MoGVAE, seed, x_dim=int(x_dim), hidden=int(hidden), latent=int(latent),
              components=int(components), activation=activation)
    return _finish(m, dtype, seed)


def vamp_vae(x_dim: int = 784, hidden: int = 500, latent: int = 20, components: int = 100,
             activation: str = "tanh", dtype: str = "float32", seed: int | None = None) -> VampVAE:
    """Factory ``models.py:vamp_vae``: MLP VAE with a VampPrior of K learned pseudo-inputs."""
    m = _make(VampVAE, seed, x_dim=int(x_dim), hidden=int(hidden), latent=int(latent),
              components=int(components), activation=activation)
    return _finish(m, dtype, seed)


def build(prior: str, **options: object) -> nn.Module:
    """The model for ``prior`` in {"standard_normal", "mog", "vamp"} (used by train_torch.py)."""
    if prior == "standard_normal":
        return mlp_vae(**options)  # type: ignore[arg-type]
    if prior == "mog":
        return mog_vae(**options)  # type: ignore[arg-type]
    if prior == "vamp":
        return vamp_vae(**options)  # type: ignore[arg-type]
    raise ValueError(f"prior {prior!r}: expected standard_normal, mog or vamp")


def prior_log_prob(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """log p(z) of any model built here; N(0, I) for the reference MLPVAE."""
    if isinstance(model, MLPVAE):
        return -0.5 * (z * z + math.log(2 * math.pi)).sum(-1)
    return model.prior_log_prob(z)  # type: ignore[operator]
