"""The parameter layout of the reference MLP VAE, shared by every framework.

``elbo_audit_torch.reference`` and ``elbo_audit_jax.reference`` build the MLP
VAE of Kingma & Welling (2014) under the same dotted parameter names and the
PyTorch ``nn.Linear`` layout (weight is (out, in); a layer computes
``x @ weight.T + bias``), so that one safetensors file loads into both. The
layout is written down once, here, in numpy-free Python::

    encoder.hidden.weight   (H, x_dim)     encoder.hidden.bias   (H,)
    encoder.mean.weight     (D, H)         encoder.mean.bias     (D,)
    encoder.log_var.weight  (D, H)         encoder.log_var.bias  (D,)
    decoder.hidden.weight   (H, D)         decoder.hidden.bias   (H,)
    decoder.logits.weight   (x_dim, H)     decoder.logits.bias   (x_dim,)
"""

from __future__ import annotations

__all__ = ["reference_parameter_shapes"]


def reference_parameter_shapes(x_dim: int, hidden: int, latent: int) -> dict[str, tuple[int, ...]]:
    """The reference MLP VAE's parameter names and shapes, in the order of its layers.

    Parameters
    ----------
    x_dim : int
        Values per data point (trailing shapes are flattened).
    hidden : int
        Units of the encoder's and the decoder's hidden layer (H).
    latent : int
        Latent dimension (D).

    Returns
    -------
    dict of str to tuple of int
        Dotted parameter name -> shape, weights as (out, in).
    """
    return {
        "encoder.hidden.weight": (hidden, x_dim),
        "encoder.hidden.bias": (hidden,),
        "encoder.mean.weight": (latent, hidden),
        "encoder.mean.bias": (latent,),
        "encoder.log_var.weight": (latent, hidden),
        "encoder.log_var.bias": (latent,),
        "decoder.hidden.weight": (hidden, latent),
        "decoder.hidden.bias": (hidden,),
        "decoder.logits.weight": (x_dim, hidden),
        "decoder.logits.bias": (x_dim,),
    }
