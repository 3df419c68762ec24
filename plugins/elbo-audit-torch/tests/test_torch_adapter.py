"""The torch adapter against independent truths: numpy reimplementations and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from elbo_audit_torch import TorchVAE, claims, elbo_audit_adapters, wrap
from elbo_audit_torch.reference import MLPVAE, PARAMETER_SHAPES, mlp_vae
from scipy import special, stats
from torch import distributions as td
from torch import nn

import elbo_audit as ea
from elbo_audit import testing


def _ref_model(npref, path, **kw):
    return wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT, **kw), ea.ModelRef("ref", weights=path))


def test_parameter_layout_is_the_documented_one(npref):
    model = mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == PARAMETER_SHAPES(npref.X_DIM, npref.HIDDEN, npref.LATENT)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_encoder_matches_numpy(npref, ref_file, ref_weights, data, dtype, rtol):
    model = _ref_model(npref, ref_file, dtype=dtype)
    q = model.encoder.encode(data)
    mean, log_var = npref.encode(ref_weights, data)
    np.testing.assert_allclose(q.mean, mean, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(q.std, np.exp(0.5 * log_var), rtol=rtol, atol=rtol)
    assert q.mean.dtype == np.float64


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_bernoulli_log_likelihood_matches_numpy(npref, ref_file, ref_weights, data, dtype, rtol):
    model = _ref_model(npref, ref_file, dtype=dtype)
    z = np.random.default_rng(0).normal(size=(50, 3, npref.LATENT))
    got = model.decoder.log_likelihood(data[:50], z)
    want = npref.bernoulli_loglik(ref_weights, data[:50], z)
    assert got.shape == (50, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=rtol)


def test_reconstruction_term_is_the_numpy_expectation(npref, ref_file, ref_weights, data):
    """audit_model's reconstruction equals the mean of numpy log p(x|z) at the z the core drew."""
    model = _ref_model(npref, ref_file, dtype="float64")
    seen = testing.record_decoder_calls(model)
    audit = ea.audit_model(model, data, ea.AuditSettings(seed=3, reconstruction_samples=2))
    truth = np.concatenate([npref.bernoulli_loglik(ref_weights, x, z) for x, z in seen])
    assert truth.shape == (data.shape[0], 2)
    assert audit.by_prior["native"].reconstruction.value == pytest.approx(truth.mean(), rel=1e-12)


def test_avg_kl_is_the_gaussian_closed_form(npref, ref_file, ref_weights, data):
    model = _ref_model(npref, ref_file, dtype="float64")
    audit = ea.audit_model(model, data, ea.AuditSettings(seed=0))
    mean, log_var = npref.encode(ref_weights, data)
    kl = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)
    assert audit.by_prior["native"].kl.avg_kl.value == pytest.approx(kl.mean(), rel=1e-10)
    assert kl.mean() > 1.0  # the weights are informative: the test is not about a collapsed posterior


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "checkpoint", "npz"])
def test_weight_formats_load_the_same_parameters(tmp_path, npref, ref_weights, data, fmt):
    state = {k: torch.tensor(v, dtype=torch.float32) for k, v in ref_weights.items()}
    path = tmp_path / f"w.{ {'checkpoint': 'pth'}.get(fmt, fmt)}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    elif fmt == "pt":
        torch.save(state, path)
    elif fmt == "checkpoint":
        torch.save({"state_dict": state, "epoch": 7, "optimizer": {"lr": 1e-3}}, path)
    else:
        np.savez(path, **{k: v.astype(np.float32) for k, v in ref_weights.items()})
    model = _ref_model(npref, path)
    mean, _ = npref.encode(ref_weights, data)
    np.testing.assert_allclose(model.encoder.encode(data).mean, mean, rtol=1e-5, atol=1e-5)


def test_weights_are_loaded_with_weights_only_true(monkeypatch, tmp_path, npref, ref_weights):
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only", "MISSING"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / "w.pt"
    torch.save({k: torch.tensor(v, dtype=torch.float32) for k, v in ref_weights.items()}, path)
    _ref_model(npref, path)
    assert calls == [True]


