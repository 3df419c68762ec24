"""The text and markdown tables of run, show and compare carry the uncertainty, and say only what is true."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main


def _report(tmp_path: Path, name: str, bootstrap: int, seed: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    enc = tmp_path / f"{name}.npz"
    np.savez(enc, mean=rng.normal(size=(150, 2)), std=np.exp(rng.normal(-1.0, 0.2, size=(150, 2))),
             reconstruction=rng.normal(-20.0, 1.0, size=(150, 2)))
    out = tmp_path / f"{name}.nc"
    assert main(["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--bootstrap", str(bootstrap),
                 "--prior", "aggregate_posterior", "--prior", "fitted_mixture"]) == 0
    return out


def _load(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def _show(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    assert main(["show", str(path), *extra]) == 0
    return capsys.readouterr().out


def test_show_prints_every_interval_of_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _report(tmp_path, "a", bootstrap=60)
    ds = _load(path)
    text, md = _show(path, capsys), _show(path, capsys, "--format", "markdown")
    for prior in ds["prior"].values:
        for term in ("elbo", "reconstruction", "avg_kl", "index_code_mi", "marginal_kl"):
            sel = ds.sel(model="a", prior=prior)
            lo, hi = (float(v) for v in sel[f"{term}_ci"].values)
            cell = f"{float(sel[term]):.2f} ± {float(sel[f'{term}_se']):.2f}"
            assert f"[{lo:.2f}, {hi:.2f}]" in text and cell in text
            assert f"{cell} [{lo:.2f}, {hi:.2f}]" in md
    assert "95% BCa bootstrap interval over data points (60 resamples)" in " ".join(text.split())


def test_footer_claims_no_interval_that_was_not_computed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _report(tmp_path, "a", bootstrap=0)
    for fmt in ("text", "markdown"):
        out = " ".join(_show(path, capsys, "--format", fmt).split())
        assert "no bootstrap intervals were computed (bootstrap resamples = 0)" in out
        assert "bootstrap interval over" not in out and "[" not in out.split("term", 1)[1].split("nats")[0]


def test_tc_is_labelled_a_property_of_q_and_the_identity_only_for_factorised_priors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _report(tmp_path, "a", bootstrap=20)
    ds = _load(path)
    # total correlation is a property of q(z): one value under every prior
    assert np.unique(ds["total_correlation"].sel(model="a").values).size == 1
    out = " ".join(_show(path, capsys).split())
    assert "TC (total correlation) is a property of q(z) alone: the same under every prior" in out
    factorised = [str(p) for p in ds["prior"].values if np.isfinite(float(ds["dimwise_kl"].sel(model="a", prior=p)))]
    assert factorised == ["native"]
    assert "marginal KL = TC + dimwise KL (up to Monte Carlo error) under the factorised priors: native;" in out


def test_compare_includes_reconstruction_and_fits_in_100_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = [str(_report(tmp_path, name, bootstrap=20, seed=i)) for i, name in enumerate(("a", "b", "c"))]
    capsys.readouterr()
    assert main(["compare", *reports]) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 100
    labels = [line.split()[0] for line in text.splitlines() if line[:1].strip()]
    assert {"ELBO", "recon", "avg", "index-code", "marginal", "TC", "dimwise"} <= set(labels)
    # nine columns (three reports, three priors) all appear, each with its report above it
    for name in ("a", "b", "c"):
        assert text.count(f"{name}.nc") >= 3
    assert text.count("(reference)") == 7  # one per term of the reference column
