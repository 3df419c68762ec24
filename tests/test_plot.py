"""`elbo-audit show --plot`: the picture draws the report's own numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main

pytest.importorskip("matplotlib")


def _report(tmp_path: Path, d: int, pointwise: bool) -> Path:
    rng = np.random.default_rng(3)
    enc = tmp_path / f"enc{d}.npz"
    np.savez(enc, mean=2.0 * rng.normal(size=(300, d)),  # q(z) wider than N(0, I)
             log_std=rng.normal(-1.0, 0.2, size=(300, d)))
    out = tmp_path / f"r{d}.nc"
    args = ["run", "--posteriors", str(enc), "--prior", "q=aggregate_posterior", "--bootstrap", "50",
            "--out", str(out), "--quiet"]
    assert main(args + (["--pointwise"] if pointwise else [])) == 0
    return out


def test_bars_are_the_reports_terms(tmp_path: Path) -> None:
    from elbo_audit._report.plot import report_figure

    path = _report(tmp_path, d=2, pointwise=True)
    with xr.open_datatree(path, engine="netcdf4") as tree:
        fig = report_figure(tree)
        root = tree.to_dataset()
    ax_kl, ax_elbo, ax_q = fig.axes[:3]
    rows = [("enc2", "native"), ("enc2", "q")]
    assert [t.get_text() for t in ax_kl.get_yticklabels()] == [f"{m} @ {p}" for m, p in rows]
    bars = ax_kl.patches  # index-code MI bars first, then marginal KL stacked on them
    mi = [float(root["index_code_mi"].sel(model=m, prior=p)) for m, p in rows]
    mkl = [float(root["marginal_kl"].sel(model=m, prior=p)) for m, p in rows]
    np.testing.assert_allclose([b.get_width() for b in bars[:2]], mi, rtol=1e-12)
    np.testing.assert_allclose([b.get_x() for b in bars[2:4]], mi, rtol=1e-12)
    np.testing.assert_allclose([b.get_width() for b in bars[2:4]], mkl, rtol=1e-12, atol=1e-12)
    assert mkl[1] == pytest.approx(0.0, abs=1e-9) and mkl[0] > 0.1  # q(z) as its own prior
    assert "q(z)" in ax_q.get_title()
    assert "ELBO not evaluated" in " ".join(t.get_text() for t in ax_elbo.texts)  # no decoder here
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_show_writes_a_png_and_needs_no_pointwise(tmp_path: Path) -> None:
    path = _report(tmp_path, d=3, pointwise=False)
    png = tmp_path / "p.png"
    assert main(["show", str(path), "--plot", str(png), "--quiet"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from elbo_audit._report.plot import report_figure

    with xr.open_datatree(path, engine="netcdf4") as tree:
        fig = report_figure(tree)
        root = tree.to_dataset()
    # q(z) is pictured for 2-D latents only; the per-latent KL panel is always there
    assert len(fig.axes) == 3 and not any("q(z)" in ax.get_title() for ax in fig.axes)
    ax_latent = fig.axes[2]
    assert "per latent" in ax_latent.get_title()
    heights = [b.get_height() for b in ax_latent.patches]
    np.testing.assert_allclose(heights, root["latent_kl"].sel(model="enc3", prior="native").values, rtol=1e-12)
