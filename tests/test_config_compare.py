"""The TOML config, prior comparison, `compare`, and baseline gates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main


def _enc(path: Path, n: int = 300, d: int = 2, seed: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, mean=rng.normal(size=(n, d)), std=np.exp(rng.normal(-1.2, 0.2, size=(n, d))),
             reconstruction=rng.normal(-20.0, 1.0, size=(n, 2)))
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_config_runs_and_cli_overrides_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _enc(tmp_path / "enc.npz")
    cfg = tmp_path / "audit.toml"
    cfg.write_text(
        '[data]\nposteriors = "enc.npz"\n\n[estimation]\nseed = 4\n\n[bootstrap]\nresamples = 50\n'
        '\n[report]\nout = "from-config.nc"\ngates = ["avg_kl > 0"]\n\n[priors.q]\nfamily = "aggregate_posterior"\n'
    )
    code, out, _ = _run(["run", str(cfg), "--quiet", "--format", "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["report"].endswith("from-config.nc") and doc["gates"][0]["passed"]
    ds = xr.open_dataset(tmp_path / "from-config.nc")
    assert int(ds.attrs["seed"]) == 4 and list(ds["prior"].values) == ["native", "q"]
    # the command line wins over the config
    code, _, _ = _run(["run", str(cfg), "--quiet", "--seed", "9", "--out", str(tmp_path / "cli.nc")], capsys)
    assert code == 0 and int(xr.open_dataset(tmp_path / "cli.nc").attrs["seed"]) == 9


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[estimation]\nseed = 1\nsamples = 3\n", "line 3: unknown key 'estimation.samples'"),
        ("[estimation]\nseed = \"zero\"\n", "line 2: 'estimation.seed' must be a int"),
        ("[bootstrap]\nconfidence = true\n", "line 2: 'bootstrap.confidence' must be a number"),
        ("[dataa]\npath = \"x.npz\"\n", "line 1: unknown table or key 'dataa'"),
        ("[models.m]\nfactory = \"a:b\"\nweight = \"w.pt\"\n", "line 3: unknown key 'models.m.weight'"),
        ("[priors.native]\nfamily = \"standard_normal\"\n", "'native' is reserved"),
        ("[report\n", "not valid TOML"),
    ],
)
def test_bad_config_names_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, out, err = _run(["run", str(cfg)], capsys)
    assert code == 2, err
    assert needle in err and str(cfg) in err and out == ""


def test_aggregate_posterior_prior_buys_exactly_the_native_marginal_kl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enc = _enc(tmp_path / "enc.npz")
    out = tmp_path / "r.nc"
    code, _, _ = _run(["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--bootstrap", "0",
                       "--prior", "aggregate_posterior", "--prior", "sn=standard_normal"], capsys)
    assert code == 0
    ds = xr.open_dataset(out).isel(model=0)
    agg, native = ds.sel(prior="aggregate_posterior"), ds.sel(prior="native")
    # KL(q || q) is zero for every sample, so exactly zero; the optimal prior's avg KL is the MI
    assert float(agg["marginal_kl"]) == 0.0
    assert float(agg["avg_kl"]) == pytest.approx(float(native["index_code_mi"]), abs=1e-10)
    gain = float(agg["elbo"] - native["elbo"])
    assert gain == pytest.approx(float(native["marginal_kl"]), abs=4.5 * float(native["decomposition_residual_se"]))
    # an explicitly named standard normal is the native prior again, with the same draws
    assert float(ds.sel(prior="sn")["marginal_kl"]) == float(native["marginal_kl"])


def test_unknown_prior_family_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = _enc(tmp_path / "enc.npz")
    code, _, err = _run(["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"), "--prior", "nope"], capsys)
    assert code == 2 and "unknown family 'nope'" in err


def test_compare_pairs_replicates_of_runs_on_the_same_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = _enc(tmp_path / "enc.npz")
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    base = ["run", "--posteriors", str(enc), "--quiet", "--bootstrap", "200"]
    assert _run(base + ["--out", str(a), "--prior", "aggregate_posterior"], capsys)[0] == 0
    assert _run(base + ["--out", str(b)], capsys)[0] == 0
    code, out, _ = _run(["compare", str(a), str(b), "--format", "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    labels = [r["label"] for r in doc["rows"]]
    assert labels == ["a.nc:enc@native", "a.nc:enc@aggregate_posterior", "b.nc:enc@native"]
    # same data, same seed: the second run is the same computation, its difference is exactly 0
    same = doc["rows"][2]["elbo"]
    assert same["paired"] and same["diff"] == 0.0 and same["diff_ci"] == [0.0, 0.0]
    # the aggregate-posterior row: per data point the ELBO gain is kl_n - mi_n, which is the
    # native marginal KL plus the native residual, so their replicates must add up exactly
    tree = xr.open_datatree(a)
    mkl_reps = tree["replicates"]["marginal_kl"].sel(model="enc", prior="native").values
    gain_reps = (tree["replicates"]["elbo"].sel(model="enc", prior="aggregate_posterior")
                 - tree["replicates"]["elbo"].sel(model="enc", prior="native")).values
    np.testing.assert_allclose(gain_reps, mkl_reps + (tree["replicates"]["decomposition_residual"]
                                                      .sel(model="enc", prior="native").values), atol=1e-9)
    lo, hi = doc["rows"][1]["elbo"]["diff_ci"]
    assert lo < doc["rows"][1]["elbo"]["diff"] < hi


def test_baseline_delta_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = _enc(tmp_path / "enc.npz")
    old, new = tmp_path / "old.nc", tmp_path / "new.nc"
    base = ["run", "--posteriors", str(enc), "--quiet", "--bootstrap", "100"]
    assert _run(base + ["--out", str(old)], capsys)[0] == 0
    code, out, _ = _run(base + ["--out", str(new), "--baseline", str(old),
                                "--gate", "elbo.delta.lower > -0.5", "--gate", "elbo.delta == 0"], capsys)
    assert code == 0 and out.count("PASS") == 2
    code, _, err = _run(base + ["--out", str(new), "--gate", "elbo.delta > 0"], capsys)
    assert code == 2 and "--baseline" in err
    # a worse model: subtract one nat from every reconstruction sample
    with np.load(enc) as f:
        arrays = dict(f)
    arrays["reconstruction"] = arrays["reconstruction"] - 1.0
    worse = tmp_path / "worse.npz"
    np.savez(worse, **arrays)
    code, out, _ = _run(["run", "--posteriors", str(worse), "--quiet", "--bootstrap", "100", "--name", "enc",
                         "--out", str(new), "--baseline", str(old), "--gate", "elbo.delta.lower > -0.5"], capsys)
    assert code == 1 and "FAIL" in out
    assert math.isclose(float(xr.open_datatree(new)["gates"]["observed"].values[0]), -1.0, abs_tol=0.3)


def test_a_held_out_aggregate_posterior_as_prior(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "train": posteriors in three tight clusters; "test": fresh points from the same clusters
    rng = np.random.default_rng(2)
    centres = np.array([[-2.0, 0.0], [2.0, 1.5], [0.5, -2.0]])

    def encodings(path: Path, n: int) -> Path:
        c = centres[rng.integers(0, 3, n)]
        np.savez(path, mean=c + rng.normal(0, 0.2, (n, 2)), std=np.full((n, 2), 0.3))
        return path

    train, test = encodings(tmp_path / "train.npz", 400), encodings(tmp_path / "test.npz", 300)
    assert main(["run", "--posteriors", str(train), "--pointwise", "--bootstrap", "0", "--quiet",
                 "--out", str(tmp_path / "train.nc")]) == 0
    out = tmp_path / "test.nc"
    code = main(["run", "--posteriors", str(test), "--bootstrap", "0", "--quiet", "--out", str(out),
                 "--prior", f"held_out=report_aggregate_posterior,report={json.dumps(str(tmp_path / 'train.nc'))}",
                 "--prior", "in_sample=aggregate_posterior"])
    capsys.readouterr()
    assert code == 0
    ds = xr.open_dataset(out).isel(model=0)
    mkl = {p: float(ds["marginal_kl"].sel(prior=p)) for p in ("native", "held_out", "in_sample")}
    # the training set's q(z) is a far better prior for test points than N(0, I), but not as good
    # as the test set's own aggregate posterior, which is optimal (marginal KL exactly 0)
    assert mkl["in_sample"] == 0.0
    assert 0.0 < mkl["held_out"] < 0.5 * mkl["native"]
    assert str(ds["prior_family"].sel(prior="held_out").values) == "aggregate_posterior_of_train"
    code = main(["run", "--posteriors", str(test), "--quiet", "--out", str(tmp_path / "other.nc"),
                 "--prior", f"x=report_aggregate_posterior,report={json.dumps(str(out))}"])
    assert code == 2 and "--pointwise" in capsys.readouterr().err
