"""elbo_audit.testing's conformance checks on every kind of model the torch adapter takes.

Each case names the core prior that its prior should equal, built here from
the parameters the test put into the model (not from the adapter).
"""

from __future__ import annotations

import unittest
from pathlib import Path

import numpy as np
import pytest
import torch
from elbo_audit_torch import TorchPrior, TorchVAE, VampPrior, wrap
from elbo_audit_torch.reference import mlp_vae
from torch import distributions as td
from torch import nn

import elbo_audit as ea
from elbo_audit import testing

D = 4


class GaussEncoder(nn.Module):
    """Returns Independent(Normal) (the distribution form of q(z|x))."""

    def __init__(self, x_dim: int, d: int = D) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim, 16), nn.Tanh(), nn.Dropout(0.5))
        self.mean = nn.Linear(16, d)
        self.log_std = nn.Linear(16, d)

    def forward(self, x: torch.Tensor) -> td.Distribution:
        h = self.net(x.reshape(x.shape[0], -1))
        return td.Independent(td.Normal(self.mean(h), torch.exp(self.log_std(h) - 1.0)), 1)


class MLPHead(nn.Module):
    def __init__(self, d: int, out: int, levels: int | None = None) -> None:
        super().__init__()
        self.levels = levels
        self.net = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, out * (levels or 1)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.net(z)
        return h if self.levels is None else h.reshape(z.shape[0], -1, self.levels)


class BernoulliDecoder(MLPHead):
    def forward(self, z: torch.Tensor) -> td.Distribution:  # type: ignore[override]
        return td.Independent(td.Bernoulli(logits=super().forward(z)), 1)


class NormalDecoder(nn.Module):
    def __init__(self, d: int, out: int) -> None:
        super().__init__()
        self.mean = MLPHead(d, out)
        self.log_var = nn.Parameter(torch.full((out,), -1.0))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.mean(z)
        return m, self.log_var.expand_as(m)


class LearnedGaussianPrior(nn.Module):
    def __init__(self, loc: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.tensor(loc, dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.tensor(np.log(scale), dtype=torch.float64))

    def forward(self) -> td.Distribution:
        return td.Independent(td.Normal(self.loc, self.log_scale.exp()), 1)


class LearnedMixturePrior(nn.Module):
    def __init__(self, logits: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits, dtype=torch.float64))
        self.loc = nn.Parameter(torch.tensor(loc, dtype=torch.float64))
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))

    def forward(self) -> td.Distribution:
        comp = td.Independent(td.Normal(self.loc, self.scale), 1)
        return td.MixtureSameFamily(td.Categorical(logits=self.logits), comp)