def test_model_runs_in_eval_mode_without_gradients(npref, ref_file, data):
    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT).encoder
            self.seen: list[tuple[bool, bool]] = []

        def forward(self, x):
            self.seen.append((self.training, torch.is_grad_enabled()))
            return self.inner(x)

    spy = Spy()
    spy.train()
    model = wrap(TorchVAE(spy, latent_dim=npref.LATENT), ea.ModelRef("spy"))
    model.encoder.encode(data[:10])
    assert spy.seen == [(False, False)]


def test_batches_of_ref_batch_size(npref, ref_file, data):
    sizes = []
    vae = mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT)
    vae.decoder.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    model = wrap(vae, ea.ModelRef("b", weights=ref_file, batch_size=64))
    model.decoder.log_likelihood(data[:50], np.zeros((50, 3, npref.LATENT)))
    assert sizes == [64, 64, 22]


def test_claims():
    vae = MLPVAE(8, 4, 2)
    assert claims(vae) and claims(TorchVAE(vae.encoder, vae.decoder))

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = nn.Linear(2, 2), nn.Linear(2, 2)

    assert claims(Plain())
    assert not claims(nn.Linear(2, 2))
    assert not claims(object())
    assert not claims({"encoder": 1, "decoder": 2})
    (info,) = elbo_audit_adapters()
    assert info.name == "torch" and info.claims is claims


def test_entry_point_is_registered():
    from elbo_audit._cli.plugins import PluginHost

    host = PluginHost()
    if "torch" not in host.adapters():
        pytest.skip("elbo-audit-torch is not installed (pip install -e plugins/elbo-audit-torch)")
    plugin, info = host.adapter("torch")
    assert plugin == "torch" and info.name == "torch"


