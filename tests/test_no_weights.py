"""A torch or JAX factory without --weights is refused unless --no-weights says it is meant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main

torch = pytest.importorskip("torch")

FACTORY = "elbo_audit_torch.reference:mlp_vae"


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, (np.random.default_rng(0).random((40, 6)) > 0.5).astype(np.float64))
    return path


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", FACTORY, "--model-option", "x_dim=6", "--model-option", "hidden=8",
            "--model-option", "latent=2", "--data", str(data), "--out", str(out), "--quiet",
            "--bootstrap", "0", *extra]


def test_factory_without_weights_is_refused_before_any_work(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.nc"
    assert main(_args(data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no --weights" in err and "--no-weights" in err
    assert "mlp_vae" in err and not out.exists()


def test_no_weights_audits_the_factory_parameters_and_says_so_in_the_report(
    tmp_path: Path, data: Path
) -> None:
    out = tmp_path / "r.nc"
    assert main(_args(data, out, "--no-weights")) == 0
    with xr.open_dataset(out) as ds:
        attrs = json.loads(str(ds["model_attrs"].values[0]))
    assert attrs["weights"] == "none (the factory's own parameters)"


def test_no_weights_in_a_config(tmp_path: Path, data: Path) -> None:
    cfg = tmp_path / "a.toml"
    body = (f'[data]\npath = "{data}"\n\n[models.vae]\nfactory = "{FACTORY}"\n'
            'options = {{ x_dim = 6, hidden = 8, latent = 2 }}\n{flag}\n[bootstrap]\nresamples = 0\n'
            f'\n[report]\nout = "{tmp_path / "c.nc"}"\n')
    cfg.write_text(body.format(flag=""))
    assert main(["run", str(cfg), "--quiet"]) == 2
    cfg.write_text(body.format(flag="no_weights = true\n"))
    assert main(["run", str(cfg), "--quiet"]) == 0
