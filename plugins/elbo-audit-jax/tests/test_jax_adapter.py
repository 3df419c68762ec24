"""The JAX adapter against independent truths: numpy reimplementations and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from elbo_audit_jax import (
    JaxVAE,
    claims,
    elbo_audit_adapters,
    flatten_params,
    load_params,
    save_params,
    wrap,
)
from elbo_audit_jax.reference import init_params, mlp_vae, parameter_shapes
from scipy import special, stats

import elbo_audit as ea
from elbo_audit import testing


def _ref_model(npref, path, **kw):
    return wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT, **kw), ea.ModelRef("ref", weights=path))


def test_parameter_layout_is_the_documented_one(npref):
    flat = flatten_params(init_params(npref.X_DIM, npref.HIDDEN, npref.LATENT))
    got = {k: v.shape for k, v in flat.items()}
    assert got == parameter_shapes(npref.X_DIM, npref.HIDDEN, npref.LATENT)


@pytest.mark.parametrize("kw, rtol", [({"precision": "float64"}, 1e-12), ({"dtype": "float64"}, 1e-12), ({}, 1e-5)])
def test_encoder_matches_numpy(npref, ref_file, ref_weights, data, kw, rtol):
    model = _ref_model(npref, ref_file, **kw)
    q = model.encoder.encode(data)
    mean, log_var = npref.encode(ref_weights, data)
    np.testing.assert_allclose(q.mean, mean, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(q.std, np.exp(0.5 * log_var), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("kw, rtol", [({"precision": "float64"}, 1e-12), ({}, 1e-5)])
def test_bernoulli_log_likelihood_matches_numpy(npref, ref_file, ref_weights, data, kw, rtol):
    model = _ref_model(npref, ref_file, **kw)
    z = np.random.default_rng(0).normal(size=(50, 3, npref.LATENT))
    got = model.decoder.log_likelihood(data[:50], z)
    assert got.shape == (50, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got, npref.bernoulli_loglik(ref_weights, data[:50], z), rtol=rtol)


def test_reconstruction_term_is_the_numpy_expectation(npref, ref_file, ref_weights, data):
    model = _ref_model(npref, ref_file, precision="float64")
    seen = testing.record_decoder_calls(model)
    audit = ea.audit_model(model, data, ea.AuditSettings(seed=3, reconstruction_samples=2))
    truth = np.concatenate([npref.bernoulli_loglik(ref_weights, x, z) for x, z in seen])
    assert truth.shape == (data.shape[0], 2)
    assert audit.by_prior["native"].reconstruction.value == pytest.approx(truth.mean(), rel=1e-12)


def test_float64_precision_leaves_the_global_x64_flag_alone(npref, ref_file, data):
    before = jax.config.jax_enable_x64
    model = _ref_model(npref, ref_file, precision="float64")
    ea.audit_model(model, data, ea.AuditSettings(seed=0))
    assert jax.config.jax_enable_x64 == before
    assert jnp.zeros(1).dtype == (jnp.float64 if before else jnp.float32)


def test_params_from_the_weights_file_alone(npref, ref_file, ref_weights, data):
    from elbo_audit_jax.reference import make_functions

    enc, dec = make_functions()
    model = wrap(JaxVAE(enc, dec, None, precision="float64"), ea.ModelRef("w", weights=ref_file))
    mean, _ = npref.encode(ref_weights, data)
    np.testing.assert_allclose(model.encoder.encode(data).mean, mean, rtol=1e-12)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_save_and_load_params_round_trip(tmp_path, suffix, npref):
    params = init_params(npref.X_DIM, npref.HIDDEN, npref.LATENT, seed=5)
    path = tmp_path / f"p{suffix}"
    save_params(params, path)
    back = load_params(path, like=init_params(npref.X_DIM, npref.HIDDEN, npref.LATENT, seed=6))
    for k, v in flatten_params(params).items():
        np.testing.assert_array_equal(flatten_params(back)[k], v)
    nested = load_params(path)
    np.testing.assert_array_equal(nested["decoder"]["logits"]["bias"], params["decoder"]["logits"]["bias"])


def test_list_and_tuple_params_use_indices():
    params = {"layers": [{"w": np.ones((2, 2))}, {"w": np.zeros((2, 2))}], "t": (np.ones(1),)}
    assert sorted(flatten_params(params)) == ["layers.0.w", "layers.1.w", "t.0"]


def test_npz_and_safetensors_load_the_same(tmp_path, npref, ref_weights, data, ref_file):
    npz = tmp_path / "w.npz"
    np.savez(npz, **ref_weights)
    a = _ref_model(npref, npz).encoder.encode(data).mean
    b = _ref_model(npref, ref_file).encoder.encode(data).mean
    np.testing.assert_array_equal(a, b)


def test_claims():
    assert claims(mlp_vae(8, 4, 2))
    assert not claims(object()) and not claims({"encode_fn": 1})
    (info,) = elbo_audit_adapters()
    assert info.name == "jax" and info.claims is claims


def test_entry_point_is_registered():
    from elbo_audit._cli.plugins import PluginHost

    host = PluginHost()
    if "jax" not in host.adapters():
        pytest.skip("elbo-audit-jax is not installed (pip install -e plugins/elbo-audit-jax)")
    assert host.adapter("jax")[1].name == "jax"


def test_load_model_through_the_core(tmp_path, npref, ref_file, ref_weights, data):
    import elbo_audit_jax

    from elbo_audit._cli.models import load_model, sha256_file
    from elbo_audit._cli.plugins import PluginHost

    factory = tmp_path / "my_jax_vae.py"
    factory.write_text(
        "from elbo_audit_jax.reference import mlp_vae\n"
        "def build(latent=2):\n    return mlp_vae(x_dim=64, hidden=32, latent=latent)\n"
    )
    host = PluginHost(entry_points=False)
    host.register(elbo_audit_jax, "jax")
    model = load_model(ea.ModelRef("mine", factory=f"{factory}:build", weights=ref_file,
                                   options={"latent": npref.LATENT}), host)
    assert model.adapter == "jax" and model.attrs["weights_sha256"] == sha256_file(ref_file)
    mean, _ = npref.encode(ref_weights, data)
    np.testing.assert_allclose(model.encoder.encode(data).mean, mean, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- likelihoods


def _lin_params(p, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(0, scale, (2, p)), "b": np.linspace(-3, 3, p)}


def _enc(p, x):
    return jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2))


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli", "categorical", "normal"])
def test_named_likelihoods_match_numpy(likelihood):
    rng = np.random.default_rng(0)
    b, k, p = 6, 2, 5
    z = rng.normal(size=(b, k, 2))
    if likelihood == "categorical":
        levels = 3
        params = _lin_params(p * levels, 1)
        dec = lambda pr, zz: (zz @ pr["w"] + pr["b"]).reshape(zz.shape[0], p, levels)
        x = rng.integers(0, levels, (b, p)).astype(float)
        logits = (z @ params["w"] + params["b"]).reshape(b, k, p, levels)
        logp = logits - special.logsumexp(logits, axis=-1, keepdims=True)
        idx = np.broadcast_to(x[:, None, :, None].astype(int), (b, k, p, 1))
        want = np.take_along_axis(logp, idx, -1)[..., 0].sum(-1)
    elif likelihood == "normal":
        params = _lin_params(p, 2)
        dec = lambda pr, zz: (zz @ pr["w"] + pr["b"], jnp.full((zz.shape[0], p), -0.7))
        x = rng.normal(size=(b, p))
        want = stats.norm.logpdf(x[:, None, :], z @ params["w"] + params["b"], np.exp(-0.35)).sum(-1)
    else:
        params = _lin_params(p, 3, scale=3.0)
        dec = lambda pr, zz: zz @ pr["w"] + pr["b"]
        logits = z @ params["w"] + params["b"]
        if likelihood == "bernoulli":
            x = rng.integers(0, 2, (b, p)).astype(float)
            want = np.sum(x[:, None] * logits - np.logaddexp(0, logits), -1)
        else:
            x = rng.random((b, p))
            lam = special.expit(logits)
            log_c = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
            want = np.sum(x[:, None] * np.log(lam) + (1 - x[:, None]) * np.log1p(-lam) + log_c, -1)
    model = wrap(JaxVAE(_enc, dec, params, likelihood=likelihood, precision="float64"), ea.ModelRef(likelihood))
    np.testing.assert_allclose(model.decoder.log_likelihood(x, z), want, rtol=1e-10)


def test_continuous_bernoulli_normaliser_from_its_definition():
    """log C(lambda), C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), in 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    from elbo_audit_jax._decoder import _cb_log_norm

    mpmath.mp.dps = 50
    logits = [1e-6, 1e-3, -2e-3, 9.9e-3, 1.01e-2, -0.3, 2.0, -15.0, 30.0, -80.0]

    def truth(l):
        lam = 1 / (1 + mpmath.exp(-mpmath.mpf(l)))
        u = 1 - 2 * lam
        return float(mpmath.log(2 * mpmath.atanh(u) / u))

    with jax.enable_x64(True):
        got = np.asarray(_cb_log_norm(jnp.asarray(logits)))
        at_zero = float(_cb_log_norm(jnp.zeros(())))
    np.testing.assert_allclose(got, [truth(v) for v in logits], rtol=1e-13)
    assert at_zero == pytest.approx(np.log(2), rel=1e-15)


