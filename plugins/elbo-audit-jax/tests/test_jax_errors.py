"""Untrusted files and model failures at the boundary of the JAX adapter."""

from __future__ import annotations

import elbo_audit_jax
import jax.numpy as jnp
import numpy as np
import pytest
from elbo_audit_jax import JaxVAE, wrap
from elbo_audit_jax.reference import mlp_vae

import elbo_audit as ea
from elbo_audit import testing
from elbo_audit._cli.models import load_model
from elbo_audit._cli.plugins import PluginHost


def _one_line(exc: BaseException) -> str:
    assert "\n" not in str(exc)
    return str(exc)


def _host():
    host = PluginHost(entry_points=False)
    host.register(elbo_audit_jax, "jax")
    return host


def test_object_array_npz_is_refused_and_never_runs(tmp_path, npref):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "w.npz"
    np.savez(path, **{"encoder.hidden.weight": np.array([testing.BoobyTrap(marker)], dtype=object)})
    for allow in (False, True):  # the JAX adapter never unpickles
        with pytest.raises(ea.UnsafeArtifactError) as err:
            wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=path, allow_unsafe=allow))
        assert err.value.exit_code == 4 and "object arrays" in _one_line(err.value)
    assert not marker.exists()
    # control: the trap is armed
    np.load(path, allow_pickle=True)["encoder.hidden.weight"]
    assert marker.exists()


def test_pickle_is_refused_even_with_allow_unsafe(tmp_path, npref):
    marker = tmp_path / "payload-ran"
    path = testing.write_pickle_trap(tmp_path / "params.pkl", marker)
    factory = tmp_path / "f.py"
    factory.write_text("from elbo_audit_jax.reference import mlp_vae\ndef make():\n    return mlp_vae(64, 32, 4)\n")
    with pytest.raises(ea.UnsafeArtifactError):  # the core refuses
        load_model(ea.ModelRef("m", factory=f"{factory}:make", weights=path), _host())
    with pytest.raises(ea.UnsafeArtifactError, match="only array files"):  # the adapter refuses
        load_model(ea.ModelRef("m", factory=f"{factory}:make", weights=path, allow_unsafe=True), _host())
    assert not marker.exists()


def test_unknown_format_is_a_usage_error(tmp_path):
    path = tmp_path / "params.msgpack"
    path.write_bytes(b"\x80")
    with pytest.raises(ea.UsageError, match="save_params"):
        wrap(mlp_vae(8, 4, 2), ea.ModelRef("m", weights=path))


def test_weights_that_do_not_fit(tmp_path, ref_weights):
    wrong = dict(ref_weights)
    wrong["encoder.extra"] = np.zeros(3)
    del wrong["decoder.logits.bias"]
    path = testing.write_safetensors(wrong, tmp_path / "w.safetensors")
    with pytest.raises(ea.ModelError) as err:
        wrap(mlp_vae(64, 32, 4), ea.ModelRef("fit", weights=path))
    msg = _one_line(err.value)
    assert "missing 1: decoder.logits.bias" in msg and "unexpected 1: encoder.extra" in msg and "'fit'" in msg


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"garbage")
    with pytest.raises(ea.ModelError, match="cannot read"):
        wrap(mlp_vae(64, 32, 4), ea.ModelRef("bad", weights=path))


def test_nan_from_encoder_names_the_rows():
    def enc(p, x):
        mean = jnp.where(x[:, :1] == 7, jnp.nan, 0.0) * jnp.ones((1, 2))
        return mean, jnp.zeros_like(mean)

    x = np.zeros((10, 3))
    x[[2, 5], 0] = 7
    model = wrap(JaxVAE(enc, None, {"a": np.zeros(1, np.float32)}), ea.ModelRef("nan"))
    with pytest.raises(ea.ModelError) as err:
        ea.audit_model(model, x, ea.AuditSettings())
    msg = _one_line(err.value)
    assert "rows 2, 5" in msg and "NaN" in msg and "'nan'" in msg


def test_nan_from_decoder_names_the_data_points():
    def enc(p, x):
        mean = jnp.concatenate([1000.0 * x[:, 1:2], jnp.zeros((x.shape[0], 1))], axis=1)
        return mean, jnp.full_like(mean, -10.0)

    def dec(p, z):
        return jnp.where(z[:, :1] > 100, jnp.nan, 0.0) * jnp.ones((1, 3))

    x = np.zeros((12, 3))
    x[[4, 9], 1] = 1
    model = wrap(JaxVAE(enc, dec, {"a": np.zeros(1, np.float32)}), ea.ModelRef("nan"))
    with pytest.raises(ea.ModelError) as err:
        ea.audit_model(model, x, ea.AuditSettings())
    assert "data points 4, 9" in _one_line(err.value)


def test_grey_levels_into_bernoulli_is_refused(npref, ref_file):
    x = np.random.default_rng(0).integers(0, 17, (30, npref.X_DIM)).astype(float)
    model = wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("grey", weights=ref_file))
    with pytest.raises(ea.ModelError) as err:
        ea.audit_model(model, x, ea.AuditSettings())
    msg = _one_line(err.value)
    assert "support" in msg and "bernoulli" in msg and "binarize" in msg


def test_levels_beyond_the_categorical_are_refused():
    dec = lambda p, z: jnp.zeros((z.shape[0], 4, 3))
    enc = lambda p, x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2)))
    x = np.zeros((5, 4))
    x[3, 2] = 3.0
    model = wrap(JaxVAE(enc, dec, {"a": np.zeros(1, np.float32)}, likelihood="categorical"), ea.ModelRef("cat"))
    with pytest.raises(ea.ModelError, match=r"rows 3 .*integers 0\.\.2"):
        ea.audit_model(model, x, ea.AuditSettings())


def test_decoder_output_of_the_wrong_size():
    enc = lambda p, x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2)))
    dec = lambda p, z: jnp.zeros((z.shape[0], 5))
    model = wrap(JaxVAE(enc, dec, {"a": np.zeros(1, np.float32)}), ea.ModelRef("shape"))
    with pytest.raises(ea.ModelError, match="6 values per row"):
        model.decoder.log_likelihood(np.zeros((2, 6)), np.zeros((2, 2, 2)))


def test_encoder_returning_something_else():
    model = wrap(JaxVAE(lambda p, x: x, None, {"a": np.zeros(1, np.float32)}), ea.ModelRef("odd"))
    with pytest.raises(ea.ModelError, match="mean, log_var"):
        model.encoder.encode(np.zeros((4, 1)))


def test_encoder_parameters_of_different_shapes():
    enc = lambda p, x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 3)))
    model = wrap(JaxVAE(enc, None, {"a": np.zeros(1, np.float32)}), ea.ModelRef("shape"))
    with pytest.raises(ea.ModelError, match=r"mean \(4, 2\) but log_var \(4, 3\)"):
        model.encoder.encode(np.zeros((4, 1)))


def test_no_params_and_no_weights():
    with pytest.raises(ea.ModelError, match="no params"):
        wrap(JaxVAE(lambda p, x: x), ea.ModelRef("empty"))


def test_factory_that_raises_is_a_model_error(tmp_path):
    factory = tmp_path / "f.py"
    factory.write_text("def make():\n    raise ValueError('bad hidden size')\n")
    with pytest.raises(ea.ModelError) as err:
        load_model(ea.ModelRef("m", factory=f"{factory}:make"), _host())
    assert "bad hidden size" in _one_line(err.value) and err.value.exit_code == 3
