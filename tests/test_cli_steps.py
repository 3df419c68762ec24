"""``show``, ``check`` and ``compare`` on a report over ``step`` (written by ``elbo_audit.Monitor``).

The truth is a separate audit of the model as it was at the last step (and at
the first), written by ``elbo_audit.audit(...).save``: ``show`` of the
Monitor report prints that report's table (plus the step it is from and the
trend line), the trend's numbers are the two separate audits', and
``compare`` pairs the latest step with the separate audit at zero difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import elbo_audit
from elbo_audit._cli.main import main
from elbo_audit._report.html import comparison_table, summary_table

OPTIONS: dict[str, Any] = {"seed": 1, "resamples": 30, "marginal_samples": 128,
                           "priors": ["mog=fitted_mixture,components=2"], "gates": ["marginal_kl < 5"]}
STEPS = (0, 3, 6)


def _pair(step: int) -> tuple[Any, Any]:
    """A linear encoder that changes with the step (a stand-in for training)."""
    a = np.linspace(-1.0, 1.0, 12).reshape(6, 2) * (1.0 + 0.2 * step)

    def encode(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return batch @ a, np.full((batch.shape[0], 2), -0.5 - 0.2 * step)

    def decode(z: np.ndarray) -> np.ndarray:
        return np.tanh(z @ a.T)

    return encode, decode


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("steps")
    x = (np.random.default_rng(0).random((60, 6)) > 0.5).astype(np.float64)
    monitor = elbo_audit.Monitor(x, folder / "monitor.nc", every=3, log=lambda line: None, **OPTIONS)
    for step in range(7):
        monitor(_pair(step), step)
    assert monitor.steps == list(STEPS)
    first = elbo_audit.audit(_pair(STEPS[0]), x, **OPTIONS).save(folder / "first.nc")
    last = elbo_audit.audit(_pair(STEPS[-1]), x, **OPTIONS).save(folder / "last.nc")
    return {"monitor": folder / "monitor.nc", "first": first, "last": last}


def _out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_prints_the_latest_steps_table_and_the_trend(
    reports: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, shown, _ = _out(capsys, ["show", str(reports["monitor"])])
    assert code == 0
    code, alone, _ = _out(capsys, ["show", str(reports["last"])])
    assert code == 0
    lines = shown.splitlines()
    assert lines[:2] == [f"step {STEPS[-1]} (the latest audit of a report over step)", ""]
    trend = [line for line in lines if line.startswith("trend over ")]
    assert len(trend) == 1  # one model
    assert [line for line in lines[2:] if line not in trend] == alone.splitlines()

    values = {}
    for key in ("first", "last"):
        with xr.open_dataset(reports[key]) as ds:
            values[key] = {t: float(ds[t].sel(model="model", prior="native")) for t in ("index_code_mi", "marginal_kl")}
    want = (f"trend over 3 audits (step 0 -> 6), model@native: "
            f"index_code_mi {values['first']['index_code_mi']:.4g} -> {values['last']['index_code_mi']:.4g}, "
            f"marginal_kl {values['first']['marginal_kl']:.4g} -> {values['last']['marginal_kl']:.4g} (nat)")
    assert trend[0] == want

    code, text, _ = _out(capsys, ["show", str(reports["monitor"]), "--format", "json"])
    doc = json.loads(text)
    assert doc["step"] == STEPS[-1]
    (rec,) = doc["trend"]
    for t in ("index_code_mi", "marginal_kl"):
        assert rec[t] == {"first": values["first"][t], "last": values["last"][t]}
    _, alone_json, _ = _out(capsys, ["show", str(reports["last"]), "--format", "json"])
    assert doc["results"] == json.loads(alone_json)["results"]


def test_show_html_of_a_report_over_step_is_the_latest_steps_page(
    reports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(reports["monitor"]), "--quiet", "--html", str(tmp_path / "m.html")]) == 0
    assert main(["show", str(reports["last"]), "--quiet", "--html", str(tmp_path / "l.html")]) == 0
    capsys.readouterr()
    page = (tmp_path / "m.html").read_text(encoding="utf-8")
    with xr.open_dataset(reports["last"]) as ds:
        table = summary_table(ds)  # the separate audit's summary table, verbatim
        comparison = comparison_table(ds, "marginal_kl", "marginal KL")
    assert table in page and comparison in page
    assert table in (tmp_path / "l.html").read_text(encoding="utf-8")


def test_check_validates_the_step_dimension(
    reports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _out(capsys, ["check", str(reports["monitor"])])
    assert code == 0, err
    assert out.splitlines() == [f"{reports['monitor']}: valid elbo-audit report over step (3 audits, steps 0 to 6)",
                                "PASS model@native: marginal_kl = " + out.split("marginal_kl = ")[1].split()[0]
                                + " (gate: marginal_kl < 5)"]
    # a baseline over step is its latest step: the separate audit of the same model differs by 0
    code, out, _ = _out(capsys, ["check", str(reports["last"]), "--gate", "marginal_kl.delta == 0",
                                 "--baseline", str(reports["monitor"])])
    assert code == 0 and "PASS model@native: marginal_kl.delta = 0 " in out
    with xr.open_datatree(reports["monitor"]) as tree:
        tree = tree.load()
    bad = tmp_path / "unordered.nc"
    tree.to_dataset().assign_coords(step=[0, 6, 3]).to_netcdf(bad)  # the root group alone
    code, _, err = _out(capsys, ["check", str(bad)])
    assert code == 2
    (line,) = err.splitlines()  # one line: the first problem, and how many more
    assert f"{bad}: not a valid elbo-audit report: coordinate step must increase strictly, is [0, 6, 3]" in line

    half = tmp_path / "half.nc"
    root = tree.to_dataset()
    root["elbo"] = root["elbo"].isel(step=-1, drop=True)
    mixed = xr.DataTree.from_dict({"/": root, **{f"/{k}": v.to_dataset() for k, v in tree.children.items()}})
    mixed.to_netcdf(half)
    code, _, err = _out(capsys, ["check", str(half)])
    assert code == 2
    (line,) = err.splitlines()
    assert (f"{half}: not a valid elbo-audit report: variable 'elbo' has dims ('model', 'prior'), "
            "expected ('step', 'model', 'prior')") in line
    code, _, err = _out(capsys, ["show", str(half)])
    assert code == 2 and len(err.strip().splitlines()) == 1  # show refuses it too, in one line


def test_compare_compares_the_latest_step(reports: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _out(capsys, ["compare", str(reports["monitor"]), str(reports["last"]), "--format", "json"])
    assert code == 0
    assert err.splitlines() == [(f"elbo-audit compare: {reports['monitor']} is a report over step; "
                                 "comparing its latest step")]
    doc = json.loads(out)
    assert [r["report"] for r in doc["rows"]] == [str(reports["monitor"])] * 2 + [str(reports["last"])] * 2
    same = doc["rows"][2]  # last.nc's model@native against the latest step's model@native
    assert same["paired"] and same["label"] == "last.nc:model@native"
    for t in doc["terms"]:
        assert same[t]["diff"] == 0.0, t
        assert same[t]["diff_ci"] == [0.0, 0.0], t
    mog, same_mog = doc["rows"][1], doc["rows"][3]  # and the alternative prior, row for row
    for t in doc["terms"]:
        assert mog[t]["value"] == same_mog[t]["value"] and mog[t]["diff"] == same_mog[t]["diff"], t
