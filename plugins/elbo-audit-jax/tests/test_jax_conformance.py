"""elbo_audit.testing's conformance checks on every kind of model the JAX adapter takes.

Each case names the core prior that its prior should equal, built here from
the parameters the test put into the model (not from the adapter).
"""

from __future__ import annotations

import unittest

import jax.numpy as jnp
import numpy as np
import pytest
from elbo_audit_jax import GaussianPrior, JaxPrior, JaxVAE, MixturePrior, VampPrior, wrap
from elbo_audit_jax.reference import make_functions, mlp_vae

import elbo_audit as ea
from elbo_audit import testing

D = 4


def small_params(x_dim: int, out: int, seed: int, d: int = D) -> dict:
    """Params of a small MLP encoder (log_std head) and a decoder head with ``out`` outputs."""
    rng = np.random.default_rng(seed)

    def lin(o, i, gain=1.5):
        return {"w": rng.normal(0, gain / np.sqrt(i), (i, o)), "b": rng.normal(0, 0.1, o)}

    return {"enc": {"h": lin(16, x_dim), "mean": lin(d, 16), "log_std": lin(d, 16, 0.3)},
            "dec": {"h": lin(16, d), "out": lin(out, 16)}}


def enc_fn(p, x):
    h = jnp.tanh(x.reshape(x.shape[0], -1) @ p["enc"]["h"]["w"] + p["enc"]["h"]["b"])
    return (h @ p["enc"]["mean"]["w"] + p["enc"]["mean"]["b"],
            h @ p["enc"]["log_std"]["w"] + p["enc"]["log_std"]["b"] - 1.0)


def dec_fn(p, z):
    h = jnp.tanh(z @ p["dec"]["h"]["w"] + p["dec"]["h"]["b"])
    return h @ p["dec"]["out"]["w"] + p["dec"]["out"]["b"]


class NormalLike:
    """Duck-typed Normal (like distrax / numpyro): loc and scale attributes."""

    def __init__(self, loc, scale):
        self.loc, self.scale = loc, scale


def enc_dist_fn(p, x):
    mean, log_std = enc_fn(p, x)
    return NormalLike(mean, jnp.exp(log_std))