def test_load_model_through_the_core(tmp_path, npref, ref_file, ref_weights, data):
    """The core's factory path: file.py:function, options, sha256 of the weights, the adapter named."""
    import elbo_audit_torch

    from elbo_audit._cli.models import load_model, sha256_file
    from elbo_audit._cli.plugins import PluginHost

    factory = tmp_path / "my_vae.py"
    factory.write_text(
        "from elbo_audit_torch.reference import mlp_vae\n"
        "def build(latent=2):\n    return mlp_vae(x_dim=64, hidden=32, latent=latent)\n"
    )
    host = PluginHost(entry_points=False)
    host.register(elbo_audit_torch, "torch")
    ref = ea.ModelRef("mine", factory=f"{factory}:build", weights=ref_file, options={"latent": npref.LATENT})
    model = load_model(ref, host)
    assert model.adapter == "torch"
    assert model.attrs["weights_sha256"] == sha256_file(ref_file)
    mean, _ = npref.encode(ref_weights, data)
    np.testing.assert_allclose(model.encoder.encode(data).mean, mean, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- likelihoods


class _Head(nn.Module):
    def __init__(self, out, x_shape=None) -> None:
        super().__init__()
        self.lin = nn.Linear(2, out)
        self.x_shape = x_shape

    def forward(self, z):
        h = self.lin(z)
        return h if self.x_shape is None else h.reshape(z.shape[0], *self.x_shape)


def _enc():
    return lambda x: (torch.zeros(x.shape[0], 2, dtype=x.dtype), torch.zeros(x.shape[0], 2, dtype=x.dtype))


def _np_lin(head, z):
    w = head.lin.weight.detach().double().numpy()
    b = head.lin.bias.detach().double().numpy()
    return z @ w.T + b


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli", "categorical", "normal"])
def test_named_likelihoods_match_numpy(likelihood):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    b, k, p = 6, 2, 5
    z = rng.normal(size=(b, k, 2))
    if likelihood == "categorical":
        levels = 3
        head = _Head(p * levels, (p, levels)).double()
        x = rng.integers(0, levels, (b, p)).astype(float)
        logits = _np_lin(head, z).reshape(b, k, p, levels)
        logp = logits - special.logsumexp(logits, axis=-1, keepdims=True)
        want = np.take_along_axis(logp, np.broadcast_to(x[:, None, :, None].astype(int), (b, k, p, 1)), -1)[..., 0].sum(-1)
        dec = head
    elif likelihood == "normal":
        head = _Head(p).double()
        x = rng.normal(size=(b, p))
        log_var = -0.7
        dec = lambda zz: (head(zz), torch.full((zz.shape[0], p), log_var, dtype=zz.dtype))
        mean = _np_lin(head, z)
        want = stats.norm.logpdf(x[:, None, :], mean, np.exp(0.5 * log_var)).sum(-1)
    else:
        head = _Head(p).double()
        with torch.no_grad():  # logits away from 0, where the continuous Bernoulli needs no series
            head.lin.weight.mul_(10.0)
            head.lin.bias.copy_(torch.linspace(-3.0, 3.0, p, dtype=torch.float64))
        dec = head
        logits = _np_lin(head, z)
        if likelihood == "bernoulli":
            x = rng.integers(0, 2, (b, p)).astype(float)
            want = np.sum(x[:, None] * logits - np.logaddexp(0, logits), -1)
        else:
            x = rng.random((b, p))
            lam = special.expit(logits)
            # C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), away from lambda = 1/2
            assert np.all(np.abs(lam - 0.5) > 0.001)
            log_c = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
            want = np.sum(x[:, None] * np.log(lam) + (1 - x[:, None]) * np.log1p(-lam) + log_c, -1)
    model = wrap(TorchVAE(_enc(), dec, likelihood=likelihood, precision="float64"), ea.ModelRef(likelihood))
    np.testing.assert_allclose(model.decoder.log_likelihood(x, z), want, rtol=1e-10)


def test_decoder_distribution_over_image_shaped_data():
    """A decoder over (M, 784) scores data of shape (B, 28, 28): values per row must match."""
    torch.manual_seed(1)
    head = _Head(12).double()
    x = np.random.default_rng(1).integers(0, 2, (4, 3, 4)).astype(float)
    z = np.random.default_rng(2).normal(size=(4, 2, 2))
    model = wrap(TorchVAE(_enc(), lambda zz: td.Bernoulli(logits=head(zz)), precision="float64"), ea.ModelRef("img"))
    logits = _np_lin(head, z)
    want = np.sum(x.reshape(4, 1, 12) * logits - np.logaddexp(0, logits), -1)
    np.testing.assert_allclose(model.decoder.log_likelihood(x, z), want, rtol=1e-10)


def test_float32_model_sums_log_likelihoods_in_float64():
    """784 float32 terms summed in float64 agree with the float64 sum far beyond float32 rounding."""
    torch.manual_seed(2)
    head = _Head(784)
    x = np.random.default_rng(3).integers(0, 2, (20, 784)).astype(float)
    z = np.random.default_rng(4).normal(size=(20, 1, 2))
    model = wrap(TorchVAE(_enc(), head, likelihood="bernoulli"), ea.ModelRef("f32"))
    got = model.decoder.log_likelihood(x, z)
    # truth: the float32 per-element values (what the model computes), summed exactly
    with torch.no_grad():
        lp = td.Bernoulli(logits=head(torch.tensor(z[:, 0], dtype=torch.float32))).log_prob(
            torch.tensor(x, dtype=torch.float32))
    want = np.array([np.sum(row.astype(np.float64)) for row in lp.numpy()])
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-14)


# ----------------------------------------------------------------------------- priors


def test_normal_prior_with_batch_shape_is_factorised_with_closed_form():
    loc, scale = np.array([0.5, -1.0]), np.array([2.0, 0.5])
    prior = td.Normal(torch.tensor(loc), torch.tensor(scale))
    model = wrap(TorchVAE(_enc(), prior=prior), ea.ModelRef("p"))
    p = model.prior
    assert p.factorised and p.n_latent == 2
    z = np.random.default_rng(0).normal(size=(7, 2))
    np.testing.assert_allclose(p.log_prob(z), stats.norm.logpdf(z, loc, scale).sum(1), rtol=1e-13)
    np.testing.assert_allclose(p.marginal_log_prob(z), stats.norm.logpdf(z, loc, scale), rtol=1e-13)
    q = ea.DiagonalGaussian(np.array([[0.1, 0.2], [1.0, -1.0]]), np.array([[1.0, 0.3], [0.2, 0.5]]))
    # closed form -E_q[log N(z; loc, scale^2)]
    want = np.sum(np.log(scale) + 0.5 * np.log(2 * np.pi) + (q.std**2 + (q.mean - loc) ** 2) / (2 * scale**2), 1)
    np.testing.assert_allclose(p.cross_entropy(q), want, rtol=1e-13)


