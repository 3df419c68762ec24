"""``elbo_audit.audit``: a model object in memory, audited in one call, as the CLI audits it.

The truth of the first test is the command line: the module's state_dict is
saved as safetensors, ``elbo-audit run`` audits the factory with those
weights and the same seed, and every number of the two reports must be
equal, not merely close (one code path). The FA test's truth is sklearn's
own ``score`` (an exact posterior makes the ELBO the log-likelihood).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import elbo_audit
from elbo_audit import testing
from elbo_audit._cli.main import main
from elbo_audit._model.terms import TERMS

torch = pytest.importorskip("torch")
reference = pytest.importorskip("elbo_audit_torch.reference")

FACTORY = "elbo_audit_torch.reference:mlp_vae"
OPTIONS = {"x_dim": 6, "hidden": 8, "latent": 2}
SETTINGS = {"seed": 3, "resamples": 40, "marginal_samples": 256}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return (np.random.default_rng(1).random((50, 6)) > 0.5).astype(np.float64)


@pytest.fixture(scope="module")
def module() -> object:
    torch.manual_seed(7)
    m = reference.mlp_vae(**OPTIONS)
    with torch.no_grad():  # not the factory's initialisation: weights the CLI only gets from the file
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _assert_same_numbers(a: xr.Dataset, b: xr.Dataset) -> None:
    for t in TERMS:
        for v in (t, f"{t}_se", f"{t}_ci"):
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_module_in_memory_gives_the_cli_numbers_on_the_same_weights_and_seed(
    tmp_path: Path, x: np.ndarray, module: object
) -> None:
    weights = testing.write_safetensors(
        {k: v.detach().numpy() for k, v in module.state_dict().items()}, tmp_path / "w.safetensors"
    )
    np.save(tmp_path / "x.npy", x)
    cli = tmp_path / "cli.nc"
    argv = ["run", "--model", FACTORY, "--weights", str(weights), "--data", str(tmp_path / "x.npy"),
            "--out", str(cli), "--quiet", "--seed", "3", "--bootstrap", "40", "--marginal-samples", "256",
            "--prior", "mog=fitted_mixture,components=3"]
    for k, v in OPTIONS.items():
        argv += ["--model-option", f"{k}={v}"]
    assert main(argv) == 0

    result = elbo_audit.audit(module, x, priors=["mog=fitted_mixture,components=3"], name="mlp_vae", **SETTINGS)
    api = tmp_path / "api.nc"
    assert result.save(api) == api
    with xr.open_datatree(cli, engine="netcdf4") as c, xr.open_datatree(api, engine="netcdf4") as a:
        assert list(a["prior"].values) == ["native", "mog"]
        _assert_same_numbers(a.to_dataset(), c.to_dataset())
        np.testing.assert_array_equal(a["replicates"]["elbo"].values, c["replicates"]["elbo"].values)
        assert a.attrs["dataset_sha256"] == c.attrs["dataset_sha256"]  # the runs pair in compare
        assert a.attrs["seed"] == c.attrs["seed"] == 3
    _assert_same_numbers(result.to_xarray().to_dataset(), result.dataset)


def test_a_dataloader_and_an_iterable_of_batches_are_the_array(x: np.ndarray, module: object) -> None:
    base = elbo_audit.audit(module, x, resamples=0, seed=1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x), torch.zeros(len(x))), batch_size=16
    )
    batches = [torch.tensor(x[i : i + 7]) for i in range(0, len(x), 7)]
    for data in (loader, batches, torch.tensor(x)):
        other = elbo_audit.audit(module, data, resamples=0, seed=1)
        _assert_same_numbers(other.dataset, base.dataset)


def test_result_shows_itself(x: np.ndarray, module: object) -> None:
    result = elbo_audit.audit(module, x, resamples=20, gates=["marginal_kl < 100"])
    text = repr(result)
    assert "ELBO" in text and "PASS model@native" in text and result.passed()
    html = result._repr_html_()
    assert "<table" in html and "<script" not in html
    assert f"{result.value('elbo'):.2f}" in html


def test_bad_calls_are_refused_with_one_line(x: np.ndarray, module: object) -> None:
    with pytest.raises(elbo_audit.UsageError, match="unknown setting 'sead'"):
        elbo_audit.audit(module, x, sead=1)
    with pytest.raises(elbo_audit.UsageError, match="no adapter handles a builtins.dict"):
        elbo_audit.audit({"not": "a model"}, x)
    with pytest.raises(elbo_audit.DataError, match="NaN or infinite values at data points 2"):
        bad = x.copy()
        bad[2, 0] = np.nan
        elbo_audit.audit(module, bad)
    with pytest.raises(elbo_audit.UsageError, match="no prior 'mog'"):
        elbo_audit.audit(module, x, gates=["model@mog:marginal_kl < 1"])


def test_fitted_factor_analysis_in_memory_recovers_sklearn_score() -> None:
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 2)) @ rng.standard_normal((2, 5)) + 0.3 * rng.standard_normal((400, 5))
    est = decomposition.FactorAnalysis(n_components=2, random_state=0).fit(x)
    result = elbo_audit.audit(est, x, resamples=0, reconstruction_samples=8)
    elbo = result.value("elbo")
    se = float(result.dataset["elbo_se"].sel(model="model", prior="native"))
    assert abs(elbo - est.score(x)) < 4.0 * se


def test_the_callers_module_keeps_its_train_mode_and_dtype(x: np.ndarray) -> None:
    torch.manual_seed(0)
    m = reference.mlp_vae(**OPTIONS)
    m.train()
    m.decoder.eval()
    flags = {n: s.training for n, s in m.named_modules()}
    dtypes = {n: p.dtype for n, p in m.named_parameters()}
    result = elbo_audit.audit(m, x, **SETTINGS)
    assert np.isfinite(float(result.to_xarray()["elbo"].values.ravel()[0]))
    assert {n: s.training for n, s in m.named_modules()} == flags
    assert {n: p.dtype for n, p in m.named_parameters()} == dtypes