def test_custom_likelihood_callable():
    params = _lin_params(3, 4)
    dec = lambda pr, zz: zz @ pr["w"] + pr["b"]
    lik = lambda out, x: -((x - out) ** 2)  # any per-element log-density
    model = wrap(JaxVAE(_enc, dec, params, likelihood=lik, precision="float64"), ea.ModelRef("c"))
    x = np.ones((4, 3))
    z = np.random.default_rng(0).normal(size=(4, 2, 2))
    want = -np.sum((x[:, None] - (z @ params["w"] + params["b"])) ** 2, -1)
    np.testing.assert_allclose(model.decoder.log_likelihood(x, z), want, rtol=1e-12)


def test_image_shaped_data_against_flat_logits():
    params = _lin_params(12, 5)
    dec = lambda pr, zz: zz @ pr["w"] + pr["b"]
    model = wrap(JaxVAE(_enc, dec, params, precision="float64"), ea.ModelRef("img"))
    x = np.random.default_rng(1).integers(0, 2, (4, 3, 4)).astype(float)
    z = np.random.default_rng(2).normal(size=(4, 2, 2))
    logits = z @ params["w"] + params["b"]
    want = np.sum(x.reshape(4, 1, 12) * logits - np.logaddexp(0, logits), -1)
    np.testing.assert_allclose(model.decoder.log_likelihood(x, z), want, rtol=1e-12)


