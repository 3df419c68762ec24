"""The core's own plugin: the priors every installation has."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._errors import UsageError
from .._kernels.numpy_backend import NumpyBackend
from .._model.priors import (
    DiagonalGaussianPrior,
    MixtureOfGaussians,
    StandardNormal,
    aggregate_posterior_prior,
)
from .._report.schema import open_report
from ..hookspecs import BackendInfo, PriorInfo, hookimpl

__all__ = ["elbo_audit_backends", "elbo_audit_priors"]


def _is_numbers(value: object) -> bool:
    """A number, or (nested) lists of numbers: what TOML and --prior K=V give; no bools or strings."""
    if isinstance(value, list | tuple):
        return all(_is_numbers(v) for v in value)
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def _numbers(options: dict[str, Any], key: str, default: object, prior: str) -> np.ndarray:
    """Option ``key`` as a float array; a string, bool or ragged list is a usage error naming the key."""
    raw = options.get(key, default)
    if not _is_numbers(raw):
        raise UsageError(f"prior {prior!r}: option {key!r} must be a number or a list of numbers, got {raw!r}")
    try:
        return np.asarray(raw, dtype=np.float64)
    except ValueError:  # a ragged list
        raise UsageError(f"prior {prior!r}: option {key!r} is a ragged list, got {raw!r}") from None


def _vector(options: dict[str, Any], key: str, default: float, d: int, prior: str) -> np.ndarray:
    value = _numbers(options, key, default, prior)
    try:
        return np.broadcast_to(value, (d,)).copy()
    except ValueError:
        raise UsageError(f"prior {prior!r}: {key!r} must be a number or a list of {d}") from None


def _standard_normal(d: int, options: dict[str, Any]) -> DiagonalGaussianPrior:
    if options:
        raise UsageError(f"prior 'standard_normal' takes no options, got {sorted(options)}")
    return StandardNormal(d)


def _diagonal(d: int, options: dict[str, Any]) -> DiagonalGaussianPrior:
    unknown = set(options) - {"mean", "std"}
    if unknown:
        raise UsageError(f"prior 'diagonal_gaussian': unknown option(s) {sorted(unknown)}")
    return DiagonalGaussianPrior(
        _vector(options, "mean", 0.0, d, "diagonal_gaussian"),
        _vector(options, "std", 1.0, d, "diagonal_gaussian"),
    )


def _mixture(d: int, options: dict[str, Any]) -> MixtureOfGaussians:
    unknown = set(options) - {"weights", "mean", "std"}
    missing = {"weights", "mean", "std"} - set(options)
    if unknown or missing:
        raise UsageError(
            "prior 'mixture_of_gaussians' needs exactly the options weights, mean, std"
            f" (unknown: {sorted(unknown)}, missing: {sorted(missing)})"
        )
    name = "mixture_of_gaussians"
    prior = MixtureOfGaussians(
        _numbers(options, "weights", None, name), _numbers(options, "mean", None, name),
        _numbers(options, "std", None, name),
    )
    if prior.n_latent != d:
        raise UsageError(f"prior 'mixture_of_gaussians' has {prior.n_latent} latents, model has {d}")
    return prior


def _aggregate(d: int, options: dict[str, Any]) -> MixtureOfGaussians:
    unknown = set(options) - {"posteriors", "seed"}
    if unknown:
        raise UsageError(f"prior 'aggregate_posterior' takes no options, got {sorted(unknown)}")
    return aggregate_posterior_prior(options["posteriors"])


def _report_aggregate(d: int, options: dict[str, Any]) -> MixtureOfGaussians:
    """The aggregate posterior stored in another report (e.g. of the training set)."""
    unknown = set(options) - {"report", "model"}
    if unknown or "report" not in options:
        raise UsageError(
            "prior 'report_aggregate_posterior' needs report = PATH (a report written with "
            f"--pointwise) and optionally model = NAME; got {sorted(options)}"
        )
    path = Path(str(options["report"]))
    open_report(path).close()
    with xr.open_datatree(path, engine="netcdf4") as tree:
        if "pointwise" not in tree.children or "posterior_mean" not in tree["pointwise"].to_dataset():
            raise UsageError(f"{path}: holds no posteriors; write it with --pointwise")
        pw = tree["pointwise"].to_dataset()
        models = [str(m) for m in pw["model"].values]
        model = str(options.get("model", models[0] if len(models) == 1 else ""))
        if model not in models:
            raise UsageError(f"{path}: name the model with model = NAME (models: {models})")
        mean = np.asarray(pw["posterior_mean"].sel(model=model).values, dtype=np.float64)
        std = np.asarray(pw["posterior_std"].sel(model=model).values, dtype=np.float64)
    keep = np.isfinite(mean).all(axis=0)  # latents padded with NaN for smaller models
    mean, std = mean[:, keep], std[:, keep]
    if mean.shape[1] != d:
        raise UsageError(f"{path}: model {model!r} has {mean.shape[1]} latents, this model has {d}")
    n = mean.shape[0]
    return MixtureOfGaussians(np.full(n, 1.0 / n), mean, std, name=f"aggregate_posterior_of_{model}")


@hookimpl
def elbo_audit_priors() -> Sequence[PriorInfo]:
    return (
        PriorInfo("standard_normal", "isotropic N(0, I)", _standard_normal),
        PriorInfo("diagonal_gaussian", "N(mean, diag(std^2)); options mean, std", _diagonal),
        PriorInfo(
            "mixture_of_gaussians",
            "sum_k w_k N(mean_k, diag(std_k^2)); options weights, mean, std",
            _mixture,
        ),
        PriorInfo(
            "aggregate_posterior",
            "q(z) itself: the optimal prior for the encoder (marginal_kl = 0)",
            _aggregate,
            fitted=True,
        ),
        PriorInfo(
            "report_aggregate_posterior",
            "the aggregate posterior stored in another report (held out, e.g. the training set's); "
            "options report = PATH, model = NAME",
            _report_aggregate,
        ),
    )


@hookimpl
def elbo_audit_backends() -> Sequence[BackendInfo]:
    return (
        BackendInfo(
            "numpy",
            "float64 reference: blocked numpy (GEMM form, direct-form fallback) in threads",
            NumpyBackend,
            ("float64",),
            0,
        ),
    )
