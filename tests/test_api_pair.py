"""``elbo_audit.audit((encode, decode), data, prior=...)``: a bare pair of callables plus a prior.

Truths: the module the pair's halves come from, audited as a module (one
code path for a pair of ``nn.Module`` objects: equal numbers, not close
ones); torch's own Bernoulli log-likelihood for a pair of plain callables
(float64 network, the core's numpy sum); and closed forms for a linear
encoder with a constant decoder: KL(N(m, s^2) || N(mu, sigma^2)) per
latent, and sum_i x_i b_i - log(1 + e^{b_i}) for logits b that do not
depend on z.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import elbo_audit
from elbo_audit._model.terms import TERMS

torch = pytest.importorskip("torch")
reference = pytest.importorskip("elbo_audit_torch.reference")

SETTINGS = {"seed": 3, "resamples": 40, "marginal_samples": 256}
KL_SIDE = ("avg_kl", "index_code_mi", "marginal_kl", "total_correlation", "dimwise_kl")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return (np.random.default_rng(1).random((50, 6)) > 0.5).astype(np.float64)


def _module(dtype: torch.dtype = torch.float32) -> object:
    torch.manual_seed(7)
    m = reference.mlp_vae(x_dim=6, hidden=8, latent=2).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _same(a: xr.DataTree, b: xr.DataTree, terms: tuple[str, ...] = TERMS) -> None:
    for t in terms:
        for v in (t, f"{t}_se", f"{t}_ci"):
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
        np.testing.assert_array_equal(a["replicates"][t].values, b["replicates"][t].values, err_msg=t)


def test_a_pair_of_the_modules_halves_gives_the_modules_numbers(x: np.ndarray) -> None:
    m = _module()
    priors = ["mog=fitted_mixture,components=3"]
    whole = elbo_audit.audit(m, x, priors=priors, **SETTINGS)
    pair = elbo_audit.audit((m.encoder, m.decoder), x, priors=priors, posterior="log_var", **SETTINGS)
    assert list(pair.dataset["adapter"].values) == ["torch"]
    _same(pair.to_xarray(), whole.to_xarray())


def test_plain_callables_over_tensors_match_torchs_bernoulli(x: np.ndarray) -> None:
    m = _module(torch.float64)

    def encode(batch: np.ndarray) -> tuple[object, object]:  # numpy in, tensors out (with grad)
        mean, log_var = m.encoder(torch.as_tensor(batch))
        return mean, 0.5 * log_var

    def decode(z: np.ndarray) -> object:
        return m.decoder(torch.as_tensor(z))

    whole = elbo_audit.audit(m, x, **SETTINGS)
    pair = elbo_audit.audit((encode, decode), x, **SETTINGS)  # log_std by default
    assert list(pair.dataset["adapter"].values) == ["core"]
    _same(pair.to_xarray(), whole.to_xarray(), KL_SIDE)  # the same posteriors, bit for bit
    for t in ("reconstruction", "elbo"):  # numpy's float64 sum against torch's float64 log_prob
        np.testing.assert_allclose(pair.value(t), whole.value(t), rtol=1e-12, atol=0)


def _linear_pair(a: np.ndarray, log_std: np.ndarray, b: np.ndarray) -> tuple[object, object]:
    def encode(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return batch @ a, np.broadcast_to(log_std, (batch.shape[0], log_std.size))

    def decode(z: np.ndarray) -> np.ndarray:
        return np.broadcast_to(b, (z.shape[0], b.size))

    return encode, decode


def _kl_gauss(m: np.ndarray, s: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return np.sum(np.log(sigma / s) + (s**2 + (m - mu) ** 2) / (2 * sigma**2) - 0.5, axis=1)


@pytest.mark.parametrize("prior", [None, "diagonal"])
def test_a_numpy_pair_gives_the_closed_form_avg_kl_and_reconstruction(x: np.ndarray, prior: str | None) -> None:
    rng = np.random.default_rng(4)
    a, log_std, b = rng.normal(size=(6, 3)), np.array([-0.5, 0.1, -1.2]), rng.normal(size=6)
    mu, sigma = np.zeros(3), np.ones(3)
    p = None
    if prior == "diagonal":
        mu, sigma = np.array([0.3, -0.2, 1.0]), np.array([0.5, 2.0, 1.5])
        p = elbo_audit.DiagonalGaussianPrior(mu, sigma)
    result = elbo_audit.audit(_linear_pair(a, log_std, b), x, prior=p, **SETTINGS)
    s = np.broadcast_to(np.exp(log_std), (x.shape[0], 3))
    np.testing.assert_allclose(result.value("avg_kl"), _kl_gauss(x @ a, s, mu, sigma).mean(), rtol=1e-12)
    loglik = np.sum(x * b - np.logaddexp(0.0, b), axis=1).mean()
    np.testing.assert_allclose(result.value("reconstruction"), loglik, rtol=1e-12)
    assert result.value("reconstruction_se") == pytest.approx(0.0, abs=1e-12)  # no z in the decoder
    assert str(result.dataset["adapter"].values[0]) == "core"


def test_a_pair_is_monitored_like_a_module(x: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    pair = _linear_pair(rng.normal(size=(6, 2)), np.array([-0.3, 0.2]), rng.normal(size=6))
    monitor = elbo_audit.Monitor(x, every=1, posterior="log_std", log=lambda line: None, **SETTINGS)
    monitor(pair, 0)
    monitor(pair, 1)
    assert list(monitor.to_xarray()["step"].values) == [0, 1]


def test_bad_pairs_are_refused_with_one_line(x: np.ndarray) -> None:
    m = _module()
    with pytest.raises(elbo_audit.UsageError, match=r"prior= is for a pair .* MLPVAE carries its own"):
        elbo_audit.audit(m, x, prior="standard_normal", resamples=0)
    enc, dec = _linear_pair(np.ones((6, 2)), np.zeros(2), np.zeros(6))
    with pytest.raises(elbo_audit.UsageError, match=r"posterior='sd'; expected one of log_var"):
        elbo_audit.audit((enc, dec), x, posterior="sd", resamples=0)
    with pytest.raises(elbo_audit.UsageError, match=r"likelihood='normal'; a pair of plain callables"):
        elbo_audit.audit((enc, dec), x, likelihood="normal", resamples=0)
    with pytest.raises(elbo_audit.UsageError, match=r"prior=ndarray; expected 'standard_normal' or"):
        elbo_audit.audit((enc, dec), x, prior=np.zeros(2), resamples=0)
    with pytest.raises(elbo_audit.UsageError, match=r"prior='gaussian'; expected 'standard_normal' or"):
        elbo_audit.audit((enc, dec), x, prior="gaussian", resamples=0)
    with pytest.raises(elbo_audit.ModelError, match=r"decode returned shape \(\d+, 5\) for \d+ latents"):
        elbo_audit.audit((enc, lambda z: np.zeros((z.shape[0], 5))), x, resamples=0)
    with pytest.raises(elbo_audit.ModelError, match=r"encode returned ndarray; expected a \(mean, log_std\)"):
        elbo_audit.audit((lambda b: b[:, :2], dec), x, resamples=0)
    with pytest.raises(elbo_audit.ModelError, match=r"are not 0 or 1, outside the support of the Bernoulli"):
        elbo_audit.audit((enc, dec), x * 0.5, resamples=0)
