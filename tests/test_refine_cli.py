"""--refine-steps through the CLI: refusals before any work, and the report's terms and attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main


def _encodings(d: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(d / "enc.npz", mean=rng.normal(size=(30, 2)), log_std=np.full((30, 2), -1.0))
    return d / "enc.npz"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--refine-steps", "5"], "needs a model with a decoder"),
        (["--refine-steps", "-1"], "refine-steps"),
        (["--refine-lr", "0"], "refine-lr"),
        (["--refine-lr", "nan"], "refine-lr"),
        (["--refine-samples", "0"], "refine-samples"),
    ],
)
def test_bad_refinement_options_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    enc = _encodings(tmp_path)
    code = main(["run", "--posteriors", str(enc), "--quiet", "--out", str(tmp_path / "r.nc"), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], err
    assert not (tmp_path / "r.nc").exists()


def test_config_keys_and_report_attributes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("elbo_audit_sklearn")
    (tmp_path / "audit.toml").write_text(
        '[data]\nname = "digits"\nlimit = 120\n\n'
        '[models.fa]\nfactory = "elbo_audit_sklearn.examples:digits_factor_analysis"\n\n'
        "[estimation]\niw_samples = 4\nrefine_steps = 7\nrefine_lr = 0.02\nrefine_samples = 2\n\n"
        '[bootstrap]\nresamples = 50\n[report]\nout = "r.nc"\n'
    )
    assert main(["run", str(tmp_path / "audit.toml"), "--quiet"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    ds = xr.open_dataset(tmp_path / "r.nc")
    assert (ds.attrs["refine_steps"], ds.attrs["refine_samples"]) == (7, 2)
    assert ds.attrs["refine_lr"] == pytest.approx(0.02)
    assert ds.attrs["iw_proposal"] == "amortized+refined"
    for term in ("refined_elbo", "amortization_gap", "approximation_gap"):
        assert ds[term].dims == ("model", "prior") and ds[term].attrs["units"] == "nat"
        lo, hi = ds[f"{term}_ci"].values[0, 0]
        assert lo <= float(ds[term][0, 0]) <= hi
    # the parts of the inference gap add up, as point estimates
    total = float(ds["amortization_gap"][0, 0] + ds["approximation_gap"][0, 0])
    assert total == pytest.approx(float(ds["inference_gap"][0, 0]), abs=1e-9)
    assert "amortization gap" in out
    assert main(["check", str(tmp_path / "r.nc")]) == 0


def test_check_validates_the_refined_terms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("elbo_audit_sklearn")
    out = tmp_path / "r.nc"
    assert main(["run", "--model", "elbo_audit_sklearn.examples:digits_factor_analysis", "--data", "digits",
                 "--limit", "60", "--refine-steps", "3", "--bootstrap", "20", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", str(out)]) == 0
    capsys.readouterr()
    ds = xr.load_dataset(out)
    cases = {
        "no_se.nc": (ds.drop_vars("amortization_gap_se"), "variable 'amortization_gap_se' missing"),
        "no_term.nc": (ds.drop_vars(["refined_elbo", "refined_elbo_se", "refined_elbo_ci"]),
                       "variable 'refined_elbo' missing (root attribute refine_steps = 3)"),
        "bad_dims.nc": (ds.assign(approximation_gap=ds["approximation_gap"].isel(prior=0)),
                        "variable 'approximation_gap' has dims ('model',)"),
    }
    for name, (bad, words) in cases.items():
        bad.to_netcdf(tmp_path / name)
        assert main(["check", str(tmp_path / name)]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert words in line, line
