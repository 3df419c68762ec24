"""The plugin's hook implementations.

Kept free of scikit-learn and skops imports: the records below call into the
adapter modules only when a model, dataset or prior is actually used.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elbo_audit import AuditModel, Prior
from elbo_audit.hookspecs import AdapterInfo, Dataset, DatasetInfo, ModelRef, PriorInfo, hookimpl

__all__ = ["elbo_audit_adapters", "elbo_audit_datasets", "elbo_audit_priors"]


def _claims(obj: Any) -> bool:
    if "sklearn" not in sys.modules:  # an sklearn object cannot exist without it
        return False
    from ._adapter import claims

    return claims(obj)


def _wrap(obj: Any, ref: ModelRef) -> AuditModel:
    from ._adapter import wrap

    return wrap(obj, ref)


def _load_file(path: Path, ref: ModelRef) -> Any:
    from ._adapter import load_skops

    return load_skops(path, ref)


def _digits() -> Dataset:
    from ._datasets import load_digits_dataset

    return load_digits_dataset()


def _fitted_mixture(n_latent: int, options: dict[str, Any]) -> Prior:
    from ._priors import fit_mixture_prior

    return fit_mixture_prior(n_latent, options)


@hookimpl
def elbo_audit_adapters() -> Sequence[AdapterInfo]:
    """The ``sklearn`` adapter (FactorAnalysis, PCA; ``.skops`` files)."""
    return (
        AdapterInfo(
            name="sklearn",
            description=(
                "fitted scikit-learn FactorAnalysis and PCA (probabilistic PCA) with their exact "
                "Gaussian posteriors; opens .skops files"
            ),
            claims=_claims,
            wrap=_wrap,
            file_suffixes=(".skops",),
            load_file=_load_file,
        ),
    )


@hookimpl
def elbo_audit_datasets() -> Sequence[DatasetInfo]:
    """The ``digits`` dataset."""
    return (
        DatasetInfo(
            name="digits",
            description="scikit-learn's 8x8 handwritten digits, 1797 x 64, float64 in 0..16",
            load=_digits,
        ),
    )


@hookimpl
def elbo_audit_priors() -> Sequence[PriorInfo]:
    """``fitted_mixture``: a GaussianMixture fitted post hoc to draws from q(z)."""
    return (
        PriorInfo(
            "fitted_mixture",
            "diagonal Gaussian mixture fitted to q(z) by scikit-learn; options components, samples",
            _fitted_mixture,
            fitted=True,
        ),
    )
