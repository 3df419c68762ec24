"""The adapter hands the caller's module back as it found it: device, dtype, train mode.

Audits happen in the middle of training scripts and notebooks. The adapter moves
the module to the audit's device and dtype and into eval mode (dropout off,
batch-norm statistics frozen) for as long as the audit runs; ``close()`` (or the
end of a ``with`` block, which is what ``elbo-audit run`` uses) must put every
parameter, buffer and ``training`` flag back, keeping the same ``nn.Parameter``
objects so that an optimizer built on them still steps the model.
"""

from __future__ import annotations

import numpy as np
import torch
from elbo_audit_torch import TorchVAE, wrap
from elbo_audit_torch.reference import mlp_vae
from torch import nn

import elbo_audit as ea


def _module() -> nn.Module:
    torch.manual_seed(0)
    vae = mlp_vae(12, 8, 3)
    vae.encoder.add_module("drop", nn.Dropout(0.5))   # a train-mode-only layer ...
    vae.register_buffer("steps", torch.zeros(2, dtype=torch.float32))
    vae.train()
    vae.decoder.eval()                                 # ... and mixed flags, per submodule
    return vae


def _state(m: nn.Module) -> tuple[dict[str, bool], dict[str, tuple[str, torch.dtype]], dict[str, int]]:
    flags = {n: s.training for n, s in m.named_modules()}
    where = {n: (str(t.device), t.dtype) for n, t in [*m.named_parameters(), *m.named_buffers()]}
    ids = {n: id(p) for n, p in m.named_parameters()}
    return flags, where, ids


def test_close_restores_dtype_train_flags_and_parameter_identity() -> None:
    vae = _module()
    before = _state(vae)
    opt = torch.optim.SGD(vae.parameters(), lr=0.1)
    spec = TorchVAE(vae.encoder, vae.decoder, likelihood="bernoulli", module=vae, latent_dim=3, precision="float64")
    model = wrap(spec, ea.ModelRef("m"))
    # while the audit holds it: eval mode and the audit's dtype
    assert not any(s.training for s in vae.modules())
    assert all(p.dtype == torch.float64 for p in vae.parameters())
    x = (np.random.default_rng(0).random((20, 12)) < 0.5).astype(np.float64)
    q1 = model.encoder.encode(x)
    q2 = model.encoder.encode(x)
    np.testing.assert_array_equal(q1.mean, q2.mean)    # dropout is off during the audit
    model.close()
    assert _state(vae) == before
    # the optimizer still drives the caller's parameters
    w0 = vae.encoder.hidden.weight.detach().clone()
    vae(torch.as_tensor(x[:4], dtype=torch.float32))[0].sum().backward()
    opt.step()
    assert not torch.equal(vae.encoder.hidden.weight, w0)
    model.close()                                       # idempotent
    assert _state(vae) == before


def test_with_block_restores_after_an_audit() -> None:
    vae = _module()
    before = _state(vae)
    x = (np.random.default_rng(1).random((30, 12)) < 0.5).astype(np.float64)
    with wrap(vae, ea.ModelRef("m")) as model:
        audit = ea.audit_model(model, x, ea.AuditSettings(seed=0, samples_per_point=2, reconstruction_samples=1))
    assert np.isfinite(audit.by_prior["native"].elbo.value)
    assert _state(vae) == before
