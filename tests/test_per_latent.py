"""Per-latent terms (issue 12, item 1): latent_kl, posterior_mean_variance and active units.

Truths: the per-latent KL by numerical quadrature of q log(q/p); its sum over latents against the
closed-form avg_kl written here; dimensions forced to the prior give zero KL and are inactive;
a CLI report holds the variables with the schema's dims.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import integrate

from elbo_audit._cli.main import main
from elbo_audit._estimation.per_latent import latent_kl, latent_terms
from elbo_audit._model.families import DiagonalGaussian
from elbo_audit._model.priors import DiagonalGaussianPrior, MixtureOfGaussians, StandardNormal


def _posteriors(n: int = 300, d: int = 4, seed: int = 3) -> DiagonalGaussian:
    rng = np.random.default_rng(seed)
    return DiagonalGaussian(rng.normal(size=(n, d)), np.exp(rng.normal(-0.7, 0.3, size=(n, d))))


def _kl_by_quadrature(mu: float, s: float, m: float, t: float) -> float:
    def integrand(z: float) -> float:
        log_q = -0.5 * ((z - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
        log_p = -0.5 * ((z - m) / t) ** 2 - math.log(t) - 0.5 * math.log(2 * math.pi)
        return math.exp(log_q) * (log_q - log_p)

    value, _ = integrate.quad(integrand, mu - 12 * s, mu + 12 * s, epsabs=1e-13, epsrel=1e-12)
    return value


def test_latent_kl_equals_quadrature_for_a_shifted_scaled_prior() -> None:
    q = _posteriors(n=5, d=3)
    prior = DiagonalGaussianPrior(np.array([0.5, -1.0, 0.0]), np.array([2.0, 0.7, 1.0]))
    kl = latent_kl(q, prior)
    assert kl is not None and kl.shape == (5, 3)
    for n in range(5):
        for j in range(3):
            truth = _kl_by_quadrature(q.mean[n, j], q.std[n, j], prior.mean[j], prior.std[j])
            assert kl[n, j] == pytest.approx(truth, rel=1e-9, abs=1e-12)


def test_mixture_prior_has_no_per_latent_closed_form() -> None:
    q = _posteriors(n=10, d=2)
    mix = MixtureOfGaussians(np.full(2, 0.5), np.zeros((2, 2)), np.ones((2, 2)))
    assert latent_kl(q, mix) is None


def test_per_latent_kl_sums_to_the_closed_form_avg_kl() -> None:
    q = _posteriors()
    terms = latent_terms(q, {"native": StandardNormal(4)}, np.random.default_rng(0), n_resamples=0)
    mu, s = q.mean, q.std
    avg_kl = np.mean(np.sum(0.5 * (s**2 + mu**2 - 1.0) - np.log(s), axis=1))
    assert terms.latent_kl["native"].sum() == pytest.approx(avg_kl, rel=1e-12)


def test_dimensions_forced_to_the_prior_are_inactive_with_zero_kl() -> None:
    rng = np.random.default_rng(5)
    n = 500
    mean = np.column_stack([rng.normal(size=n), np.zeros(n), rng.normal(0, 0.05, size=n), np.zeros(n)])
    std = np.column_stack([np.full(n, 0.3), np.ones(n), np.full(n, 0.99), np.ones(n)])
    q = DiagonalGaussian(mean, std)
    terms = latent_terms(q, {"native": StandardNormal(4)}, rng, n_resamples=200)
    kl = terms.latent_kl["native"]
    assert kl[1] == 0.0 and kl[3] == 0.0
    assert kl[0] > 0.5
    # variance of the means: 1, 0, 0.0025, 0 in truth; the threshold 0.01 splits them
    assert terms.active.tolist() == [True, False, False, False]
    np.testing.assert_allclose(terms.posterior_mean_variance, np.var(mean, axis=0), rtol=1e-12)
    lo, hi = terms.posterior_mean_variance_ci[0]
    assert lo < 1.0 < hi


def test_posterior_mean_variance_interval_covers_the_truth_mostly() -> None:
    # the data: means drawn with variance 0.25 in every latent; 95% intervals should cover it
    rng = np.random.default_rng(9)
    covered = 0
    for _ in range(40):
        q = DiagonalGaussian(rng.normal(0, 0.5, size=(400, 1)), np.ones((400, 1)))
        terms = latent_terms(q, {}, rng, n_resamples=300)
        lo, hi = terms.posterior_mean_variance_ci[0]
        covered += int(lo <= 0.25 <= hi)
    assert covered >= 32  # binomial(40, 0.95): P(covered < 32) < 1e-3


def test_report_holds_the_per_latent_variables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(11)
    n = 400
    mean = np.column_stack([rng.normal(size=n), np.zeros(n), rng.normal(size=n)])
    log_std = np.column_stack([np.full(n, -1.0), np.zeros(n), np.full(n, -0.5)])
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=mean, log_std=log_std)
    out = tmp_path / "r.nc"
    code = main(["run", "--posteriors", str(enc), "--out", str(out), "--bootstrap", "100", "--quiet"])
    capsys.readouterr()
    assert code == 0
    with xr.open_dataset(out) as ds:
        assert ds["latent_kl"].dims == ("model", "prior", "latent")
        assert ds["latent_kl"].attrs["units"] == "nat"
        assert ds["latent_kl_ci"].dims == ("model", "prior", "latent", "ci_bound")
        assert ds["active"].values[0].tolist() == [1, 0, 1]
        assert int(ds["n_active"][0]) == 2
        assert float(ds["latent_kl"].sum("latent")[0, 0]) == pytest.approx(float(ds["avg_kl"][0, 0]), rel=1e-12)
        s = np.exp(log_std)
        truth = np.mean(0.5 * (s**2 + mean**2 - 1.0) - log_std, axis=0)
        np.testing.assert_allclose(ds["latent_kl"].values[0, 0], truth, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ds["posterior_mean_variance"].values[0], np.var(mean, axis=0), rtol=1e-12)
        lo, hi = ds["latent_kl_ci"].values[0, 0, 0]
        assert lo < truth[0] < hi


def test_latent_marginal_kl_sums_to_dimwise_kl_and_matches_the_closed_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # every posterior the same N(m, s^2): q(z_j) = N(m_j, s_j^2), so KL(q(z_j) || N(0, 1)) is closed form
    n = 600
    m, s = np.array([0.8, 0.0, -1.5]), np.array([0.5, 1.0, 2.0])
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=np.tile(m, (n, 1)), log_std=np.tile(np.log(s), (n, 1)))
    out = tmp_path / "r.nc"
    code = main(["run", "--posteriors", str(enc), "--out", str(out), "--bootstrap", "0", "--quiet"])
    capsys.readouterr()
    assert code == 0
    truth = 0.5 * (s**2 + m**2 - 1.0) - np.log(s)
    with xr.open_dataset(out) as ds:
        value = ds["latent_marginal_kl"].values[0, 0]
        se = ds["latent_marginal_kl_se"].values[0, 0]
        assert ds["latent_marginal_kl"].dims == ("model", "prior", "latent")
        assert value.sum() == pytest.approx(float(ds["dimwise_kl"][0, 0]), rel=1e-12, abs=1e-12)
        # q(z_1) is the prior itself: zero up to the rounding of the gemm form of the kernels (~1e-8)
        assert value[1] == pytest.approx(0.0, abs=1e-7)
        assert np.all(se[[0, 2]] > 0)
        assert np.all(np.abs(value - truth)[[0, 2]] <= 4 * se[[0, 2]])


def test_show_prints_the_per_latent_table_sorted_by_kl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    n = 300
    # latent 1 carries the most KL, latent 0 none
    mean = np.column_stack([np.zeros(n), 2.0 * rng.normal(size=n), rng.normal(size=n)])
    log_std = np.column_stack([np.zeros(n), np.full(n, -2.0), np.full(n, -0.5)])
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=mean, log_std=log_std)
    out = tmp_path / "r.nc"
    assert main(["run", "--posteriors", str(enc), "--out", str(out), "--bootstrap", "50", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    table = text[text.index("Per-latent terms of enc"):].splitlines()
    order = [line.split()[0] for line in table[3:6]]
    assert order == ["1", "2", "0"]
    assert "2 of 3 latents active" in text
    assert main(["show", str(out), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["latent"] for r in doc["latents"]] == [1, 2, 0]
    assert [r["active"] for r in doc["latents"]] == [True, True, False]