def build_case(name, data, ref_file, ref_weights, npref, tmp):
    x_dim = data.shape[1]
    if name in ("reference", "reference_float64"):
        precision = "float64" if name.endswith("float64") else "model"
        model = wrap(mlp_vae(x_dim, npref.HIDDEN, npref.LATENT, precision=precision), ea.ModelRef(name, weights=ref_file))
        marker = tmp / "payload-ran"
        trap = tmp / "trap.npz"
        np.savez(trap, **{"encoder.hidden.weight": np.array([testing.BoobyTrap(marker)], dtype=object)})
        return model, data, {
            "reference_prior": ea.StandardNormal(npref.LATENT),
            "load": lambda p: wrap(mlp_vae(x_dim, npref.HIDDEN, npref.LATENT), ea.ModelRef("trap", weights=p)),
            "unsafe_file": trap, "marker": marker,
        }
    if name == "learned_gaussian_prior":
        params = small_params(x_dim, x_dim, 2)
        rng = np.random.default_rng(2)
        params["prior"] = {"mean": rng.normal(0, 0.5, D), "log_std": rng.normal(0, 0.3, D)}
        spec = JaxVAE(enc_fn, dec_fn, params, posterior="log_std",
                      prior=GaussianPrior(mean="prior.mean", log_std="prior.log_std"), precision="float64")
        ref = ea.DiagonalGaussianPrior(params["prior"]["mean"], np.exp(params["prior"]["log_std"]))
        return wrap(spec, ea.ModelRef(name)), data, {"reference_prior": ref}
    if name == "mixture_prior":
        params = small_params(x_dim, x_dim, 3)
        rng = np.random.default_rng(3)
        k = 3
        params["prior"] = {"logits": rng.normal(0, 1, k), "mean": rng.normal(0, 1.5, (k, D)),
                           "log_std": rng.normal(-0.5, 0.2, (k, D))}
        spec = JaxVAE(enc_fn, dec_fn, params, posterior="log_std",
                      prior=MixturePrior("prior.logits", "prior.mean", log_std="prior.log_std"))
        w = np.exp(params["prior"]["logits"] - params["prior"]["logits"].max())
        ref = ea.MixtureOfGaussians(w / w.sum(), params["prior"]["mean"], np.exp(params["prior"]["log_std"]))
        return wrap(spec, ea.ModelRef(name)), data, {"reference_prior": ref}
    if name == "categorical":
        rng = np.random.default_rng(4)
        x = np.minimum(3, np.floor(rng.random(data.shape) * 1.2 + data * 2.5))
        params = small_params(x_dim, x_dim * 4, 4)
        spec = JaxVAE(enc_fn, lambda p, z: dec_fn(p, z).reshape(z.shape[0], x_dim, 4), params,
                      posterior="log_std", likelihood="categorical", latent_dim=D)
        return wrap(spec, ea.ModelRef(name)), x, {"reference_prior": ea.StandardNormal(D)}
    if name == "normal_likelihood":
        rng = np.random.default_rng(5)
        x = data + rng.normal(0, 0.3, data.shape)
        params = small_params(x_dim, x_dim, 5)
        spec = JaxVAE(enc_dist_fn, lambda p, z: (dec_fn(p, z), jnp.full((z.shape[0], x_dim), -1.0)),
                      params, likelihood="normal")
        return wrap(spec, ea.ModelRef(name)), x, {"reference_prior": ea.StandardNormal(D)}
    if name == "continuous_bernoulli":
        rng = np.random.default_rng(6)
        x = np.clip(data * 0.8 + rng.random(data.shape) * 0.2, 0, 1)
        spec = JaxVAE(enc_fn, dec_fn, small_params(x_dim, x_dim, 6), posterior="log_std",
                      likelihood="continuous_bernoulli")
        return wrap(spec, ea.ModelRef(name)), x, {"reference_prior": ea.StandardNormal(D)}
    if name == "vamp_prior":
        rng = np.random.default_rng(7)
        pseudo = (rng.random((10, x_dim)) < 0.5).astype(np.float64)
        enc, dec = make_functions("tanh")
        spec = JaxVAE(enc, dec, None, prior=VampPrior(pseudo), precision="float64")
        model = wrap(spec, ea.ModelRef(name, weights=ref_file))  # params from the file alone
        mean, log_var = npref.encode(ref_weights, pseudo)
        ref = ea.vamp_prior(ea.DiagonalGaussian(mean, np.exp(0.5 * log_var)))
        return model, data, {"reference_prior": ref}
    if name == "function_prior":
        s = 1.5

        def marg(p, z):
            return -0.5 * (z / p["prior_scale"]) ** 2 - jnp.log(p["prior_scale"]) - 0.5 * jnp.log(2 * jnp.pi)

        params = small_params(x_dim, x_dim, 8)
        params["prior_scale"] = np.float64(s)
        prior = JaxPrior(lambda p, z: marg(p, z).sum(-1), n_latent=D, marginal_log_prob_fn=marg,
                         sample=lambda rng, n: s * rng.standard_normal((n, D)))
        spec = JaxVAE(enc_fn, dec_fn, params, posterior="log_std", prior=prior, precision="float64")
        ref = ea.DiagonalGaussianPrior(np.zeros(D), np.full(D, s))
        return wrap(spec, ea.ModelRef(name)), data, {"reference_prior": ref}
    raise KeyError(name)


CASES = [
    "reference", "reference_float64", "learned_gaussian_prior", "mixture_prior", "categorical",
    "normal_likelihood", "continuous_bernoulli", "vamp_prior", "function_prior",
]

NOT_APPLICABLE = {
    (case, check): "no closed-form cross-entropy"
    for case in ("mixture_prior", "vamp_prior", "function_prior")
    for check in ("cross_entropy_monte_carlo", "avg_kl_analytic_vs_monte_carlo")
}

_built: dict = {}


@pytest.fixture
def case(request, data, ref_file, ref_weights, npref, tmp_path_factory):
    name = request.param
    if name not in _built:
        _built[name] = build_case(name, data, ref_file, ref_weights, npref, tmp_path_factory.mktemp(name))
    return _built[name]


@pytest.mark.parametrize("check", testing.check_names())
@pytest.mark.parametrize("case", CASES, indirect=True)
def test_conformance(case, check, request):
    model, x, opts = case
    case_name = request.node.callspec.params["case"]
    if check == "refuses_unsafe" and "load" not in opts:
        pytest.skip("the unsafe-file check runs on the reference cases")
    if (case_name, check) in NOT_APPLICABLE:
        with pytest.raises(unittest.SkipTest):
            testing.run_check(check, model, x, **opts)
        return
    testing.run_check(check, model, x, **opts)
