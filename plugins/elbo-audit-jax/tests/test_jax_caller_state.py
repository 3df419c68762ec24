"""The JAX adapter leaves the caller's model alone: params, their dtype and device, global flags.

A JaxVAE's params are an immutable pytree, so the adapter works on converted
copies; these tests hold it to that: after wrapping with a weights file and a
float64 ``precision`` and a full audit, the caller's ``JaxVAE`` still holds the
very same arrays (same objects, values, dtypes, devices) and JAX's global
``jax_enable_x64`` and matmul-precision flags are as they were.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from elbo_audit_jax import save_params, wrap
from elbo_audit_jax.reference import init_params, mlp_vae

import elbo_audit as ea


def test_wrap_and_audit_leave_the_callers_model_and_flags_alone(tmp_path) -> None:
    vae = mlp_vae(12, 8, 3, seed=1, precision="float64")
    vae = dataclasses.replace(vae, params=jax.tree_util.tree_map(jnp.asarray, vae.params))  # on a device
    weights = tmp_path / "w.safetensors"
    save_params(init_params(12, 8, 3, 2, "float32"), weights)   # other values than vae's own
    leaves = jax.tree_util.tree_leaves(vae.params)
    snapshot = [(id(a), np.asarray(a).copy(), a.dtype, a.devices()) for a in leaves]
    flags = (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision)
    x = (np.random.default_rng(0).random((30, 12)) < 0.5).astype(np.float64)
    with wrap(vae, ea.ModelRef("m", weights=weights)) as model:
        audit = ea.audit_model(model, x, ea.AuditSettings(seed=0, samples_per_point=2, reconstruction_samples=1))
    assert np.isfinite(audit.by_prior["native"].elbo.value)
    after = jax.tree_util.tree_leaves(vae.params)
    assert len(after) == len(snapshot)
    for a, (ident, values, dtype, devices) in zip(after, snapshot):
        assert id(a) == ident and a.dtype == dtype and a.devices() == devices
        np.testing.assert_array_equal(np.asarray(a), values)
    assert (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision) == flags
