"""One safetensors file, two frameworks, the same audit.

The reference MLP VAE has the same parameter names in elbo_audit_torch and
elbo_audit_jax. Random weights are saved once; both adapters load them; the
core draws all the noise, so with the same seed every term must agree up to
the frameworks' float32 rounding, and both decoders must agree with a numpy
reimplementation.
"""

from __future__ import annotations

import numpy as np
import pytest

import elbo_audit as ea
from elbo_audit.testing import assert_audits_close

torch = pytest.importorskip("torch")
elbo_audit_torch = pytest.importorskip("elbo_audit_torch")

import elbo_audit_jax
from elbo_audit_jax.reference import mlp_vae as jax_mlp_vae
from elbo_audit_torch.reference import mlp_vae as torch_mlp_vae

torch.set_num_threads(1)
SETTINGS = ea.AuditSettings(seed=2016, samples_per_point=1, reconstruction_samples=2)


def _both(npref, path, precision):
    t = torch_mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT)
    if precision == "float64":
        t = elbo_audit_torch.TorchVAE(t.encoder, t.decoder, likelihood="bernoulli", module=t, precision="float64")
    j = jax_mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT, precision="model" if precision == "float32" else precision)
    return (elbo_audit_torch.wrap(t, ea.ModelRef("vae", weights=path)),
            elbo_audit_jax.wrap(j, ea.ModelRef("vae", weights=path)))


@pytest.mark.parametrize("precision, atol", [("float32", 1e-5), ("float64", 1e-10)])
def test_every_term_agrees_across_frameworks(npref, ref_file, data, precision, atol):
    tm, jm = _both(npref, ref_file, precision)
    assert tm.adapter == "torch" and jm.adapter == "jax"
    at, aj = ea.audit_model(tm, data, SETTINGS), ea.audit_model(jm, data, SETTINGS)
    assert_audits_close(at, aj, atol=atol)
    # the comparison is not vacuous: the terms are far from zero and differ between seeds
    terms = at.by_prior["native"].terms()
    assert terms["avg_kl"].value > 1.0 and terms["index_code_mi"].value > 0.5
    other = ea.audit_model(jm, data, ea.AuditSettings(seed=7))
    assert abs(other.by_prior["native"].terms()["index_code_mi"].value - terms["index_code_mi"].value) > atol


@pytest.mark.parametrize("precision, rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_decoders_agree_with_numpy(npref, ref_file, ref_weights, data, precision, rtol):
    tm, jm = _both(npref, ref_file, precision)
    z = np.random.default_rng(3).normal(size=(40, 3, npref.LATENT)) * 1.5
    truth = npref.bernoulli_loglik(ref_weights, data[:40], z)
    np.testing.assert_allclose(tm.decoder.log_likelihood(data[:40], z), truth, rtol=rtol)
    np.testing.assert_allclose(jm.decoder.log_likelihood(data[:40], z), truth, rtol=rtol)


def test_encoders_agree(npref, ref_file, ref_weights, data):
    tm, jm = _both(npref, ref_file, "float32")
    qt, qj = tm.encoder.encode(data), jm.encoder.encode(data)
    np.testing.assert_allclose(qt.mean, qj.mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(qt.std, qj.std, rtol=1e-5, atol=1e-5)


def test_torch_state_dict_saved_as_safetensors_loads_into_jax(tmp_path, npref, data):
    """The torch route of the tutorial (save_file(model.state_dict())) feeds the JAX adapter too."""
    from safetensors.torch import save_file

    t = torch_mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT, seed=11)
    path = tmp_path / "from_torch.safetensors"
    save_file(t.state_dict(), str(path))
    tm = elbo_audit_torch.wrap(t, ea.ModelRef("t"))
    jm = elbo_audit_jax.wrap(jax_mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("j", weights=path))
    np.testing.assert_allclose(tm.encoder.encode(data).mean, jm.encoder.encode(data).mean, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision, rtol", [("float32", 2e-3), ("float64", 1e-6)])
def test_decoder_gradients_agree_with_numerical_differentiation_of_numpy(
    npref, ref_file, ref_weights, data, precision, rtol
):
    """log_likelihood_grad (torch autograd, jax.grad) against central differences of the numpy decoder."""
    tm, jm = _both(npref, ref_file, precision)
    x = data[:10]
    z = np.random.default_rng(4).normal(size=(10, 2, npref.LATENT)) * 1.5
    h = 1e-6
    numeric = np.stack(
        [
            (npref.bernoulli_loglik(ref_weights, x, z + h * e) - npref.bernoulli_loglik(ref_weights, x, z - h * e))
            / (2 * h)
            for e in np.eye(npref.LATENT)
        ],
        axis=-1,
    )
    scale = np.abs(numeric).max()
    for model in (tm, jm):
        ll, grad = model.decoder.log_likelihood_grad(x, z)
        np.testing.assert_allclose(ll, npref.bernoulli_loglik(ref_weights, x, z), rtol=1e-5 if precision == "float32" else 1e-12)
        np.testing.assert_allclose(grad, numeric, rtol=rtol, atol=rtol * scale)


def test_refined_gaps_agree_across_frameworks(npref, ref_file, data):
    tm, jm = _both(npref, ref_file, "float64")
    settings = ea.AuditSettings(seed=5, iw_samples=10, refine_steps=20, n_resamples=0)
    at, aj = ea.audit_model(tm, data[:60], settings), ea.audit_model(jm, data[:60], settings)
    for term in ("refined_elbo", "amortization_gap", "approximation_gap"):
        a, b = at.by_prior["native"].importance[term], aj.by_prior["native"].importance[term]
        assert a.evaluated
        np.testing.assert_allclose(a.pointwise, b.pointwise, rtol=1e-9, atol=1e-9, err_msg=term)