def test_mixture_prior_has_no_closed_form_and_matches_scipy():
    logits = torch.tensor([0.2, -0.5, 1.0], dtype=torch.float64)
    loc = torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]], dtype=torch.float64)
    scale = torch.tensor([[1.0, 0.5], [0.3, 0.8], [1.2, 1.1]], dtype=torch.float64)
    mix = td.MixtureSameFamily(td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1))
    model = wrap(TorchVAE(_enc(), prior=mix), ea.ModelRef("mog"))
    p = model.prior
    assert not p.factorised and getattr(p, "cross_entropy", None) is None
    z = np.random.default_rng(0).normal(size=(9, 2))
    w = special.softmax(logits.numpy())
    comp = stats.norm.logpdf(z[:, None, :], loc.numpy()[None], scale.numpy()[None]).sum(-1)
    np.testing.assert_allclose(p.log_prob(z), special.logsumexp(comp + np.log(w), axis=1), rtol=1e-12)


def test_float32_prior_is_evaluated_in_float64():
    prior = td.Independent(td.Normal(torch.zeros(3), torch.full((3,), 0.1)), 1)
    model = wrap(TorchVAE(_enc(), prior=prior), ea.ModelRef("p"))
    z = np.array([[1e-3, 2.0, -3.0]])
    want = stats.norm.logpdf(z, 0, float(np.float32(0.1))).sum()  # the float32 value, in float64
    np.testing.assert_allclose(model.prior.log_prob(z), [want], rtol=1e-14)


def test_core_prior_passes_through():
    mog = ea.MixtureOfGaussians(np.array([0.5, 0.5]), np.zeros((2, 2)), np.ones((2, 2)))
    model = wrap(TorchVAE(_enc(), prior=mog), ea.ModelRef("core"))
    assert model.prior is mog


def test_lazy_standard_normal_learns_the_latent_size():
    model = wrap(TorchVAE(_enc()), ea.ModelRef("lazy"))
    with pytest.raises(ea.ModelError, match="latent size is unknown"):
        _ = model.prior.n_latent
    model.encoder.encode(np.zeros((3, 5)))
    assert model.prior.n_latent == 2


@pytest.mark.parametrize("posterior", ["log_var", "log_std", "std", "var"])
def test_posterior_parameterisations(posterior):
    second = {"log_var": np.log(0.25), "log_std": np.log(0.5), "std": 0.5, "var": 0.25}[posterior]
    enc = lambda x: (torch.ones(x.shape[0], 2, dtype=x.dtype), torch.full((x.shape[0], 2), second, dtype=x.dtype))
    model = wrap(TorchVAE(enc, posterior=posterior, precision="float64"), ea.ModelRef(posterior))
    q = model.encoder.encode(np.zeros((3, 4)))
    np.testing.assert_allclose(q.std, 0.5, rtol=1e-14)
    np.testing.assert_allclose(q.mean, 1.0)


def test_encoder_returning_normal_distribution():
    enc = lambda x: td.Normal(torch.full((x.shape[0], 3), 0.5), torch.full((x.shape[0], 3), 2.0))
    model = wrap(TorchVAE(enc), ea.ModelRef("n"))
    q = model.encoder.encode(np.zeros((4, 1)))
    np.testing.assert_allclose(q.std, 2.0)
    np.testing.assert_allclose(q.mean, 0.5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_usage_error():
    with pytest.raises(ea.UsageError, match="cuda"):
        wrap(TorchVAE(_enc()), ea.ModelRef("gpu", device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(npref, ref_file, data):
    cpu = _ref_model(npref, ref_file, dtype="float64")
    gpu = wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT, dtype="float64"),
               ea.ModelRef("ref", weights=ref_file, device="cuda"))
    s = ea.AuditSettings(seed=1)
    from elbo_audit.testing import assert_audits_close

    assert_audits_close(ea.audit_model(gpu, data, s), ea.audit_model(cpu, data, s), atol=1e-9)


def test_importing_the_plugin_does_not_import_torch():
    """`elbo-audit plugins` and the adapter's claims stay fast: torch loads only when used."""
    import subprocess
    import sys

    code = "import sys, elbo_audit_torch; elbo_audit_torch.claims(object()); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
