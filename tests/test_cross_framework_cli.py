"""One config, a PyTorch and a JAX model with the same weights, three priors, one compare table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main

pytest.importorskip("elbo_audit_torch")
pytest.importorskip("elbo_audit_jax")
pytest.importorskip("elbo_audit_sklearn")  # the fitted_mixture prior


def test_torch_and_jax_side_by_side_under_three_priors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from elbo_audit_torch.reference import MLPVAE
    from safetensors.torch import save_file

    torch.manual_seed(1)
    module = MLPVAE(x_dim=64, hidden=16, latent=2)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(3.0)  # informative weights: clearly non-zero MI and marginal KL
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, tmp_path / "w.safetensors")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=(rng.random((200, 64)) < 0.3).astype(np.float32))
    opts = "{ x_dim = 64, hidden = 16, latent = 2 }"
    (tmp_path / "audit.toml").write_text(
        f'[data]\npath = "data.npz"\nkey = "x"\n\n'
        f'[models.torch_vae]\nfactory = "elbo_audit_torch.reference:mlp_vae"\nweights = "w.safetensors"\noptions = {opts}\n\n'
        f'[models.jax_vae]\nfactory = "elbo_audit_jax.reference:mlp_vae"\nweights = "w.safetensors"\noptions = {opts}\n\n'
        '[priors.mog]\nfamily = "fitted_mixture"\ncomponents = 3\n\n'
        '[priors.optimal]\nfamily = "aggregate_posterior"\n\n'
        '[bootstrap]\nresamples = 100\n[report]\nout = "r.nc"\n'
    )
    assert main(["run", str(tmp_path / "audit.toml"), "--quiet", "--format", "json", "--iw-samples", "20",
                 "--refine-steps", "5"]) == 0
    capsys.readouterr()
    ds = xr.open_dataset(tmp_path / "r.nc")
    assert list(ds["model"].values) == ["torch_vae", "jax_vae"]
    assert list(ds["prior"].values) == ["native", "mog", "optimal"]
    assert list(ds["adapter"].values) == ["torch", "jax"]
    for term in ("elbo", "avg_kl", "index_code_mi", "marginal_kl", "log_likelihood", "inference_gap",
                 "refined_elbo", "amortization_gap", "approximation_gap"):
        a, b = ds[term].sel(model="torch_vae").values, ds[term].sel(model="jax_vae").values
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=term)  # same weights, same noise
    assert float(ds["marginal_kl"].sel(model="torch_vae", prior="native")) > 0.05
    # importance weighting runs through each adapter's decoder, under the model's own prior only
    ll = ds["log_likelihood"].sel(model="torch_vae")
    assert np.isfinite(float(ll.sel(prior="native"))) and np.isnan(ll.sel(prior=["mog", "optimal"])).all()
    assert int(ds.attrs["iw_samples"]) == 20
    # so does refinement, with each framework's own gradients
    gap = ds["amortization_gap"].sel(model="torch_vae")
    assert np.isfinite(float(gap.sel(prior="native"))) and np.isnan(gap.sel(prior=["mog", "optimal"])).all()
    assert int(ds.attrs["refine_steps"]) == 5
    assert main(["compare", str(tmp_path / "r.nc"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    labels = [r["label"] for r in doc["rows"]]
    assert labels == [f"{m}@{p}" for m in ("torch_vae", "jax_vae") for p in ("native", "mog", "optimal")]
    assert main(["compare", str(tmp_path / "r.nc")]) == 0
    table = capsys.readouterr().out
    assert table.count("\n") >= 8 and "jax_vae@optimal" in table
