"""`elbo-audit run --posteriors`: the framework-free path, as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main

TERMS = (
    "elbo", "reconstruction", "avg_kl", "index_code_mi", "marginal_kl",
    "total_correlation", "dimwise_kl", "decomposition_residual",
)


def _write_enc(path: Path, n: int = 400, d: int = 3, seed: int = 11, **extra: np.ndarray) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {"mean": rng.normal(size=(n, d)), "log_std": rng.normal(-1.0, 0.2, size=(n, d))}
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_has_design_names_and_closed_form_kl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = _write_enc(tmp_path / "enc.npz")
    out = tmp_path / "report.nc"
    code, stdout, _ = _run(["run", "--posteriors", str(enc), "--out", str(out), "--bootstrap", "200", "--quiet"], capsys)
    assert code == 0
    assert "index-code MI" in stdout
    ds = xr.open_dataset(out)
    for term in TERMS:
        assert ds[term].attrs["units"] == "nat"
        assert ds[f"{term}_se"].dims == ("model", "prior")
        assert ds[f"{term}_ci"].dims == ("model", "prior", "ci_bound")
    assert ds.attrs["Conventions"] == "elbo-audit-1.0"
    # avg_kl against the closed form written here from the file's arrays
    with np.load(enc) as f:
        mu, s = f["mean"], np.exp(f["log_std"])
    kl = np.mean(np.sum(0.5 * (s**2 + mu**2 - 1.0) - np.log(s), axis=1))
    assert float(ds["avg_kl"].sel(prior="native")[0]) == pytest.approx(kl, rel=1e-12)
    assert float(ds["log_n"][0]) == pytest.approx(math.log(400))
    assert float(ds["index_code_mi"][0, 0]) <= math.log(400)
    # no decoder, no reconstruction samples: the reconstruction side is marked not evaluated
    assert np.isnan(float(ds["elbo"][0, 0]))
    assert "not evaluated" in ds["reconstruction"].attrs["estimator"]
    tree = xr.open_datatree(out)
    assert tree["replicates"]["marginal_kl"].dims == ("model", "prior", "replicate")


def test_reconstruction_samples_give_the_elbo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    rec = rng.normal(-50.0, 2.0, size=(400, 4))
    enc = _write_enc(tmp_path / "enc.npz", reconstruction=rec)
    out = tmp_path / "r.nc"
    code, stdout, _ = _run(["run", "--posteriors", str(enc), "--out", str(out), "--format", "json", "--quiet"], capsys)
    assert code == 0
    doc = json.loads(stdout)
    row = doc["results"][0]
    assert row["reconstruction"]["value"] == pytest.approx(rec.mean(), rel=1e-12)
    # within-point Monte Carlo error of a stratified mean: sqrt(sum_n s_n^2 / K) / N
    se = math.sqrt(rec.var(axis=1, ddof=1).sum() / 4) / 400
    assert row["reconstruction"]["se"] == pytest.approx(se, rel=1e-10)
    assert row["elbo"]["value"] == pytest.approx(row["reconstruction"]["value"] - row["avg_kl"]["value"])


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"mean": np.zeros((5, 2))}, "need exactly one of 'log_std' or 'std'"),
        ({"mu": np.zeros((5, 2)), "std": np.ones((5, 2))}, "missing array 'mean'"),
        ({"mean": np.zeros((5, 2)), "std": np.ones((5, 3))}, "has shape (5, 3)"),
        ({"mean": np.zeros((1, 2)), "std": np.ones((1, 2))}, "N >= 2"),
        ({"mean": np.zeros((5, 0)), "std": np.ones((5, 0))}, "latent dimension D is 0"),
        ({"mean": np.zeros((5, 2)), "std": np.array([[1, 1], [1, 0], [1, 1], [-1, 1], [1, 1.0]])}, "data points 1, 3"),
        ({"mean": np.array([[0, 0], [0, 0], [np.nan, 0], [0, 0], [0, np.inf]]), "std": np.ones((5, 2))}, "data points 2, 4"),
        ({"mean": np.zeros((5, 2)), "std": np.ones((5, 2)), "reconstruction": np.ones((4,))}, "'reconstruction' must have shape"),
    ],
)
def test_bad_encodings_fail_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arrays: dict[str, np.ndarray], needle: str
) -> None:
    enc = tmp_path / "bad.npz"
    np.savez(enc, **arrays)
    out = tmp_path / "r.nc"
    code, stdout, err = _run(["run", "--posteriors", str(enc), "--out", str(out)], capsys)
    assert code == 2
    assert needle in err
    assert str(enc) in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and stdout == ""


def test_missing_and_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["run", "--posteriors", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "r.nc")], capsys)
    assert code == 2 and "does not exist" in err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    code, _, err = _run(["run", "--posteriors", str(junk), "--out", str(tmp_path / "r.nc")], capsys)
    assert code == 2 and "junk.npz" in err
    assert not (tmp_path / "r.nc").exists()


def test_pickled_arrays_are_refused_with_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = tmp_path / "obj.npz"
    np.savez(enc, mean=np.array([[0.0], [1.0]], dtype=object), std=np.ones((2, 1)))
    code, _, err = _run(["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc")], capsys)
    assert code == 4 and "pickled" in err


def test_no_partial_report_when_the_folder_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = _write_enc(tmp_path / "enc.npz", n=50)
    code, _, err = _run(["run", "--posteriors", str(enc), "--out", str(tmp_path / "no" / "r.nc")], capsys)
    assert code == 2 and "does not exist" in err
    assert not list(tmp_path.glob("**/*.nc")) and not list(tmp_path.glob("**/*.tmp"))


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["run", "--out", str(tmp_path / "r.nc")], capsys)[0] == 2
    assert _run(["run", "--posteriors", "x.npz", "--samples-per-point", "0"], capsys)[0] == 2
    assert _run(["frobnicate"], capsys)[0] == 2
    code, _, err = _run(["run", "--posteriors", "x.npz", "--gate", "elbo >> 3"], capsys)
    assert code == 2 and "elbo >> 3" in err


def test_gates_decide_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = _write_enc(tmp_path / "enc.npz", n=200)
    out = tmp_path / "r.nc"
    base = ["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--bootstrap", "100"]
    code, stdout, _ = _run(base + ["--gate", "marginal_kl < 1000", "--gate", "index_code_mi.upper <= 100"], capsys)
    assert code == 0 and stdout.count("PASS") == 2
    code, stdout, err = _run(base + ["--gate", "avg_kl < 0"], capsys)
    assert code == 1 and "FAIL" in stdout and "gate" in err
    tree = xr.open_datatree(out)
    assert int(tree["gates"]["passed"].values[0]) == 0  # the report is written, and says why
    code, _, _ = _run(base + ["--gate", "avg_kl < 0", "--exit-zero"], capsys)
    assert code == 0


def test_check_and_show_read_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = _write_enc(tmp_path / "enc.npz", n=100)
    out = tmp_path / "r.nc"
    assert _run(["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--bootstrap", "50"], capsys)[0] == 0
    code, stdout, _ = _run(["check", str(out)], capsys)
    assert code == 0 and "valid" in stdout
    code, stdout, _ = _run(["show", str(out), "--format", "json"], capsys)
    assert code == 0 and json.loads(stdout)["results"][0]["model"] == "enc"
    bogus = tmp_path / "bogus.nc"
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(bogus)
    code, _, err = _run(["check", str(bogus)], capsys)
    assert code == 2 and "not an elbo-audit report" in err


def test_the_installed_command_runs_as_a_subprocess(tmp_path: Path) -> None:
    enc = _write_enc(tmp_path / "enc.npz", n=100)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "elbo_audit", "run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"),
         "--format", "json", "--quiet", "--bootstrap", "50", "--gate", "avg_kl < 0"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["gates"][0]["passed"] is False
    assert proc.stderr.strip().startswith("elbo-audit: error:")


def test_encodings_at_the_value_bounds_give_finite_terms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # docs/posteriors.md: |mean| <= 1e20, |log_std| <= 40, |reconstruction| <= 1e20 are accepted,
    # and every evaluated term is then finite; avg_kl is still the closed form
    rng = np.random.default_rng(3)
    n, d = 60, 3
    mean = rng.choice([-1e20, 0.0, 1e20], size=(n, d))
    log_std = rng.choice([-40.0, 0.0, 40.0], size=(n, d))
    recon = rng.choice([-1e20, -1.0], size=(n, 2))
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=mean, log_std=log_std, reconstruction=recon)
    out = tmp_path / "r.nc"
    code, _, err = _run(["run", "--posteriors", str(enc), "--out", str(out), "--bootstrap", "30", "--quiet"], capsys)
    assert code == 0, err
    ds = xr.load_dataset(out)
    for term in TERMS:
        values = ds[term].sel(prior="native").values
        assert np.isfinite(values).all(), term
        assert np.isfinite(ds[f"{term}_ci"].sel(prior="native").values).all(), term
    s = np.exp(log_std)
    kl = np.mean(np.sum(0.5 * (s**2 + mean**2 - 1.0) - log_std, axis=1))
    assert float(ds["avg_kl"].sel(prior="native")[0]) == pytest.approx(kl, rel=1e-12)
    assert float(ds["reconstruction"].sel(prior="native")[0]) == pytest.approx(recon.mean(), rel=1e-12)
