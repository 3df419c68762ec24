"""`show` prints a report's gates; the /gates group keeps its own model and prior values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main


@pytest.fixture()
def report(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "enc.npz", mean=rng.normal(size=(30, 2)), std=np.full((30, 2), 0.5))
    out = tmp_path / "r.nc"
    code = main(["run", "--posteriors", str(tmp_path / "enc.npz"), "--out", str(out), "--quiet",
                 "--bootstrap", "0", "--prior", "agg=aggregate_posterior",
                 "--gate", "enc@agg:avg_kl > 0", "--gate", "enc:marginal_kl < 0"])
    assert code == 1  # marginal_kl under N(0, I) is positive: the second gate fails
    return out


def test_gates_group_has_the_gates_own_model_and_prior(report: Path) -> None:
    tree = xr.open_datatree(report)
    gates = tree["gates"]
    assert gates["gate_model"].values.tolist() == ["enc", "enc"]
    assert gates["gate_prior"].values.tolist() == ["agg", "native"]
    root = tree.to_dataset()
    # each gate's observed value is the root's value of its term at its model and prior
    assert float(gates["observed"][0]) == float(root["avg_kl"].sel(model="enc", prior="agg"))
    assert float(gates["observed"][1]) == float(root["marginal_kl"].sel(model="enc", prior="native"))
    assert gates["passed"].values.tolist() == [1, 0]


def test_show_prints_every_gate_with_its_status(report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(report)]) == 0
    out = capsys.readouterr().out
    assert "PASS enc@agg: enc@agg:avg_kl > 0" in out
    assert "FAIL enc@native: enc:marginal_kl < 0" in out
    assert main(["show", str(report), "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "| `enc:marginal_kl < 0` | enc@native |" in md and md.count("| FAIL |") == 1
    assert main(["show", str(report), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(g["prior"], g["passed"]) for g in doc["gates"]] == [("agg", True), ("native", False)]


def test_show_without_gates_prints_no_gate_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "e.npz", mean=rng.normal(size=(20, 2)), std=np.full((20, 2), 0.5))
    assert main(["run", "--posteriors", str(tmp_path / "e.npz"), "--out", str(tmp_path / "r.nc"),
                 "--quiet", "--bootstrap", "0"]) == 0
    capsys.readouterr()
    assert main(["show", str(tmp_path / "r.nc"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["gates"] == []


def test_check_re_evaluates_the_stored_gates(report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(report)]) == 1  # the stored marginal_kl < 0 gate fails again
    out = capsys.readouterr().out
    assert "valid elbo-audit report" in out
    assert "PASS enc@agg: avg_kl" in out and "FAIL enc@native: marginal_kl" in out
    # gates named on the command line replace the stored ones
    assert main(["check", str(report), "--gate", "enc:avg_kl > 0"]) == 0
    out = capsys.readouterr().out
    assert "PASS enc@native: avg_kl" in out and "FAIL" not in out
    # a gate on a prior the report does not hold is a usage error
    assert main(["check", str(report), "--gate", "enc@mog:avg_kl > 0"]) == 2


@pytest.mark.parametrize("command", ["show", "compare"])
@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda ds: ds.drop_vars(["avg_kl"]), "variable 'avg_kl' missing"),
        (lambda ds: ds.drop_dims(["prior"]), "dimension 'prior' missing"),
    ],
)
def test_show_and_compare_of_a_malformed_report_name_what_is_missing(
    report: Path, tmp_path: Path, command: str, damage: object, named: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with xr.open_dataset(report) as ds:
        bad = damage(ds.load())  # type: ignore[operator]
    path = tmp_path / "bad.nc"
    bad.to_netcdf(path)
    capsys.readouterr()
    args = [command, str(path)] + ([str(report)] if command == "compare" else [])
    assert main(args) == 2
    captured = capsys.readouterr()
    assert named in captured.err and len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""
