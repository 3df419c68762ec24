"""Pictures of a report (``elbo-audit show --plot FILE.png``), drawn with matplotlib.

* The decomposition as stacked bars: for every model and prior, ``avg_kl``
  split into ``index_code_mi`` and ``marginal_kl``, with Monte Carlo error
  bars, the ceiling ``log_n`` as a tick, and the ELBO with its interval.
* For 2-D latents, when the report stores the posteriors (``--pointwise``),
  the aggregate posterior q(z) against a standard normal prior.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .._errors import UsageError
from .._kernels.numpy_backend import log_mixture_density

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_report", "posterior_figure", "report_figure"]


def _pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'elbo-audit[plot]'") from None
    return plt


def plot_report(path: str | Path, out: str | Path) -> Path:
    """Draw the report at ``path`` into the image file ``out``."""
    plt = _pyplot()
    with xr.open_datatree(path, engine="netcdf4") as tree:
        fig = report_figure(tree)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def report_figure(tree: xr.DataTree) -> Figure:
    """The figure of an open report: decomposition bars, ELBO intervals, and q(z) for 2-D latents."""
    plt = _pyplot()
    root = tree.to_dataset()
    rows = [
        (str(m), str(p))
        for m in root["model"].values
        for p in root["prior"].values
        if str(root["prior_family"].sel(model=m, prior=p).values) != ""
    ]
    post = None
    if "pointwise" in tree.children and "posterior_mean" in tree["pointwise"].to_dataset():
        pw = tree["pointwise"].to_dataset()
        if pw.sizes.get("latent", 0) == 2:
            post = pw
    latent = "latent_kl" in root and bool(np.isfinite(root["latent_kl"].values).any())
    ncols = 2 + (1 if post is not None else 0) + (1 if latent else 0)
    fig: Figure
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 0.6 * len(rows) + 3.0), squeeze=False)
    ax_kl, ax_elbo = axes[0, 0], axes[0, 1]
    y = np.arange(len(rows))
    labels = [f"{m} @ {p}" for m, p in rows]

    def val(term: str, suffix: str = "") -> np.ndarray:
        return np.array([float(root[term + suffix].sel(model=m, prior=p)) for m, p in rows])

    mi, mkl = val("index_code_mi"), val("marginal_kl")
    ax_kl.barh(y, mi, color="#4c72b0", label="index-code MI", xerr=val("index_code_mi", "_se"))
    ax_kl.barh(y, mkl, left=mi, color="#dd8452", label="marginal KL", xerr=val("marginal_kl", "_se"))
    log_n = np.array([float(root["log_n"].sel(model=m)) for m, _ in rows])
    ax_kl.scatter(log_n, y, marker="|", s=400, color="k", label="log N (ceiling of MI)", zorder=3)
    ax_kl.set_yticks(y, labels)
    ax_kl.invert_yaxis()
    ax_kl.set_xlabel("nats per data point")
    ax_kl.set_title("average KL = index-code MI + marginal KL")
    # below the axes, so it never covers a bar
    ax_kl.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)

    elbo = val("elbo")
    ci = np.array([root["elbo_ci"].sel(model=m, prior=p).values for m, p in rows], dtype=float)
    if np.isfinite(elbo).any():
        err = np.abs(ci - elbo[:, None]).T
        ax_elbo.errorbar(elbo, y, xerr=np.where(np.isfinite(err), err, 0), fmt="o", color="#55a868")
    else:
        ax_elbo.text(0.5, 0.5, "ELBO not evaluated\n(no decoder)", ha="center", va="center",
                     transform=ax_elbo.transAxes)
    ax_elbo.set_yticks(y, labels)
    ax_elbo.invert_yaxis()
    level = float(root.attrs.get("confidence_level", 0.95))
    ax_elbo.set_title(f"ELBO with {level:.0%} bootstrap interval")
    ax_elbo.set_xlabel("nats per data point")
    ax_elbo.xaxis.set_major_locator(plt.MaxNLocator(5))

    if post is not None:
        _posterior_panel(axes[0, 2], root, post)
    if latent:
        _latent_panel(axes[0, -1], root)
    fig.tight_layout()
    return fig


def _latent_panel(ax: Any, root: xr.Dataset) -> None:
    """KL per latent under the native prior, one group of bars per model, inactive latents hatched."""
    models = [str(m) for m in root["model"].values]
    prior = "native" if "native" in [str(p) for p in root["prior"].values] else str(root["prior"].values[0])
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        kl = root["latent_kl"].sel(model=m, prior=prior).values
        active = root["active"].sel(model=m).values
        ci = root["latent_kl_ci"].sel(model=m, prior=prior).values
        j = np.flatnonzero(active >= 0)
        err = np.abs(ci[j] - kl[j, None]).T
        bars = ax.bar(j + i * width, kl[j], width, yerr=np.where(np.isfinite(err), err, 0), label=m)
        for b, a in zip(bars, active[j], strict=True):
            if a == 0:
                b.set_hatch("//")
                b.set_alpha(0.5)
    ax.set_xticks(np.arange(root.sizes["latent"]))
    ax.set_xlabel("latent (hatched: inactive)")
    ax.set_ylabel("nats per data point")
    ax.set_title(f"KL(q(z_j|x) || p(z_j)) per latent @ {prior}")
    if len(models) > 1:
        ax.legend(fontsize=8, frameon=False)


def _posterior_panel(ax: Any, root: xr.Dataset, post: xr.Dataset) -> None:
    """Filled contours of the aggregate posterior q(z) of the first model, lines of N(0, I)."""
    model = str(root["model"].values[0])
    mean = np.asarray(post["posterior_mean"].sel(model=model).values)
    std = np.asarray(post["posterior_std"].sel(model=model).values)
    # a few outlying posteriors must not shrink the picture of the bulk of q(z):
    # frame 99.5 % of the means, with room for their spread and for the prior
    lim = float(max(np.quantile(np.abs(mean), 0.995) + 3 * np.median(std), 3.0))
    g = np.linspace(-lim, lim, 120)
    zz = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    log_q = log_mixture_density(zz, mean, std).reshape(g.size, g.size)
    log_p = (-0.5 * np.sum(zz**2, axis=1) - np.log(2 * np.pi)).reshape(g.size, g.size)
    ax.contourf(g, g, np.exp(log_q), levels=12, cmap="Blues")
    ax.contour(g, g, np.exp(log_p), levels=6, colors="#dd8452", linewidths=1)
    ax.set_title(f"{model}: q(z) (filled) vs N(0, I) (lines)")
    ax.set_aspect("equal")


def posterior_figure(tree: xr.DataTree) -> Figure | None:
    """The q(z)-against-the-prior panel alone, or None without 2-D posteriors in ``/pointwise``."""
    if "pointwise" not in tree.children or "posterior_mean" not in tree["pointwise"].to_dataset():
        return None
    post = tree["pointwise"].to_dataset()
    if post.sizes.get("latent", 0) != 2:
        return None
    plt = _pyplot()
    fig: Figure
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    _posterior_panel(ax, tree.to_dataset(), post)
    fig.tight_layout()
    return fig