def test_odd_batch_sizes_are_padded_not_recompiled(npref, ref_file, ref_weights, data):
    model = _ref_model(npref, ref_file, precision="float64")
    mean, _ = npref.encode(ref_weights, data)
    for n in (1, 3, 17, 63, 64, 65):
        np.testing.assert_allclose(model.encoder.encode(data[:n]).mean, mean[:n], rtol=1e-12)


def test_batches_of_ref_batch_size(npref, ref_file, ref_weights, data):
    model = wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT, precision="float64"),
                 ea.ModelRef("b", weights=ref_file, batch_size=64))
    z = np.random.default_rng(0).normal(size=(50, 3, npref.LATENT))
    np.testing.assert_allclose(model.decoder.log_likelihood(data[:50], z),
                               npref.bernoulli_loglik(ref_weights, data[:50], z), rtol=1e-12)


# ----------------------------------------------------------------------------- priors


def test_gaussian_prior_from_arrays_has_closed_form():
    from elbo_audit_jax import GaussianPrior

    loc, scale = np.array([0.5, -1.0]), np.array([2.0, 0.5])
    model = wrap(JaxVAE(_enc, None, {"a": np.zeros(1)}, prior=GaussianPrior(loc, std=scale)), ea.ModelRef("g"))
    z = np.random.default_rng(0).normal(size=(7, 2))
    np.testing.assert_allclose(model.prior.log_prob(z), stats.norm.logpdf(z, loc, scale).sum(1), rtol=1e-13)
    q = ea.DiagonalGaussian(np.array([[0.1, 0.2], [1.0, -1.0]]), np.array([[1.0, 0.3], [0.2, 0.5]]))
    want = np.sum(np.log(scale) + 0.5 * np.log(2 * np.pi) + (q.std**2 + (q.mean - loc) ** 2) / (2 * scale**2), 1)
    np.testing.assert_allclose(model.prior.cross_entropy(q), want, rtol=1e-13)


def test_prior_key_path_that_does_not_exist():
    from elbo_audit_jax import GaussianPrior

    with pytest.raises(ea.ModelError, match="prior.loc"):
        wrap(JaxVAE(_enc, None, {"a": np.zeros(1)}, prior=GaussianPrior("prior.loc", std=1.0)), ea.ModelRef("g"))


@pytest.mark.parametrize("device", ["cuda", "gpu:0"])
def test_missing_gpu_is_a_usage_error(device):
    try:
        jax.devices("gpu")
        pytest.skip("this machine has a GPU")
    except RuntimeError:
        pass
    with pytest.raises(ea.UsageError, match="gpu"):
        wrap(mlp_vae(8, 4, 2), ea.ModelRef("gpu", device=device))


def test_importing_the_plugin_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, elbo_audit_jax; elbo_audit_jax.claims(object()); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