class VAE(nn.Module):
    """An nn.Module with encoder, decoder and prior children (claimed without a spec)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        if prior is not None:
            self.prior = prior


def _seeded(seed: int):
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def build_case(name: str, data: np.ndarray, ref_file, ref_weights, npref, tmp: Path):
    """(model, x, options for testing.run_check) of the case ``name``."""
    x_dim = data.shape[1]
    opts: dict = {}
    if name in ("reference", "reference_float64"):
        obj = mlp_vae(x_dim, npref.HIDDEN, npref.LATENT, dtype="float32")
        if name == "reference_float64":
            obj = TorchVAE(obj.encoder, obj.decoder, likelihood="bernoulli", module=obj, precision="float64")
        model = wrap(obj, ea.ModelRef(name, weights=ref_file))
        trap = tmp / "trap.pt"
        marker = tmp / "payload-ran"
        torch.save({"encoder.hidden.weight": testing.BoobyTrap(marker)}, trap)
        opts = {
            "reference_prior": ea.StandardNormal(npref.LATENT),
            "load": lambda p: wrap(mlp_vae(x_dim, npref.HIDDEN, npref.LATENT), ea.ModelRef("trap", weights=p)),
            "unsafe_file": trap,
            "marker": marker,
        }
        return model, data, opts
    if name == "learned_gaussian_prior":
        rng = _seeded(2)
        loc, scale = rng.normal(0, 0.5, D), np.exp(rng.normal(0, 0.3, D))
        vae = VAE(GaussEncoder(x_dim), BernoulliDecoder(D, x_dim), LearnedGaussianPrior(loc, scale))
        model = wrap(vae, ea.ModelRef(name))
        return model, data, {"reference_prior": ea.DiagonalGaussianPrior(loc, scale)}
    if name == "mixture_prior":
        rng = _seeded(3)
        k = 3
        logits, loc, scale = rng.normal(0, 1, k), rng.normal(0, 1.5, (k, D)), np.exp(rng.normal(-0.5, 0.2, (k, D)))
        spec = TorchVAE(GaussEncoder(x_dim), BernoulliDecoder(D, x_dim), prior=LearnedMixturePrior(logits, loc, scale))
        model = wrap(spec, ea.ModelRef(name))
        w = np.exp(logits - logits.max())
        return model, data, {"reference_prior": ea.MixtureOfGaussians(w / w.sum(), loc, scale)}
    if name == "categorical":
        rng = _seeded(4)
        x = np.minimum(3, np.floor(rng.random(data.shape) * 1.2 + data * 2.5))  # 4 grey levels
        spec = TorchVAE(GaussEncoder(x_dim), MLPHead(D, x_dim, levels=4), likelihood="categorical", latent_dim=D)
        return wrap(spec, ea.ModelRef(name)), x, {"reference_prior": ea.StandardNormal(D)}
    if name == "normal_likelihood":
        rng = _seeded(5)
        x = data + rng.normal(0, 0.3, data.shape)
        spec = TorchVAE(GaussEncoder(x_dim), NormalDecoder(D, x_dim), prior=td.Normal(torch.zeros(D), torch.ones(D)),
                        likelihood="normal")
        return wrap(spec, ea.ModelRef(name)), x, {"reference_prior": ea.StandardNormal(D)}
    if name == "continuous_bernoulli":
        rng = _seeded(6)
        x = np.clip(data * 0.8 + rng.random(data.shape) * 0.2, 0, 1)
        spec = TorchVAE(GaussEncoder(x_dim), MLPHead(D, x_dim), likelihood="continuous_bernoulli")
        return wrap(spec, ea.ModelRef(name)), x, {"reference_prior": ea.StandardNormal(D)}
    if name == "vamp_prior":
        rng = _seeded(7)
        pseudo = (rng.random((10, x_dim)) < 0.5).astype(np.float64)
        vae = mlp_vae(x_dim, npref.HIDDEN, npref.LATENT, dtype="float64")
        spec = TorchVAE(vae.encoder, vae.decoder, prior=VampPrior(torch.tensor(pseudo)), likelihood="bernoulli",
                        module=vae)
        model = wrap(spec, ea.ModelRef(name, weights=ref_file))
        mean, log_var = npref.encode(ref_weights, pseudo)  # numpy truth
        ref = ea.vamp_prior(ea.DiagonalGaussian(mean, np.exp(0.5 * log_var)))
        return model, data, {"reference_prior": ref}
    if name == "callable_prior":
        s = 1.5
        base = td.Normal(torch.zeros((), dtype=torch.float64), torch.full((), s, dtype=torch.float64))
        prior = TorchPrior(
            log_prob=lambda z: base.log_prob(z).sum(-1),
            marginal_log_prob=lambda z: base.log_prob(z),
            sample=lambda rng, n: s * rng.standard_normal((n, D)),
            n_latent=D,
        )
        spec = TorchVAE(GaussEncoder(x_dim), BernoulliDecoder(D, x_dim), prior=prior, precision="float64")
        return wrap(spec, ea.ModelRef(name)), data, {"reference_prior": ea.DiagonalGaussianPrior(np.zeros(D), np.full(D, s))}
    raise KeyError(name)


CASES = [
    "reference", "reference_float64", "learned_gaussian_prior", "mixture_prior", "categorical",
    "normal_likelihood", "continuous_bernoulli", "vamp_prior", "callable_prior",
]

_built: dict = {}


@pytest.fixture
def case(request, data, ref_file, ref_weights, npref, tmp_path_factory):
    name = request.param
    if name not in _built:
        _built[name] = build_case(name, data, ref_file, ref_weights, npref, tmp_path_factory.mktemp(name))
    return _built[name]


# checks that cannot apply to a case, and why (everything else must pass)
NOT_APPLICABLE = {
    ("mixture_prior", "cross_entropy_monte_carlo"): "a mixture prior has no closed-form cross-entropy",
    ("mixture_prior", "avg_kl_analytic_vs_monte_carlo"): "a mixture prior has no closed-form cross-entropy",
    ("vamp_prior", "cross_entropy_monte_carlo"): "the VampPrior has no closed-form cross-entropy",
    ("vamp_prior", "avg_kl_analytic_vs_monte_carlo"): "the VampPrior has no closed-form cross-entropy",
    ("callable_prior", "cross_entropy_monte_carlo"): "a TorchPrior has no closed form",
    ("callable_prior", "avg_kl_analytic_vs_monte_carlo"): "a TorchPrior has no closed form",
}


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


def test_check_adapter_reports_every_check(data, ref_file, npref):
    model = wrap(mlp_vae(data.shape[1], npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=ref_file))
    results = testing.check_adapter(model, data, reference_prior=ea.StandardNormal(npref.LATENT))
    assert set(results) == set(testing.check_names())
    assert results["refuses_unsafe"].startswith("skipped")
    assert all(v == "passed" for k, v in results.items() if k != "refuses_unsafe")


def test_checks_catch_a_wrong_prior(data, ref_file, npref):
    """The conformance checks are not vacuous: a prior whose closed form lies is caught."""

    model = wrap(mlp_vae(data.shape[1], npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=ref_file))
    good = model.prior
    shifted = ea.DiagonalGaussianPrior(np.full(npref.LATENT, 0.3), np.ones(npref.LATENT))
    model.prior = _ClosedFormOf(good, shifted)  # log_prob moved, cross_entropy still N(0, I)
    with pytest.raises(AssertionError, match="cross"):
        testing.run_check("cross_entropy_monte_carlo", model, data)
    with pytest.raises(AssertionError):
        testing.run_check("prior_matches_reference", model, data, reference_prior=ea.StandardNormal(npref.LATENT))


class _ClosedFormOf:
    """log_prob of one prior with the cross-entropy of another (an inconsistent prior)."""

    def __init__(self, closed, actual) -> None:
        self.closed, self.actual = closed, actual
        self.name, self.factorised = "inconsistent", True

    @property
    def n_latent(self) -> int:
        return self.actual.n_latent

    def log_prob(self, z):
        return self.actual.log_prob(z)

    def marginal_log_prob(self, z):
        return self.actual.marginal_log_prob(z)

    def sample(self, rng, n):
        return self.actual.sample(rng, n)

    def cross_entropy(self, q):
        return self.closed.cross_entropy(q)
